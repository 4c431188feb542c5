package hub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/protocol"
	"github.com/switchboard-rt/switchboard/wsframe"
)

// Defaults of Config's fields, in one place for every layer that shows
// them (the binary's flags, the server's documentation).
const (
	DefaultMaxSubscriptions = 128
	DefaultSendQueueBytes   = 1 << 20
	DefaultPingInterval     = 25 * time.Second
	DefaultUnsubscribeDelay = 2 * time.Second
	DefaultCloseGrace       = 3 * time.Second
	DefaultRequestTimeout   = 5 * time.Second
	DefaultPresenceTTL      = 30 * time.Second
	DefaultHistoryTTL       = 24 * time.Hour
)

// Config configures a Hub. Zero fields take the documented defaults.
type Config struct {
	// Broker carries messages between nodes. Required.
	Broker broker.Broker
	// NodeID names this node in welcome frames and client ids. Default: a
	// random id.
	NodeID string
	// Logger receives the hub's logs. Default: slog.Default().
	Logger *slog.Logger
	// Authorizer decides what each client may do on each channel, on every
	// request. Default: the namespace options' rules decide.
	Authorizer Authorizer
	// Guard, when set, wraps the Authorizer: a dialect's own rules in
	// front of the node's (the Pusher apps' private channels, say).
	Guard func(next Authorizer) Authorizer
	// DefaultRule is the rule of namespaces whose options set none.
	// Default RulePublic; a node that checks tokens sets
	// RuleAuthenticated, so that public must be asked for.
	DefaultRule Rule
	// Tokens checks the tokens clients present (on connect, in auth and
	// refresh requests, on subscribe). Nil: the node takes no token, and
	// every client is anonymous.
	Tokens Tokens
	// AuthTimeout is how long a client without a valid token may stay
	// connected before it is closed with 4001; zero lets it stay.
	AuthTimeout time.Duration
	// TokenLeeway is how long after its token's expiry a client is closed:
	// the clock skew Tokens allows, so that a token it accepts is never
	// cut at once.
	TokenLeeway time.Duration
	// Observe, when set, is told the events that happen once in the
	// cluster: member_added and member_removed of channels with Members,
	// occupied and vacated of channels with Occupancy; the node that
	// causes each tells it, no other. It must not block.
	Observe func(e Event)
	// ChannelOptions, when set, adjusts the options of a channel after its
	// namespace's are found: a dialect whose channels carry their kind in
	// their names (Pusher's presence- and cache- channels) sets it. It
	// must be fast and must not block.
	ChannelOptions func(channel string, o NamespaceOptions) NamespaceOptions
	// MaxSubscriptions is how many channels one client may be in.
	// Default 128.
	MaxSubscriptions int
	// SendQueueBytes bounds the bytes queued for one client, including
	// those being written. A client over it is closed with 4008.
	// Default 1 MiB.
	SendQueueBytes int
	// PingInterval is how often every connection is pinged. Default 25s.
	PingInterval time.Duration
	// UnsubscribeDelay is how long the broker stays subscribed to a channel
	// after its last local client left. Default 2s.
	UnsubscribeDelay time.Duration
	// CloseGrace is how long a connection the server closes may take to
	// flush its close frame and answer it before its socket is closed.
	// Default 3s.
	CloseGrace time.Duration
	// RequestTimeout bounds each broker call made for a request. Default
	// 5s.
	RequestTimeout time.Duration
	// ClientRate is how many frames a second one client may send, on
	// average; zero (the default) sets no limit. ClientBurst is how many it
	// may send at once; default twice ClientRate.
	ClientRate  float64
	ClientBurst int
	// WriteDelay is the shortest time between two writes to one
	// connection: a frame for a connection written less than WriteDelay
	// ago waits for the rest of it, and every frame queued meanwhile goes
	// out in the same system call. A connection not written for WriteDelay
	// is written at once. Less CPU per delivery for connections that get
	// many messages a second, for at most WriteDelay of latency to them.
	//
	// Zero (the default) adapts the delay to each connection: one that
	// gets a steady stream waits up to AutoWriteDelayMax so that about
	// four frames leave per write, one that gets a message now and then is
	// written at once. A negative delay (NoWriteDelay) never waits.
	WriteDelay time.Duration
	// IOURing (off in the zero Config; the switchboard binary turns it on
	// with --io-uring, its default) lets each writer of the
	// pool write many ready connections with one system call: it takes
	// up to 64 ready clients at once and hands their frames to its own
	// BatchWriter (io_uring on Linux), made by NewBatchWriter. Where that
	// fails (no io_uring: an old kernel, the kernel.io_uring_disabled
	// sysctl, a container's seccomp profile), the hub logs it once and
	// writes each connection with its own system call, as without it.
	IOURing bool
	// NewBatchWriter makes the BatchWriter of one writer when IOURing is
	// set; the server sets transport.NewBatchWriter. Nil with IOURing
	// writes as without it.
	NewBatchWriter func() (BatchWriter, error)
	// PresenceTTL is how long a presence entry (and this node's channel
	// counts) outlives its last refresh; a dead node's clients leave
	// presence within it. Default 30s.
	PresenceTTL time.Duration
	// Default holds the options of the default namespace, and of every
	// namespace without its own entry in Namespaces.
	Default NamespaceOptions
	// Namespaces holds the options of named namespaces. The hub keeps a
	// copy: changing the map afterwards changes nothing.
	Namespaces map[string]NamespaceOptions
}

