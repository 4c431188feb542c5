// Package memory is the in-process broker: one node, no setup, the default.
// It keeps each channel's history in a ring, so recovery works on one node
// exactly as it does with Redis.
//
// Publish hands a message to the Handler synchronously, holding the
// channel's lock, so one channel's messages are handled one at a time in
// offset order while different channels proceed in parallel. The Handler
// must therefore not call back into the broker. A Broker is safe for
// concurrent use; Close stops its janitor goroutine.
package memory

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-rt/switchboard/broker"
)

// Config configures a memory Broker. The zero value is ready to use.
type Config struct {
	// JanitorInterval is how often expired histories are dropped.
	// Default 1 minute.
	JanitorInterval time.Duration
}

var _ broker.Broker = (*Broker)(nil)
var _ broker.Historian = (*Broker)(nil)
var _ broker.Readier = (*Broker)(nil)

const numShards = 64

// defaultTTL is the history time-to-live when PublishOptions gives none.
const defaultTTL = 24 * time.Hour

// Broker is the in-process broker.
type Broker struct {
	cfg     Config
	seed    maphash.Seed
	handler atomic.Pointer[broker.Handler]
	shards  [numShards]shard
	closed  atomic.Bool
	stop    chan struct{}
	wg      sync.WaitGroup
	startMu sync.Mutex
	started bool
}

type shard struct {
	mu       sync.Mutex
	channels map[string]*channel // guarded by mu
}

// channel is one channel's state. Its fields are guarded by mu; publishing
// holds mu while the Handler runs, which orders the channel's messages.
type channel struct {
	mu         sync.Mutex
	subscribed bool
	stream     *stream // nil while the channel keeps no history
}

// stream is one life of a channel's history.
type stream struct {
	epoch  string
	offset uint64           // offset of the newest message
	ring   []broker.Message // the newest len(ring) messages, ring[(offset-1) % cap]
	size   int
	expiry time.Time
}

// New returns a memory broker.
func New(cfg Config) *Broker {
	if cfg.JanitorInterval <= 0 {
		cfg.JanitorInterval = time.Minute
	}
	b := &Broker{cfg: cfg, seed: maphash.MakeSeed(), stop: make(chan struct{})}
	for i := range b.shards {
		b.shards[i].channels = make(map[string]*channel)
	}
	return b
}

// Start registers h and starts the janitor.
func (b *Broker) Start(ctx context.Context, h broker.Handler) error {
	if b.closed.Load() {
		return broker.ErrClosed
	}
	b.handler.Store(&h)
	b.startMu.Lock()
	defer b.startMu.Unlock()
	if !b.started {
		b.started = true
		b.wg.Add(1)
		go b.janitor()
	}
	return nil
}

// Ready returns nil until Close.
func (b *Broker) Ready() error {
	if b.closed.Load() {
		return broker.ErrClosed
	}
	return nil
}

func (b *Broker) shard(name string) *shard {
	return &b.shards[maphash.String(b.seed, name)%numShards]
}

