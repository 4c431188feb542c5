package memory

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/internal/shrink"
)

// Config configures a memory Broker. The zero value is ready to use.
type Config struct {
	// JanitorInterval is how often the janitor drops expired histories.
	// Zero means one minute.
	JanitorInterval time.Duration
}

var (
	_ broker.Broker    = (*Broker)(nil)
	_ broker.Historian = (*Broker)(nil)
	_ broker.Readier   = (*Broker)(nil)
)

// numShards is the number of shards of the channel registry.
const numShards = 64

// defaultTTL is the history time-to-live when PublishOptions give none.
const defaultTTL = 24 * time.Hour

// errNotReady is what Ready returns after Close: the broker is both
// unavailable and closed.
var errNotReady = fmt.Errorf("memory: %w: %w", broker.ErrUnavailable, broker.ErrClosed)

// Broker is the in-process broker. Create it with New.
type Broker struct {
	cfg      Config
	seed     maphash.Seed
	handler  atomic.Pointer[broker.Handler] // set by Start
	closed   atomic.Bool
	shards   [numShards]shard
	presence presence

	startMu sync.Mutex    // guards started
	started bool          // the janitor runs; guarded by startMu
	stop    chan struct{} // closed by Close to stop the janitor
	done    chan struct{} // closed by the janitor when it returns
}

// shard is one stripe of the channel registry.
type shard struct {
	mu       sync.Mutex
	channels map[string]*channel // guarded by mu
	peak     int                 // guarded by mu; the most channels since channels was made
}

// channel is one channel's state.
//
// Lock order: channel.mu may be held while taking its shard's mu (to remove
// the channel), never the reverse. Publish holds mu while the Handler runs,
// which orders the channel's messages.
type channel struct {
	name string // immutable

	mu         sync.Mutex
	subscribed bool    // guarded by mu
	hist       *stream // guarded by mu; nil while the channel keeps no history
	dead       bool    // guarded by mu; set once the channel left its shard's map
	// idem remembers recent idempotency keys with the position their
	// publish got; guarded by mu.
	idem map[string]idemEntry
}

// idemEntry is a remembered idempotency key.
type idemEntry struct {
	pos     broker.Position
	expires time.Time
}

// sweepIdem drops the keys expired at now. ch.mu must be held.
func (ch *channel) sweepIdem(now time.Time) {
	for k, e := range ch.idem {
		if !now.Before(e.expires) {
			delete(ch.idem, k)
		}
	}
	if len(ch.idem) == 0 {
		ch.idem = nil
	}
}