func (c *Config) setDefaults() {
	if c.NodeID == "" {
		c.NodeID = randomID(4)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.MaxSubscriptions <= 0 {
		c.MaxSubscriptions = DefaultMaxSubscriptions
	}
	if c.SendQueueBytes <= 0 {
		c.SendQueueBytes = DefaultSendQueueBytes
	}
	if c.PingInterval <= 0 {
		c.PingInterval = DefaultPingInterval
	}
	if c.UnsubscribeDelay <= 0 {
		c.UnsubscribeDelay = DefaultUnsubscribeDelay
	}
	if c.CloseGrace <= 0 {
		c.CloseGrace = DefaultCloseGrace
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.ClientRate > 0 && c.ClientBurst <= 0 {
		c.ClientBurst = max(int(2*c.ClientRate), 1)
	}
	if c.PresenceTTL <= 0 {
		c.PresenceTTL = DefaultPresenceTTL
	}
	if c.DefaultRule == RuleDefault {
		c.DefaultRule = RulePublic
	}
}

const (
	numShards   = 64
	numSubLocks = 128
	numClients  = 16 // at most 256: Client.stripe is a uint8
)

// Hub is one switchboard node. Create it with New, then Start it.
type Hub struct {
	cfg    Config // read-only after New, but for the namespaces (ns)
	broker broker.Broker
	log    *slog.Logger
	seed   maphash.Seed
	auth   Authorizer

	// The broker's optional capabilities, learnt once in New; nil when it
	// lacks them.
	hist    broker.Historian
	pres    broker.Presencer
	counter broker.NodeCounter
	readier broker.Readier
	// sharded is the broker when its shards fail apart: publishes then
	// ask only the channel's own shard.
	sharded broker.ShardReadier

	ns atomic.Pointer[namespaces] // the namespace options in force

	shards   [numShards]shard
	subLocks [numSubLocks]sync.Mutex

	clientsMu [numClients]sync.Mutex
	clients   [numClients]map[*Client]struct{} // guarded by clientsMu[i]
	active    sync.WaitGroup                   // one count per registered client
	nextID    atomic.Uint64
	dialects  dialects

	started  atomic.Bool
	closing  atomic.Bool
	stop     chan struct{} // closed by Shutdown: stops the hub's loops
	stopOnce sync.Once
	done     sync.WaitGroup // the pinger, the presence loop, the releaser, subscribeControl
	bg       sync.WaitGroup // gap fillers

	// controlErr is why the control channel is not subscribed yet: set by
	// Start, cleared by subscribeControl; nil once it is.
	controlErr atomic.Pointer[error]

	writers   writerPool
	releases  releaser
	presenceQ chan presenceOp // leaves for the presence loop
	stats     counters
	latency   latencyHistogram
	nsStats   sync.Map // namespace name ("" for the default) -> *nsCounters
}

// shard holds the channels whose name hashes to it.
type shard struct {
	mu       sync.RWMutex
	channels map[string]*channel // guarded by mu
	peak     int                 // guarded by mu; the most channels since the map was made
}

// channel is the local state of one channel.
type channel struct {
	// subs and index are guarded by the shard's mu.
	subs  []*Client
	index map[*Client]int
	// releaseAt, guarded by the shard's mu, is when the channel is due for
	// release (monotime) after its last subscriber left; 0 while it has
	// subscribers (release.go).
	releaseAt int64
	// pending, guarded by the shard's mu, holds the clients joining the
	// channel while its history is read, with the messages that arrived
	// meanwhile.
	pending map[*Client]*pending
	// last, filling and held are the sequencer of a channel with history,
	// guarded by the shard's mu: the position of the last message
	// delivered, whether a gap is being filled from history, and the
	// messages held back meanwhile.
	last    broker.Position
	filling bool
	held    []broker.Message
	// brokerSubscribed is guarded by the channel's stripe lock.
	brokerSubscribed bool
}

// pending is a client joining a channel with history.
type pending struct {
	held []broker.Message
}

// New returns a Hub; it serves no client until Start. It fails when the
// configuration asks for what the broker cannot do (history or presence
// from a broker without them).
func New(cfg Config) (*Hub, error) {
	if cfg.Broker == nil {
		return nil, errors.New("hub: Config.Broker is required")
	}
	cfg.setDefaults()
	h := &Hub{
		cfg:    cfg,
		broker: cfg.Broker,
		log:    cfg.Logger,
		seed:   maphash.MakeSeed(),
		auth:   cfg.Authorizer,
		stop:   make(chan struct{}),

		presenceQ: make(chan presenceOp, 4096),
	}
	h.hist, _ = cfg.Broker.(broker.Historian)
	h.pres, _ = cfg.Broker.(broker.Presencer)
	h.counter, _ = cfg.Broker.(broker.NodeCounter)
	h.readier, _ = cfg.Broker.(broker.Readier)
	h.sharded, _ = cfg.Broker.(broker.ShardReadier)
	if _, err := ParseRule(string(cfg.DefaultRule), false); err != nil {
		return nil, err
	}
	if err := h.SetNamespaces(cfg.Default, cfg.Namespaces); err != nil {
		return nil, err
	}
	h.cfg.Namespaces = nil // h.ns holds them
	if h.auth == nil {
		h.auth = namespaceRules{h}
	}
	if cfg.Guard != nil {
		h.auth = cfg.Guard(h.auth)
	}
	h.releases.wake = make(chan struct{}, 1)
	for i := range h.shards {
		h.shards[i].channels = make(map[string]*channel)
	}
	for i := range h.clients {
		h.clients[i] = make(map[*Client]struct{})
	}
	return h, nil
}

// Start starts the broker with the hub as its Handler, and the hub's own
// goroutines (the pinger, the presence loop, the releaser and the writer
// pool), which run until Shutdown.
//
// When the broker started but cannot reach its backend yet (the Redis
// broker connects in the background), Start succeeds too: the hub
// subscribes its control channel as soon as the broker is ready, from a
// goroutine that ends with that or with Shutdown, and Ready fails until
// then.
func (h *Hub) Start(ctx context.Context) error {
	if err := h.broker.Start(ctx, h); err != nil {
		return err
	}
	h.writers.delay = int64(max(h.cfg.WriteDelay, 0))
	h.writers.auto = h.cfg.WriteDelay == 0
	h.writers.log = h.log
	if h.cfg.IOURing {
		h.writers.newBatch = h.cfg.NewBatchWriter
	}
	h.writers.start()
	if err := h.broker.Subscribe(ctx, controlChannel); err != nil {
		if !errors.Is(err, broker.ErrUnavailable) {
			return fmt.Errorf("hub: subscribe the control channel: %w", err)
		}
		// The broker is not up yet (it connects by itself): subscribe
		// once it is, and be not ready until then.
		h.controlErr.Store(&err)
		h.done.Add(1)
		go h.subscribeControl()
	}
	h.done.Add(4)
	go h.pingLoop()
	go h.presenceLoop()
	go h.releaseLoop()
	go h.deadlineLoop()
	h.started.Store(true)
	return nil
}

// NodeID returns the node's id.
func (h *Hub) NodeID() string { return h.cfg.NodeID }

// PingInterval returns how often the hub pings every connection.
func (h *Hub) PingInterval() time.Duration { return h.cfg.PingInterval }

// Config returns the hub's configuration with defaults filled in and the
// namespace options in force (copies: changing them changes nothing).
func (h *Hub) Config() Config {
	c := h.cfg
	ns := h.ns.Load()
	c.Default, c.Namespaces = ns.def, ns.clone()
	return c
}

// Ready returns nil while the hub accepts clients and its broker is
// reachable, and otherwise why not: an error wrapping
// broker.ErrUnavailable, or ErrClosing.
func (h *Hub) Ready() error {
	if h.closing.Load() {
		return ErrClosing
	}
	if h.readier != nil {
		if err := h.readier.Ready(); err != nil {
			return err
		}
	}
	if p := h.controlErr.Load(); p != nil {
		return fmt.Errorf("hub: control channel not subscribed yet: %w", *p)
	}
	return nil
}

// readyFor returns nil while the broker can publish to channel: the
// channel's own shard is up for a sharded broker, the broker is ready for
// any other.
func (h *Hub) readyFor(channel string) error {
	switch {
	case h.sharded != nil:
		return h.sharded.ReadyFor(channel)
	case h.readier != nil:
		return h.readier.Ready()
	}
	return nil
}

// BrokerShards returns the state of the broker's shards, or nil when its
// backend is not sharded (broker.ShardReadier).
func (h *Hub) BrokerShards() []broker.Shard {
	if h.sharded == nil {
		return nil
	}
	return h.sharded.Shards()
}

// Closing reports whether Shutdown has begun.
func (h *Hub) Closing() bool { return h.closing.Load() }

func (h *Hub) shard(ch string) *shard {
	return &h.shards[maphash.String(h.seed, ch)%numShards]
}

func (h *Hub) subLock(ch string) *sync.Mutex { return &h.subLocks[h.stripe(ch)] }

// stripe is the index of ch's stripe lock.
func (h *Hub) stripe(ch string) int { return int(maphash.String(h.seed, ch) % numSubLocks) }

// HandleMessage is the broker.Handler of the hub: it queues m for every
// local subscriber of its channel, encoding its frame once per dialect.
// Messages with a position (channels with history) go through the
// channel's sequencer first, which drops duplicates and fills gaps.
func (h *Hub) HandleMessage(m broker.Message) {
	if m.Time == 0 {
		// The broker did not carry the publish time: this is the closest.
		m.Time = time.Now().UnixMilli()
	}
	if name, ok := eventChannel(m.Channel); ok {
		h.handleEvent(name, m)
		return
	}
	if m.Channel == controlChannel {
		h.handleControl(m)
		return
	}
	sh := h.shard(m.Channel)
	if m.Pos.IsZero() {
		sh.mu.RLock()
		if ch := sh.channels[m.Channel]; ch != nil {
			h.deliverLocked(ch, m)
		}
		sh.mu.RUnlock()
		return
	}
	sh.mu.Lock()
	if ch := sh.channels[m.Channel]; ch != nil {
		h.sequenceLocked(m.Channel, ch, m)
	}
	sh.mu.Unlock()
}

// deliverLocked queues m to every live subscriber of ch and buffers it for
// those still recovering. The shard's lock must be held (read or write).
func (h *Hub) deliverLocked(ch *channel, m broker.Message) {
	if len(ch.subs) == 0 && len(ch.pending) == 0 {
		return
	}
	var frames frameCache
	var delivered uint64
	for _, c := range ch.subs {
		if m.Skip != "" && c.skips(&m) {
			continue
		}
		if f := frames.frame(c, &m); f != nil && c.enqueue(f) {
			delivered++
		}
	}
	for _, p := range ch.pending {
		p.held = append(p.held, m)
	}
	h.stats.messagesReceived.Add(1)
	h.stats.messagesDelivered.Add(delivered)
	h.nsCounter(m.Channel).delivered.Add(delivered)
}

// Publish publishes data, one JSON value (any bytes with AsBinary), to
// channel through the broker,
// with the history options of the channel's namespace. It returns the
// message's position (zero without history). It asks no Authorizer: it is
// the HTTP API's and the embedding program's verb (clients publish with
// Client.Publish). Errors wrap broker.ErrUnavailable when the broker
// cannot be reached.
//
// While the broker reports it is not ready (its subscriptions are down, for
// one), Publish fails at once: a message this node's own subscribers could
// miss is refused rather than acknowledged.
func (h *Hub) Publish(ctx context.Context, channel string, data []byte, options ...PublishOption) (broker.Position, error) {
	if err := h.readyFor(channel); err != nil {
		h.stats.publishErrors.Add(1)
		return broker.Position{}, err
	}
	opts := h.options(channel).publishOptions()
	for _, o := range options {
		o(&opts)
	}
	pos, err := h.broker.Publish(ctx, channel, data, opts)
	if err != nil {
		h.stats.publishErrors.Add(1)
		return pos, h.seen("publish", channel, err)
	}
	h.stats.messagesPublished.Add(1)
	h.nsCounter(channel).published.Add(1)
	return pos, nil
}

// History returns the newest limit messages of channel, oldest first, and
// its current position. A negative limit, or one over the namespace's
// history size, means the whole history. It fails with forbidden when the
// channel's namespace keeps no history. It asks no Authorizer
// (Client.History does).
func (h *Hub) History(ctx context.Context, channel string, limit int) (broker.HistoryResult, error) {
	opts := h.options(channel)
	if opts.HistorySize <= 0 || h.hist == nil {
		return broker.HistoryResult{}, protocol.Errorf(protocol.CodeForbidden, "history is not enabled for channel "+channel+
			" (the server keeps some with --history-size, or history_size in --config)")
	}
	if limit < 0 || limit > opts.HistorySize {
		limit = opts.HistorySize
	}
	res, err := h.hist.History(ctx, channel, broker.HistoryRequest{Limit: limit}, opts.publishOptions())
	return res, h.seen("read history", channel, err)
}

// seen logs err once when a client or caller is told it as an internal
// error (ErrorOf), with what was being done, and returns it: an error
// nobody sees in a log would be a silent "internal error" on the wire.
func (h *Hub) seen(doing, channel string, err error) error {
	if err != nil && ErrorOf(err).Code == protocol.CodeInternal {
		h.stats.internalErrors.Add(1)
		h.log.Error("request failed", "doing", doing, "channel", channel, "err", err)
	}
	return err
}

// PublishOption sets an optional parameter of one Publish.
type PublishOption func(*broker.PublishOptions)

// WithSkip leaves out one client, named by its id or its alias, on every
// node: a sender that must not get its own message back.
func WithSkip(client string) PublishOption {
	return func(o *broker.PublishOptions) { o.Skip = client }
}

// WithIdempotencyKey makes the publish happen at most once per key and
// channel within broker.DefaultIdempotencyTTL: a retry after an uncertain
// failure cannot publish twice. An empty key changes nothing.
func WithIdempotencyKey(key string) PublishOption {
	return func(o *broker.PublishOptions) { o.IdempotencyKey = key }
}

// AsBinary publishes the data as binary data, any bytes rather than one
// JSON value: subscribers receive it with broker.Message.Binary set (a raw
// client as a binary frame, a native one as base64), and so does history.
func AsBinary() PublishOption { return asBinary }

func asBinary(o *broker.PublishOptions) { o.Binary = true }

// ReplyFunc builds a subscribe reply from the channel's position and, for
// a subscribe with since, whether everything missed was recovered.
type ReplyFunc func(pos broker.Position, recovered *bool) []byte

// subscribe adds c to channel's subscribers, subscribing the broker first
// when c is the channel's first local subscriber. The reply (when o.Reply
// is not nil) is queued to c in the same step, so no message of the
// channel reaches c before it. On a channel with history, the reply
// carries the channel's position, and with o.Since (or o.Last) the
// messages after since (or the newest Last) are queued right after it,
// then the live ones, with no gap and no duplicate.
func (h *Hub) subscribe(ctx context.Context, c *Client, name string, o SubscribeOptions) error {
	if h.closing.Load() {
		return ErrClosing
	}
	lk := h.subLock(name)
	lk.Lock()
	defer lk.Unlock()
	sh, ch := h.channelFor(name)
	opts := h.options(name)
	if err := h.subscribeBroker(ctx, sh, name, ch, opts); err != nil {
		return err
	}
	// The presence entries are written before the reply is queued, so that
	// a client told it is subscribed finds itself in the channel's presence.
	j := h.record(ctx, c, name, opts)
	if opts.HistorySize <= 0 || h.hist == nil {
		sh.mu.Lock()
		h.joinLocked(ch, c, o.Reply, broker.Position{}, nil)
		sh.mu.Unlock()
		h.announce(ctx, c, name, opts, j)
		return nil
	}
	if err := h.subscribeWithHistory(ctx, sh, name, ch, c, o, opts); err != nil {
		h.unrecord(ctx, c, name, opts)
		return err
	}
	h.announce(ctx, c, name, opts, j)
	return nil
}

// channelFor returns name's shard and local channel, making the channel
// when it has none. The caller holds name's stripe lock.
func (h *Hub) channelFor(name string) (*shard, *channel) {
	sh := h.shard(name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	ch := sh.channels[name]
	if ch == nil {
		ch = &channel{index: make(map[*Client]int)}
		sh.channels[name] = ch
		sh.peak = max(sh.peak, len(sh.channels))
	}
	return sh, ch
}

// subscribeBroker subscribes the broker to the channel unless it already
// is. The caller holds name's stripe lock.
func (h *Hub) subscribeBroker(ctx context.Context, sh *shard, name string, ch *channel, opts NamespaceOptions) error {
	if ch.brokerSubscribed {
		return nil
	}
	if err := h.broker.Subscribe(ctx, brokerChannels(name, opts)...); err != nil {
		h.dropIfUnused(sh, name, ch)
		return h.seen("subscribe the broker", name, err)
	}
	ch.brokerSubscribed = true
	h.stats.brokerChannels.Add(1)
	return nil
}

// subscribeWithHistory reads the channel's history while its live messages
// are held for c, then queues, in this order, the reply with the position
// read, the messages after o.Since (when recovering) or the newest o.Last,
// and the held messages newer than the position, and makes c a live
// subscriber. The caller holds name's stripe lock.
func (h *Hub) subscribeWithHistory(ctx context.Context, sh *shard, name string, ch *channel, c *Client, o SubscribeOptions, opts NamespaceOptions) error {
	since, reply := o.Since, o.Reply
	limit := opts.HistorySize
	if since == nil && o.Last > 0 {
		limit = min(o.Last, opts.HistorySize)
	}
	p := &pending{}
	sh.mu.Lock()
	if ch.pending == nil {
		ch.pending = make(map[*Client]*pending)
	}
	ch.pending[c] = p
	sh.mu.Unlock()
	res, err := h.hist.History(ctx, name, broker.HistoryRequest{Since: since, Limit: limit}, opts.publishOptions())

	sh.mu.Lock()
	delete(ch.pending, c)
	if err != nil {
		sh.mu.Unlock()
		h.dropIfUnused(sh, name, ch)
		return h.seen("read history to subscribe", name, err)
	}
	if ch.last.Epoch == "" && !ch.filling {
		ch.last = res.Pos
	}
	var recovered *bool
	var before []broker.Message
	switch {
	case since != nil:
		recovered = &res.Recovered
		if res.Recovered {
			before = res.Messages
		}
	case o.Last > 0:
		found := len(res.Messages) > 0
		recovered, before = &found, res.Messages
	}
	if ch.last.Epoch == res.Pos.Epoch && ch.last.Offset < res.Pos.Offset {
		// History is ahead of this node: its newest messages are in the
		// broker but their pub/sub copies have not reached the node yet
		// (or a gap is being filled). The sequencer will deliver them to
		// every live subscriber, c included, so c takes from history only
		// what the node has delivered, and the rest live, in order.
		for i, m := range before {
			if m.Pos.Epoch == ch.last.Epoch && m.Pos.Offset > ch.last.Offset {
				before = before[:i]
				break
			}
		}
	}
	for _, m := range p.held {
		if m.Pos.Epoch == res.Pos.Epoch && m.Pos.Offset <= res.Pos.Offset {
			continue // already in the history read, or before the reply's position
		}
		before = append(before, m)
	}
	h.joinLocked(ch, c, reply, res.Pos, recovered, before...)
	sh.mu.Unlock()
	return nil
}

// joinLocked queues c's reply and the messages it must see before the live
// ones, then makes it a live subscriber of ch. The shard's lock must be
// held.
func (h *Hub) joinLocked(ch *channel, c *Client, reply ReplyFunc, pos broker.Position, recovered *bool, before ...broker.Message) {
	if reply != nil {
		c.enqueue(reply(pos, recovered))
	}
	for _, m := range before {
		if c.skips(&m) {
			continue
		}
		if f := c.dialect.MessageFrame(m); f != nil {
			c.enqueue(f)
		}
	}
	if reply != nil && c.try && h.writers.auto {
		// The reply, and the recovered messages with it, are not held
		// (Client.reply).
		h.writers.expedite(c)
	}
	ch.releaseAt = 0
	ch.index[c] = len(ch.subs)
	ch.subs = append(ch.subs, c)
	h.stats.subscriptions.Add(1)
}

// dropIfUnused forgets a channel whose broker subscription failed or whose
// only subscriber failed to join, unless someone else uses it.
func (h *Hub) dropIfUnused(sh *shard, name string, ch *channel) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if len(ch.subs) == 0 && len(ch.pending) == 0 && ch.releaseAt == 0 {
		if ch.brokerSubscribed {
			h.scheduleReleaseLocked(name, ch)
			return
		}
		delete(sh.channels, name)
	}
}

// unsubscribe removes c from channel's subscribers; reply, when not nil, is
// queued to c in the same step, so no message of the channel follows it.
// The broker is unsubscribed UnsubscribeDelay after the last one leaves.
func (h *Hub) unsubscribe(c *Client, name string, reply []byte) {
	sh := h.shard(name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	ch := sh.channels[name]
	if ch == nil {
		return
	}
	if i, ok := ch.index[c]; ok {
		last := len(ch.subs) - 1
		moved := ch.subs[last]
		ch.subs[i] = moved
		ch.index[moved] = i
		ch.subs[last] = nil
		ch.subs = ch.subs[:last]
		delete(ch.index, c)
		h.stats.subscriptions.Add(-1)
		h.left(c, name)
	}
	if reply != nil {
		c.reply(reply)
	}
	if len(ch.subs) == 0 {
		h.scheduleReleaseLocked(name, ch)
	}
}

// Channels returns the channels that have local subscribers, with their
// local subscriber counts.
func (h *Hub) Channels() map[string]int {
	out := make(map[string]int)
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.RLock()
		for name, ch := range sh.channels {
			if len(ch.subs) > 0 {
				out[name] = len(ch.subs)
			}
		}
		sh.mu.RUnlock()
	}
	return out
}

// register adds c to the client registry.
func (h *Hub) register(c *Client) error {
	i := c.stripe
	h.clientsMu[i].Lock()
	defer h.clientsMu[i].Unlock()
	// Checked under the lock so that Shutdown's snapshot, taken after it
	// sets closing, sees every client registered before.
	if h.closing.Load() {
		return ErrClosing
	}
	h.clients[i][c] = struct{}{}
	h.active.Add(1)
	h.stats.connections.Add(1)
	h.stats.connectionsTotal.Add(1)
	return nil
}

func (h *Hub) unregister(c *Client) {
	i := c.stripe
	h.clientsMu[i].Lock()
	_, ok := h.clients[i][c]
	delete(h.clients[i], c)
	h.clientsMu[i].Unlock()
	if ok {
		h.stats.connections.Add(-1)
		h.active.Done()
	}
}

// snapshot returns every registered client.
func (h *Hub) snapshot() []*Client {
	var all []*Client
	for i := range h.clients {
		h.clientsMu[i].Lock()
		for c := range h.clients[i] {
			all = append(all, c)
		}
		h.clientsMu[i].Unlock()
	}
	return all
}

// pingFrame is the empty ping every connection receives each ping interval;
// one shared copy.
var pingFrame = wsframe.Control(wsframe.OpPing, nil)

// pingLoop pings every client each PingInterval. It is owned by the hub and
// ends at Shutdown.
func (h *Hub) pingLoop() {
	defer h.done.Done()
	t := time.NewTicker(h.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
			for _, c := range h.snapshot() {
				c.enqueue(pingFrame)
			}
		}
	}
}

// Shutdown stops the hub: it refuses new clients, asks every connected
// client to go (with its dialect's GoingAway close) spread over half of
// the time ctx leaves, waits for them to leave, closes those still there
// when ctx is done, stops the hub's goroutines and closes the broker. It
// may be called without Start, and more than once.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.closing.Store(true)
	h.stopOnce.Do(func() { close(h.stop) })
	clients := h.snapshot()

	allGone := make(chan struct{})
	go func() {
		h.active.Wait()
		close(allGone)
	}()

	drain := time.Second
	if dl, ok := ctx.Deadline(); ok {
		drain = time.Until(dl) / 2
	}
	h.closeSpread(ctx, clients, drain)

	var err error
	select {
	case <-allGone:
	case <-ctx.Done():
		err = ctx.Err()
		for _, c := range h.snapshot() {
			c.kill()
		}
		// Killed connections end their readers at once; do not hang on a
		// transport that does not.
		select {
		case <-allGone:
		case <-time.After(time.Second):
		}
	}
	h.done.Wait()
	h.bg.Wait()
	if h.started.Load() {
		h.writers.stop()
	}
	// The broker gets a moment of its own even when ctx is spent.
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	if berr := h.broker.Close(bctx); berr != nil && err == nil {
		err = berr
	}
	return err
}

