package sharded

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-rt/switchboard/broker"
)

// Backend is what a shard must be: a broker with history, presence,
// channel counts and readiness, as the Redis broker is.
type Backend interface {
	broker.Broker
	broker.Historian
	broker.Presencer
	broker.NodeCounter
	broker.Readier
}

// Shard is one of a Broker's backends.
type Shard struct {
	// Broker serves the shard's channels. The sharded Broker owns it from
	// New on: it starts and closes it.
	Broker Backend
	// Addr names the shard in Shards (host:port, never with a password).
	Addr string
}

// Config configures a sharded Broker.
type Config struct {
	// Shards are the backends channels are spread over, at least one. A
	// channel's shard is chosen by its index here, so every node must list
	// the same shards in the same order.
	Shards []Shard
	// Logger receives which shard is lost and restored. Default: discard.
	Logger *slog.Logger
}

var (
	_ broker.Broker       = (*Broker)(nil)
	_ broker.Historian    = (*Broker)(nil)
	_ broker.Presencer    = (*Broker)(nil)
	_ broker.NodeCounter  = (*Broker)(nil)
	_ broker.ShardReadier = (*Broker)(nil)
)

// Broker routes every channel to one of its shards. Create it with New.
type Broker struct {
	shards []*member
	log    *slog.Logger
	closed atomic.Bool

	// handler, state and chState are set by Start before any shard
	// starts, and read-only after.
	handler broker.Handler
	state   broker.StateHandler        // handler as a StateHandler, or nil
	chState broker.ChannelStateHandler // handler as a ChannelStateHandler, or nil
	started atomic.Bool

	// stateMu serializes the calls to state and chState, which the shards
	// make from their own goroutines, and guards down and every member's
	// lost. Lock order: stateMu before member.mu.
	stateMu sync.Mutex
	down    int // shards whose subscriptions are lost; guarded by stateMu
}

// member is one shard of a Broker and the Handler its broker calls.
type member struct {
	owner *Broker
	name  string // its index, as Shards names it
	addr  string
	b     Backend

	// mu guards subs, the channels subscribed on this shard: what its
	// broker resubscribes after an outage, and so what ChannelsLost and
	// ChannelsRestored name.
	mu   sync.Mutex
	subs map[string]struct{}
	lost bool // guarded by owner.stateMu
}