// New returns a memory broker. Call Start before using it.
func New(cfg Config) *Broker {
	if cfg.JanitorInterval <= 0 {
		cfg.JanitorInterval = time.Minute
	}
	b := &Broker{
		cfg:  cfg,
		seed: maphash.MakeSeed(),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	for i := range b.shards {
		b.shards[i].channels = make(map[string]*channel)
	}
	return b
}

// Start registers h as the Handler of every subscribed channel and starts
// the janitor. It does not block.
func (b *Broker) Start(ctx context.Context, h broker.Handler) error {
	b.startMu.Lock()
	defer b.startMu.Unlock()
	if b.closed.Load() {
		return broker.ErrClosed
	}
	b.handler.Store(&h)
	if !b.started {
		b.started = true
		go b.janitor()
	}
	return nil
}

// Ready returns nil until Close, and then an error wrapping both
// broker.ErrUnavailable and broker.ErrClosed.
func (b *Broker) Ready() error {
	if b.closed.Load() {
		return errNotReady
	}
	return nil
}

func (b *Broker) shard(name string) *shard {
	return &b.shards[maphash.String(b.seed, name)%numShards]
}

// acquire returns the named channel with its mu held, creating it when
// create is set; it returns nil when the channel is absent and create is
// not set. The shard's lock is never held while waiting for the channel's,
// so a busy channel does not block the others of its shard.
func (b *Broker) acquire(name string, create bool) *channel {
	sh := b.shard(name)
	for {
		sh.mu.Lock()
		ch := sh.channels[name]
		if ch == nil {
			if !create {
				sh.mu.Unlock()
				return nil
			}
			ch = &channel{name: name}
			sh.channels[name] = ch
			sh.peak = max(sh.peak, len(sh.channels))
		}
		sh.mu.Unlock()
		ch.mu.Lock()
		if !ch.dead {
			return ch
		}
		// Removed between the two locks: look again.
		ch.mu.Unlock()
	}
}

// release unlocks ch, first removing it from its shard when it holds
// nothing worth keeping. ch.mu must be held.
func (b *Broker) release(ch *channel) {
	if !ch.subscribed && ch.hist == nil && ch.idem == nil {
		ch.dead = true
		sh := b.shard(ch.name)
		sh.mu.Lock()
		if sh.channels[ch.name] == ch {
			delete(sh.channels, ch.name)
			sh.channels = shrink.Map(sh.channels, &sh.peak)
		}
		sh.mu.Unlock()
	}
	ch.mu.Unlock()
}

// live returns the channel's history at now, dropping it when expired.
// ch.mu must be held.
func (ch *channel) live(now time.Time) *stream {
	if ch.hist != nil && !now.Before(ch.hist.expiry) {
		ch.hist = nil
	}
	return ch.hist
}

// Publish records data in the channel's history when opts keep one, then
// hands it to the Handler, in the caller's goroutine, when the channel is
// subscribed. It fails only after Close (broker.ErrClosed) or when ctx is
// already done.
func (b *Broker) Publish(ctx context.Context, name string, data []byte, opts broker.PublishOptions) (broker.Position, error) {
	if b.closed.Load() {
		return broker.Position{}, broker.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return broker.Position{}, fmt.Errorf("memory: publish %q: %w", name, err)
	}
	ch := b.acquire(name, opts.HistorySize > 0 || opts.IdempotencyKey != "")
	if ch == nil {
		// No history and nobody subscribed: nothing to do.
		return broker.Position{}, nil
	}
	defer b.release(ch)
	now := time.Now()
	m := broker.Message{Channel: name, Data: data, Binary: opts.Binary, Skip: opts.Skip, Time: now.UnixMilli()}
	if key := opts.IdempotencyKey; key != "" {
		if e, ok := ch.idem[key]; ok && now.Before(e.expires) {
			return e.pos, nil
		}
		defer func() {
			if ch.idem == nil {
				ch.idem = make(map[string]idemEntry)
			} else if len(ch.idem)%1024 == 0 {
				ch.sweepIdem(now)
			}
			ch.idem[key] = idemEntry{m.Pos, now.Add(opts.IdempotencyWindow())}
		}()
	}
	if opts.HistorySize > 0 {
		s := ch.live(now)
		if s == nil {
			s = newStream()
			ch.hist = s
		}
		m.Pos = s.append(m, opts.HistorySize, now.Add(ttl(opts)))
	} else {
		ch.live(now)
	}
	if ch.subscribed {
		if h := b.handler.Load(); h != nil {
			(*h).HandleMessage(m)
		}
	}
	return m.Pos, nil
}

// History reads the channel's history. A channel without a live history
// gets a fresh epoch at offset 0 when opts keep history (so the position
// returned stays valid for the publishes that follow), and the zero
// Position when they do not.
//
// With req.Since, it returns at most req.Limit messages following Since,
// oldest first, and Recovered is true when they are all the messages after
// Since: the caller can page forward from the last one. Without Since it
// returns the newest req.Limit messages.
func (b *Broker) History(ctx context.Context, name string, req broker.HistoryRequest, opts broker.PublishOptions) (broker.HistoryResult, error) {
	if b.closed.Load() {
		return broker.HistoryResult{}, broker.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return broker.HistoryResult{}, fmt.Errorf("memory: history %q: %w", name, err)
	}
	ch := b.acquire(name, opts.HistorySize > 0)
	if ch == nil {
		return broker.HistoryResult{}, nil
	}
	defer b.release(ch)
	now := time.Now()
	s := ch.live(now)
	if s == nil {
		if opts.HistorySize <= 0 {
			return broker.HistoryResult{}, nil
		}
		s = newStream()
		s.expiry = now.Add(ttl(opts))
		ch.hist = s
	}
	return s.read(req), nil
}

// ttl returns the history time-to-live of opts.
func ttl(opts broker.PublishOptions) time.Duration {
	if opts.HistoryTTL <= 0 {
		return defaultTTL
	}
	return opts.HistoryTTL
}

// Subscribe makes Publish deliver the channels' messages to the Handler. It
// never blocks.
func (b *Broker) Subscribe(ctx context.Context, names ...string) error {
	if b.closed.Load() {
		return broker.ErrClosed
	}
	for _, name := range names {
		ch := b.acquire(name, true)
		ch.subscribed = true
		ch.mu.Unlock()
	}
	return nil
}

// Unsubscribe stops the delivery of the channels' messages. It waits for a
// Handler call of the channel in progress to return, so that no message of
// an unsubscribed channel is handled after Unsubscribe returns.
func (b *Broker) Unsubscribe(ctx context.Context, names ...string) error {
	if b.closed.Load() {
		return broker.ErrClosed
	}
	for _, name := range names {
		if ch := b.acquire(name, false); ch != nil {
			ch.subscribed = false
			ch.live(time.Now())
			b.release(ch)
		}
	}
	return nil
}

// Close stops the janitor and waits for it, or for ctx to be done. Every
// later call fails with broker.ErrClosed; a second Close returns nil.
func (b *Broker) Close(ctx context.Context) error {
	b.startMu.Lock()
	if b.closed.Swap(true) {
		b.startMu.Unlock()
		return nil
	}
	close(b.stop)
	started := b.started
	b.startMu.Unlock()
	if !started {
		return nil
	}
	select {
	case <-b.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("memory: close: %w", ctx.Err())
	}
}

// janitor drops expired histories and the channels left empty, every
// JanitorInterval until Close.
func (b *Broker) janitor() {
	defer close(b.done)
	t := time.NewTicker(b.cfg.JanitorInterval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			now := time.Now()
			b.sweep(now)
			b.presence.sweep(now)
		}
	}
}

// sweep drops the histories expired at now and the channels left empty.
func (b *Broker) sweep(now time.Time) {
	var batch []*channel
	for i := range b.shards {
		sh := &b.shards[i]
		batch = batch[:0]
		sh.mu.Lock()
		for _, ch := range sh.channels {
			batch = append(batch, ch)
		}
		sh.mu.Unlock()
		for _, ch := range batch {
			ch.mu.Lock()
			if ch.dead {
				ch.mu.Unlock()
				continue
			}
			ch.live(now)
			ch.sweepIdem(now)
			b.release(ch)
		}
		clear(batch)
	}
}

// epochEncoding writes epochs: short, lowercase, URL and JSON safe.
var epochEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newEpoch returns a fresh random epoch of 8 characters.
func newEpoch() string {
	var b [5]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return epochEncoding.EncodeToString(b[:])
}