// closeSpread closes clients in batches spread evenly over d, so that they
// do not all reconnect to the other nodes at the same instant.
func (h *Hub) closeSpread(ctx context.Context, clients []*Client, d time.Duration) {
	const step = 10 * time.Millisecond
	steps := int(d / step)
	if steps < 1 {
		steps = 1
	}
	per := (len(clients) + steps - 1) / steps
	if per < 1 {
		per = 1
	}
	t := time.NewTicker(step)
	defer t.Stop()
	for i := 0; i < len(clients); i += per {
		for _, c := range clients[i:min(i+per, len(clients))] {
			c.Close(c.dialect.GoingAway())
		}
		if i+per >= len(clients) {
			return
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// newClientID returns a client id unique across the cluster: the node id and
// a counter.
func (h *Hub) newClientID() (string, uint64) {
	n := h.nextID.Add(1)
	return h.cfg.NodeID + "-" + strconv.FormatUint(n, 36), n
}

func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// needs checks that the broker can do what the namespace options ask.
func (h *Hub) needs(name string, o NamespaceOptions) error {
	switch {
	case o.HistorySize > 0 && h.hist == nil:
		return fmt.Errorf("hub: namespace %q keeps history, but the broker keeps none", name)
	case (o.Presence || o.Occupancy) && h.pres == nil:
		return fmt.Errorf("hub: namespace %q keeps presence or occupancy, but the broker cannot", name)
	}
	return nil
}

var (
	_ broker.Handler      = (*Hub)(nil)
	_ broker.StateHandler = (*Hub)(nil)
)