// lock returns the channel locked, creating it when create is set (else
// nil when absent). The shard lock is held while the channel's is taken,
// so the janitor never drops a channel someone is about to use.
func (b *Broker) lock(name string, create bool) *channel {
	sh := b.shard(name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	ch := sh.channels[name]
	if ch == nil {
		if !create {
			return nil
		}
		ch = &channel{}
		sh.channels[name] = ch
	}
	ch.mu.Lock()
	return ch
}

// Publish delivers data to the Handler when the channel is subscribed,
// after recording it in the history when opts keep one.
func (b *Broker) Publish(ctx context.Context, name string, data []byte, opts broker.PublishOptions) (broker.Position, error) {
	if b.closed.Load() {
		return broker.Position{}, broker.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return broker.Position{}, err
	}
	ch := b.lock(name, opts.HistorySize > 0)
	if ch == nil {
		// No history and nobody subscribed: nothing to do.
		return broker.Position{}, nil
	}
	defer ch.mu.Unlock()
	m := broker.Message{Channel: name, Data: data}
	if opts.HistorySize > 0 {
		m.Pos = ch.append(m, opts, time.Now())
	}
	if ch.subscribed {
		if h := b.handler.Load(); h != nil {
			(*h).HandleMessage(m)
		}
	}
	return m.Pos, nil
}

// append records m in the channel's history and returns its position.
// ch.mu must be held.
func (ch *channel) append(m broker.Message, opts broker.PublishOptions, now time.Time) broker.Position {
	ttl := opts.HistoryTTL
	if ttl <= 0 {
		ttl = defaultTTL
	}
	s := ch.stream
	if s == nil || now.After(s.expiry) {
		s = &stream{epoch: newEpoch()}
		ch.stream = s
	}
	if s.size != opts.HistorySize {
		s.resize(opts.HistorySize)
	}
	s.offset++
	m.Pos = broker.Position{Epoch: s.epoch, Offset: s.offset}
	s.ring[(s.offset-1)%uint64(s.size)] = m
	s.expiry = now.Add(ttl)
	return m.Pos
}

// resize changes the ring's capacity, keeping the newest messages.
func (s *stream) resize(size int) {
	ring := make([]broker.Message, size)
	for off := s.offset; off > 0 && s.offset-off < uint64(min(size, s.size)); off-- {
		ring[(off-1)%uint64(size)] = s.ring[(off-1)%uint64(s.size)]
	}
	s.ring, s.size = ring, size
}

// oldest returns the offset of the oldest message kept.
func (s *stream) oldest() uint64 {
	if s.offset < uint64(s.size) {
		return 1
	}
	return s.offset - uint64(s.size) + 1
}

// History reads the channel's history.
func (b *Broker) History(ctx context.Context, name string, req broker.HistoryRequest, opts broker.PublishOptions) (broker.HistoryResult, error) {
	if b.closed.Load() {
		return broker.HistoryResult{}, broker.ErrClosed
	}
	ch := b.lock(name, true)
	defer ch.mu.Unlock()
	now := time.Now()
	s := ch.stream
	if s == nil || now.After(s.expiry) {
		// A channel never published to (or expired) starts a fresh life,
		// so that positions handed out now stay valid for later publishes.
		ttl := opts.HistoryTTL
		if ttl <= 0 {
			ttl = defaultTTL
		}
		s = &stream{epoch: newEpoch(), expiry: now.Add(ttl)}
		s.resize(max(opts.HistorySize, 1))
		ch.stream = s
	}
	res := broker.HistoryResult{Pos: broker.Position{Epoch: s.epoch, Offset: s.offset}}
	from := s.oldest()
	if s.offset == 0 {
		from = 1
	}
	if req.Since != nil {
		if req.Since.Epoch != s.epoch || req.Since.Offset > s.offset {
			return res, nil
		}
		res.Recovered = req.Since.Offset+1 >= from
		from = max(from, req.Since.Offset+1)
		if req.Limit > 0 && s.offset-from+1 > uint64(req.Limit) {
			// Too many missed messages to return: not recovered.
			res.Recovered = false
			return res, nil
		}
	} else {
		if req.Limit <= 0 {
			return res, nil
		}
		if s.offset >= uint64(req.Limit) {
			from = max(from, s.offset-uint64(req.Limit)+1)
		}
	}
	for off := from; off <= s.offset && off > 0; off++ {
		res.Messages = append(res.Messages, s.ring[(off-1)%uint64(s.size)])
	}
	return res, nil
}

// Subscribe marks the channels subscribed.
func (b *Broker) Subscribe(ctx context.Context, names ...string) error {
	if b.closed.Load() {
		return broker.ErrClosed
	}
	for _, name := range names {
		ch := b.lock(name, true)
		ch.subscribed = true
		ch.mu.Unlock()
	}
	return nil
}

// Unsubscribe marks the channels unsubscribed.
func (b *Broker) Unsubscribe(ctx context.Context, names ...string) error {
	if b.closed.Load() {
		return broker.ErrClosed
	}
	for _, name := range names {
		if ch := b.lock(name, false); ch != nil {
			ch.subscribed = false
			ch.mu.Unlock()
		}
	}
	return nil
}

// Close stops the broker; later calls fail with broker.ErrClosed.
func (b *Broker) Close(ctx context.Context) error {
	if b.closed.Swap(true) {
		return nil
	}
	close(b.stop)
	b.wg.Wait()
	return nil
}

// janitor drops channels with neither subscription nor live history.
func (b *Broker) janitor() {
	defer b.wg.Done()
	t := time.NewTicker(b.cfg.JanitorInterval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case now := <-t.C:
			b.sweep(now)
		}
	}
}

func (b *Broker) sweep(now time.Time) {
	for i := range b.shards {
		sh := &b.shards[i]
		sh.mu.Lock()
		for name, ch := range sh.channels {
			ch.mu.Lock()
			if ch.stream != nil && now.After(ch.stream.expiry) {
				ch.stream = nil
			}
			if !ch.subscribed && ch.stream == nil {
				delete(sh.channels, name)
			}
			ch.mu.Unlock()
		}
		sh.mu.Unlock()
	}
}

// newEpoch returns a fresh random epoch.
func newEpoch() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