// New returns a Broker over cfg.Shards, not started. It fails when there
// is no shard, or two shards have the same address.
func New(cfg Config) (*Broker, error) {
	if len(cfg.Shards) == 0 {
		return nil, errors.New("sharded: no shards")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	b := &Broker{log: cfg.Logger}
	seen := make(map[string]int)
	for i, s := range cfg.Shards {
		if s.Broker == nil {
			return nil, fmt.Errorf("sharded: shard %d has no broker", i)
		}
		if j, dup := seen[s.Addr]; dup && s.Addr != "" {
			// Two shards on one server would overwrite each other's
			// channel counts (one key per node).
			return nil, fmt.Errorf("sharded: shards %d and %d are both %s", j, i, s.Addr)
		}
		seen[s.Addr] = i
		b.shards = append(b.shards, &member{owner: b, name: strconv.Itoa(i), addr: s.Addr, b: s.Broker, subs: make(map[string]struct{})})
	}
	return b, nil
}

// Index returns the index of the shard that owns channel among n shards
// (see the package documentation), for tests and tools that need to know
// where a channel lives. n must be at least 1.
func Index(channel string, n int) int {
	return jump(fnv1a(routingName(channel)), n)
}

// routingName is the part of a broker channel's name that chooses its
// shard: up to the first '#' that is not its first byte.
func routingName(channel string) string {
	if i := strings.IndexByte(channel, '#'); i > 0 {
		return channel[:i]
	}
	return channel
}

// fnv1a is the 64-bit FNV-1a hash of s.
func fnv1a(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// jump is the jump consistent hash of key over n buckets (Lamping and
// Veach, "A Fast, Minimal Memory, Consistent Hash Algorithm"): growing n
// to n+1 moves about 1/(n+1) of the keys, all of them to the new bucket.
func jump(key uint64, n int) int {
	b, j := int64(-1), int64(0)
	for j < int64(n) {
		b = j
		key = key*2862933555777941757 + 1
		j = int64(float64(b+1) * (float64(int64(1)<<31) / float64((key>>33)+1)))
	}
	return int(b)
}

// of returns the member that owns channel.
func (b *Broker) of(channel string) *member {
	if len(b.shards) == 1 {
		return b.shards[0]
	}
	return b.shards[Index(channel, len(b.shards))]
}

// group splits channels by the shard that owns them.
func (b *Broker) group(channels []string) map[*member][]string {
	out := make(map[*member][]string)
	for _, ch := range channels {
		m := b.of(ch)
		out[m] = append(out[m], ch)
	}
	return out
}

// wrap adds the shard to err, keeping what it wraps.
func (m *member) wrap(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("sharded: shard %s (%s): %w", m.name, m.addr, err)
}

// Start starts every shard with h behind it. A shard that cannot be
// reached does not fail Start (see broker/redis): it connects by itself.
// Start fails only when a shard's Start does (called twice, or after
// Close).
func (b *Broker) Start(ctx context.Context, h broker.Handler) error {
	if b.closed.Load() {
		return broker.ErrClosed
	}
	if b.started.Swap(true) {
		return errors.New("sharded: Start called twice")
	}
	b.handler = h
	b.state, _ = h.(broker.StateHandler)
	b.chState, _ = h.(broker.ChannelStateHandler)
	for _, m := range b.shards {
		if err := m.b.Start(ctx, m); err != nil {
			return m.wrap(err)
		}
	}
	return nil
}

// Publish publishes to the shard that owns channel. While that shard is
// down it fails with an error wrapping broker.ErrUnavailable.
func (b *Broker) Publish(ctx context.Context, channel string, data []byte, opts broker.PublishOptions) (broker.Position, error) {
	m := b.of(channel)
	pos, err := m.b.Publish(ctx, channel, data, opts)
	return pos, m.wrap(err)
}

// Subscribe subscribes each channel on its shard, the shards in parallel,
// and returns once every one is live. When a shard fails, the channels
// this call newly subscribed on the other shards are unsubscribed again,
// so that a failed Subscribe leaves nothing behind it; the error wraps
// each shard's.
func (b *Broker) Subscribe(ctx context.Context, channels ...string) error {
	if b.closed.Load() {
		return broker.ErrClosed
	}
	groups := b.group(channels)
	if len(groups) <= 1 {
		for m, chs := range groups {
			_, err := m.subscribe(ctx, chs)
			return m.wrap(err)
		}
		return nil
	}
	type outcome struct {
		m     *member
		fresh []string
		err   error
	}
	out := make([]outcome, 0, len(groups))
	for m := range groups {
		out = append(out, outcome{m: m})
	}
	var wg sync.WaitGroup
	for i := range out {
		wg.Go(func() {
			out[i].fresh, out[i].err = out[i].m.subscribe(ctx, groups[out[i].m])
		})
	}
	wg.Wait()
	var errs []error
	for _, o := range out {
		if o.err != nil {
			errs = append(errs, o.m.wrap(o.err))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	for _, o := range out {
		if o.err == nil && len(o.fresh) > 0 {
			if err := o.m.unsubscribe(context.WithoutCancel(ctx), o.fresh); err != nil {
				b.log.Debug("sharded: cannot undo a partial subscribe", "shard", o.m.name, "err", err)
			}
		}
	}
	return errors.Join(errs...)
}

// subscribe subscribes chs on m and returns those that were not
// subscribed before.
func (m *member) subscribe(ctx context.Context, chs []string) ([]string, error) {
	m.mu.Lock()
	var fresh []string
	for _, ch := range chs {
		if _, ok := m.subs[ch]; !ok {
			fresh = append(fresh, ch)
		}
	}
	m.mu.Unlock()
	if err := m.b.Subscribe(ctx, chs...); err != nil {
		return nil, err
	}
	m.mu.Lock()
	for _, ch := range chs {
		m.subs[ch] = struct{}{}
	}
	m.mu.Unlock()
	return fresh, nil
}

// unsubscribe unsubscribes chs on m.
func (m *member) unsubscribe(ctx context.Context, chs []string) error {
	m.mu.Lock()
	for _, ch := range chs {
		delete(m.subs, ch)
	}
	m.mu.Unlock()
	return m.b.Unsubscribe(ctx, chs...)
}

// Unsubscribe unsubscribes each channel on its shard. A shard that is down
// forgets its channels, so that it does not subscribe them again (see
// broker/redis).
func (b *Broker) Unsubscribe(ctx context.Context, channels ...string) error {
	if b.closed.Load() {
		return broker.ErrClosed
	}
	var errs []error
	for m, chs := range b.group(channels) {
		if err := m.unsubscribe(ctx, chs); err != nil {
			errs = append(errs, m.wrap(err))
		}
	}
	return errors.Join(errs...)
}

// History reads channel's history from its shard.
func (b *Broker) History(ctx context.Context, channel string, req broker.HistoryRequest, opts broker.PublishOptions) (broker.HistoryResult, error) {
	m := b.of(channel)
	res, err := m.b.History(ctx, channel, req, opts)
	return res, m.wrap(err)
}

// SetPresence sets entries in channel's presence on its shard.
func (b *Broker) SetPresence(ctx context.Context, channel string, entries []broker.PresenceEntry, ttl time.Duration) ([]string, error) {
	m := b.of(channel)
	joined, err := m.b.SetPresence(ctx, channel, entries, ttl)
	return joined, m.wrap(err)
}

// RemovePresence removes clients from channel's presence on its shard.
func (b *Broker) RemovePresence(ctx context.Context, channel string, clients ...string) ([]string, error) {
	m := b.of(channel)
	left, err := m.b.RemovePresence(ctx, channel, clients...)
	return left, m.wrap(err)
}

// ExpirePresence removes channel's expired presence entries on its shard.
func (b *Broker) ExpirePresence(ctx context.Context, channel string) ([]string, error) {
	m := b.of(channel)
	left, err := m.b.ExpirePresence(ctx, channel)
	return left, m.wrap(err)
}

// Presence reads channel's presence from its shard.
func (b *Broker) Presence(ctx context.Context, channel string) ([]broker.PresenceEntry, error) {
	m := b.of(channel)
	entries, err := m.b.Presence(ctx, channel)
	return entries, m.wrap(err)
}

// SetNodeChannels gives each shard node's counts of its own channels (an
// empty set to a shard that owns none of them, replacing what it had), the
// shards in parallel. It fails only when no shard took its part: while
// some shards are down, the others keep counting.
func (b *Broker) SetNodeChannels(ctx context.Context, node string, counts map[string]int, ttl time.Duration) error {
	parts := make(map[*member]map[string]int, len(b.shards))
	for _, m := range b.shards {
		parts[m] = make(map[string]int)
	}
	for ch, n := range counts {
		parts[b.of(ch)][ch] = n
	}
	errs := b.each(func(_ int, m *member) error { return m.b.SetNodeChannels(ctx, node, parts[m], ttl) })
	return b.unlessSome(errs)
}

// ClusterChannels merges every reachable shard's sums. It fails only when
// no shard can be read; the channels of a shard that is down are missing
// from the result meanwhile.
func (b *Broker) ClusterChannels(ctx context.Context) (map[string]int, error) {
	sums := make([]map[string]int, len(b.shards))
	errs := b.each(func(i int, m *member) error {
		var err error
		sums[i], err = m.b.ClusterChannels(ctx)
		return err
	})
	if err := b.unlessSome(errs); err != nil {
		return nil, err
	}
	out := make(map[string]int)
	for _, s := range sums {
		for ch, n := range s {
			out[ch] += n
		}
	}
	return out, nil
}

// each calls f for every shard in parallel and returns their errors, by
// shard index.
func (b *Broker) each(f func(i int, m *member) error) []error {
	errs := make([]error, len(b.shards))
	if len(b.shards) == 1 {
		errs[0] = f(0, b.shards[0])
		return errs
	}
	var wg sync.WaitGroup
	for i, m := range b.shards {
		wg.Go(func() { errs[i] = f(i, m) })
	}
	wg.Wait()
	return errs
}

// unlessSome returns nil when one error of errs is nil, and otherwise
// every one, each naming its shard.
func (b *Broker) unlessSome(errs []error) error {
	for _, err := range errs {
		if err == nil {
			return nil
		}
	}
	for i, err := range errs {
		errs[i] = b.shards[i].wrap(err)
	}
	return errors.Join(errs...)
}

// Ready returns nil while one shard at least is ready, and otherwise every
// shard's error (each wrapping broker.ErrUnavailable).
func (b *Broker) Ready() error {
	errs := make([]error, len(b.shards))
	for i, m := range b.shards {
		errs[i] = m.b.Ready()
	}
	if err := b.unlessSome(errs); err != nil {
		return fmt.Errorf("sharded: no shard is ready: %w", err)
	}
	return nil
}

// ReadyFor returns the Ready of the shard that owns channel.
func (b *Broker) ReadyFor(channel string) error {
	m := b.of(channel)
	return m.wrap(m.b.Ready())
}

// Shards returns every shard's state, by index.
func (b *Broker) Shards() []broker.Shard {
	out := make([]broker.Shard, len(b.shards))
	for i, m := range b.shards {
		out[i] = broker.Shard{Name: m.name, Addr: m.addr, Err: m.b.Ready()}
	}
	return out
}

// Close closes every shard, in parallel, and waits for them or for ctx to
// be done. A second Close returns nil.
func (b *Broker) Close(ctx context.Context) error {
	if b.closed.Swap(true) {
		return nil
	}
	var errs []error
	for i, err := range b.each(func(_ int, m *member) error { return m.b.Close(ctx) }) {
		if err != nil {
			errs = append(errs, b.shards[i].wrap(err))
		}
	}
	return errors.Join(errs...)
}

// HandleMessage passes a shard's message on to the Broker's Handler.
func (m *member) HandleMessage(msg broker.Message) { m.owner.handler.HandleMessage(msg) }

// SubscriptionsLost is called by the shard's broker when its subscriptions
// break: the Handler learns it for this shard's channels.
func (m *member) SubscriptionsLost(err error) {
	b := m.owner
	b.stateMu.Lock()
	defer b.stateMu.Unlock()
	if m.lost || b.closed.Load() {
		return
	}
	m.lost = true
	err = m.wrap(err)
	chs := m.channels()
	b.log.Debug("sharded: shard lost", "shard", m.name, "addr", m.addr, "channels", len(chs), "err", err)
	switch {
	case b.chState != nil:
		b.chState.ChannelsLost(chs, err)
	case b.state != nil:
		b.down++
		if b.down == 1 {
			b.state.SubscriptionsLost(err)
		}
	}
}

// SubscriptionsRestored is called by the shard's broker once its channels
// are subscribed again.
func (m *member) SubscriptionsRestored() {
	b := m.owner
	b.stateMu.Lock()
	defer b.stateMu.Unlock()
	if !m.lost {
		return
	}
	m.lost = false
	chs := m.channels()
	b.log.Debug("sharded: shard restored", "shard", m.name, "addr", m.addr, "channels", len(chs))
	switch {
	case b.chState != nil:
		b.chState.ChannelsRestored(chs)
	case b.state != nil:
		b.down--
		if b.down == 0 {
			b.state.SubscriptionsRestored()
		}
	}
}

// channels returns a copy of the channels subscribed on m.
func (m *member) channels() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.subs))
	for ch := range m.subs {
		out = append(out, ch)
	}
	return out
}
