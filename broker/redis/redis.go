package redis

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/switchboard-rt/switchboard/broker"
)

// Config configures a Redis Broker. Zero fields take the defaults below.
type Config struct {
	// URL locates the Redis server:
	// redis://[[user]:password@]host[:port][/db], or rediss:// for TLS.
	// For a Redis Cluster it names any node, or several seed nodes
	// separated by commas (redis://:pw@10.0.0.1:7000,10.0.0.2:7001); the
	// broker finds by itself that it speaks to a cluster (see the package
	// documentation). Default "redis://127.0.0.1:6379/0".
	URL string
	// Prefix starts every key and pub/sub channel the broker uses, so that
	// several deployments can share one Redis. Default "sb".
	Prefix string
	// Logger receives connection loss and recovery. Default: discard.
	Logger *slog.Logger
	// Timeout bounds every Redis command, and so how long Publish,
	// Subscribe and History can take when Redis is away. Default 1s.
	Timeout time.Duration
	// HealthInterval is how often the broker PINGs Redis to notice an
	// outage that breaks no connection, and on a Redis Cluster reads its
	// topology. Default 250ms.
	HealthInterval time.Duration
	// ReconnectDelay is the longest wait between two reconnection attempts;
	// the first is immediate and the waits double up to it. Default 250ms.
	ReconnectDelay time.Duration
	// ConnectDelay is the longest wait between two attempts to make the
	// first connection, when Redis could not be reached at Start: the
	// waits start at 100ms and double up to it, with jitter. Default 5s.
	ConnectDelay time.Duration
	// SubscribeBatch is the most channels one SUBSCRIBE or UNSUBSCRIBE
	// command carries. Default 512.
	SubscribeBatch int
}

var (
	_ broker.Broker    = (*Broker)(nil)
	_ broker.Historian = (*Broker)(nil)
	_ broker.Readier   = (*Broker)(nil)
)

// subscriptions holds the broker's pub/sub subscriptions: it subscribes and
// unsubscribes for the requests on Broker.reqs, reconnects and subscribes
// again when its connections break, and reports it (Broker.subErr, the
// StateHandler). Today's is one connection with SUBSCRIBE (subscriber); a
// Redis Cluster's, one connection per shard with SSUBSCRIBE, plugs in here.
type subscriptions interface {
	// connect opens the connections; the first connection fails when it
	// fails.
	connect() error
	// run serves requests until the broker closes; Broker.wg counts it.
	run()
}

// Broker is the Redis broker. Create it with New.
type Broker struct {
	cfg  Config
	opt  rueidis.ClientOption
	log  *slog.Logger
	addr string // for messages

	keys keyspace // every key and pub/sub channel name

	// mu guards the life cycle: started and closed change under it.
	// client, subs, handler and state are set by the first connection
	// (connect: in Start, or on the connect goroutine), before running is
	// set, and are read-only after; the other methods read them only once
	// running is set.
	mu      sync.Mutex
	started bool        // guarded by mu
	running atomic.Bool // set once the first connection is made
	closed  atomic.Bool
	client  rueidis.Client
	subs    subscriptions
	// cluster is the subscriptions of a Redis Cluster (also in subs), nil
	// on one Redis; pubCmd is the publish command the scripts run:
	// "SPUBLISH" on a cluster, "PUBLISH" otherwise. Both are set with
	// client.
	cluster *clusterSubs
	pubCmd  string
	handler broker.Handler
	state   broker.StateHandler // handler as a StateHandler, or nil
	// connErr is why the first connection is not made yet: set by each
	// failed attempt, nil once running.
	connErr atomic.Pointer[error]

	stop chan struct{}  // closed by Close
	wg   sync.WaitGroup // the connect, subscriber and health goroutines
	reqs chan *subReq   // to the subscriber goroutine; never closed

	// Readiness: each error is nil while its side works. subErr is set by
	// the subscriber goroutine; pingErr by the health goroutine, and by the
	// subscriber when it reconnects (so that Ready never reports the
	// publishing connection up on the strength of a ping from before an
	// outage). ready is their conjunction, updated under readyMu.
	subErr  atomic.Pointer[error]
	pingErr atomic.Pointer[error]
	readyMu sync.Mutex
	ready   bool // guarded by readyMu

	publishScript *rueidis.Lua
	historyScript *rueidis.Lua
}

// New returns a Redis broker for cfg. It does not connect: Start does. It
// fails only when cfg.URL cannot be parsed.
func New(cfg Config) (*Broker, error) {
	if cfg.URL == "" {
		cfg.URL = "redis://127.0.0.1:6379/0"
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "sb"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Second
	}
	if cfg.HealthInterval <= 0 {
		cfg.HealthInterval = 250 * time.Millisecond
	}
	if cfg.ReconnectDelay <= 0 {
		cfg.ReconnectDelay = 250 * time.Millisecond
	}
	if cfg.ConnectDelay <= 0 {
		cfg.ConnectDelay = 5 * time.Second
	}
	if cfg.SubscribeBatch <= 0 {
		cfg.SubscribeBatch = 512
	}
	opt, err := parseURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	// Fail fast instead of retrying: the caller decides what an outage
	// means, and the subscriber goroutine reconnects by itself.
	opt.DisableRetry = true
	opt.DisableCache = true
	opt.ForceSingleClient = true
	opt.Dialer.Timeout = cfg.Timeout
	opt.ConnWriteTimeout = cfg.Timeout
	opt.ClientName = "switchboard"
	// One pipelined connection carries every command, so the health PING
	// tests the very connection Publish uses: after an outage, a second
	// connection left idle would fail its first command.
	opt.PipelineMultiplex = -1
	b := &Broker{
		cfg:           cfg,
		opt:           opt,
		log:           cfg.Logger,
		addr:          strings.Join(opt.InitAddress, ","),
		keys:          newKeyspace(cfg.Prefix),
		stop:          make(chan struct{}),
		reqs:          make(chan *subReq),
		publishScript: rueidis.NewLuaScript(publishLua),
		historyScript: rueidis.NewLuaScript(historyLua),
	}
	return b, nil
}

// Start connects to Redis, opens the pub/sub connection and starts the
// goroutines that keep them up until Close.
//
// When Redis cannot be reached now, Start still returns nil: it starts a
// goroutine that tries again, with backoff (100ms doubling up to
// Config.ConnectDelay, with jitter), until it connects or Close ends it.
// Every failed attempt is logged: at warning level when Redis may simply
// not be up yet (connection refused, a timeout), at error level when
// retrying alone will not help (ErrAuth, ErrCluster, ErrTLSHandshake, any
// other refusal from Redis). Meanwhile Ready returns why, wrapping
// broker.ErrUnavailable, and so does every call that needs Redis. A
// program that would rather not run without Redis checks Ready after Start.
func (b *Broker) Start(ctx context.Context, h broker.Handler) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed.Load() {
		return broker.ErrClosed
	}
	if b.started {
		return errors.New("redis: Start called twice")
	}
	b.started = true
	b.handler = h
	b.state, _ = h.(broker.StateHandler)
	err := b.connect()
	if err == nil {
		b.startLoops()
		return nil
	}
	wait := b.connectBackoff(1)
	b.connectFailed(err, 1, wait)
	b.wg.Add(1)
	go b.connectLoop(wait)
	return nil
}

// connect makes the first connection: the client that publishes, a check
// whether Redis is a cluster node, and the pub/sub connection (on a
// cluster: the topology and a connection to each primary). When all
// succeed it sets the broker running; otherwise it leaves nothing open.
// It is called by Start, then by the connect goroutine, never both.
//
// One address is first reached as one Redis; when INFO says it is a
// cluster node, or several addresses were given (seeds), the broker
// connects as a cluster client instead.
func (b *Broker) connect() error {
	clustered := len(b.opt.InitAddress) > 1
	if !clustered {
		client, err := rueidis.NewClient(b.opt)
		if err != nil {
			if client != nil {
				client.Close()
			}
			return b.connectError("connect to", err)
		}
		if clustered, err = b.clusterNode(client); err != nil {
			client.Close()
			return err
		}
		if clustered {
			client.Close()
		} else {
			b.client, b.pubCmd = client, "PUBLISH"
		}
	}
	var subs subscriptions
	if clustered {
		opt := b.opt
		opt.ForceSingleClient = false
		client, err := rueidis.NewClient(opt)
		if err != nil {
			if client != nil {
				client.Close()
			}
			if strings.Contains(err.Error(), "cluster support disabled") {
				return fmt.Errorf("%w: %s: several addresses name the seeds of a cluster, but these are not cluster nodes: %w: %w", ErrCluster, b.addr, broker.ErrUnavailable, err)
			}
			return b.connectError("connect to the cluster of", err)
		}
		if client.Mode() != rueidis.ClientModeCluster {
			client.Close()
			return fmt.Errorf("%w: %s: several addresses name the seeds of a cluster, but these are not cluster nodes: %w", ErrCluster, b.addr, broker.ErrUnavailable)
		}
		b.client, b.pubCmd = client, "SPUBLISH"
		b.keys.sharded = true
		cs := newClusterSubs(b)
		b.cluster, subs = cs, cs
	} else {
		subs = newSubscriber(b)
	}
	if err := subs.connect(); err != nil {
		b.client.Close()
		b.client, b.cluster = nil, nil
		b.keys.sharded = false
		return b.connectError("open the pub/sub connection to", err)
	}
	b.subs = subs
	b.readyMu.Lock()
	b.ready = true
	b.readyMu.Unlock()
	b.connErr.Store(nil)
	b.running.Store(true)
	return nil
}

// clusterNode reports whether the server is a Redis Cluster node
// (cluster_enabled:1 in INFO cluster). A server that does not answer INFO
// (renamed or forbidden) is taken as a standalone one.
func (b *Broker) clusterNode(client rueidis.Client) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.Timeout)
	defer cancel()
	info, err := client.Do(ctx, client.B().Info().Section("cluster").Build()).ToString()
	if err != nil {
		if _, ok := rueidis.IsRedisErr(err); ok {
			return false, nil
		}
		return false, b.connectError("ask about cluster mode", err)
	}
	return strings.Contains(info, "cluster_enabled:1"), nil
}

// connectLoop makes the first connection when Start could not: it waits
// (first for wait, then with growing backoff), tries again and logs every
// failure, until it connects or Close. Once connected it starts the
// subscriber and health goroutines. It is counted in b.wg, and so are they
// before it returns.
func (b *Broker) connectLoop(wait time.Duration) {
	defer b.wg.Done()
	for attempt := 2; ; attempt++ {
		t := time.NewTimer(wait)
		select {
		case <-b.stop:
			t.Stop()
			return
		case <-t.C:
		}
		err := b.connect()
		if err != nil {
			wait = b.connectBackoff(attempt)
			b.connectFailed(err, attempt, wait)
			continue
		}
		if !b.closed.Load() {
			b.log.Info("redis: connected", "addr", b.addr, "attempts", attempt)
		}
		b.startLoops()
		return
	}
}

// startLoops starts the goroutines of a connected broker: the subscriber,
// and on one Redis the health goroutine (a cluster's subscriber checks its
// shards itself). They are counted in b.wg.
func (b *Broker) startLoops() {
	b.wg.Add(1)
	go b.subs.run()
	if b.cluster == nil {
		b.wg.Add(1)
		go b.health()
	}
}

// connectBackoff returns the wait after failed attempt n (n >= 1) to make
// the first connection: 100ms doubling up to ConnectDelay, with jitter.
func (b *Broker) connectBackoff(n int) time.Duration {
	return jitter(min(100*time.Millisecond<<min(n-1, 16), b.cfg.ConnectDelay))
}

// connectFailed records and logs failed attempt n to make the first
// connection, to be retried after wait.
func (b *Broker) connectFailed(err error, n int, wait time.Duration) {
	b.connErr.Store(&err)
	if b.closed.Load() {
		return
	}
	retry := []any{"addr", b.addr, "attempt", n, "retry_in", wait.Round(time.Millisecond), "err", err}
	if permanent(err) {
		b.log.Error("redis: cannot connect: "+hint(err)+"; retrying until it is fixed", retry...)
		return
	}
	b.log.Warn("redis: cannot connect yet; retrying", retry...)
}

// permanent reports whether a failure to connect needs someone to change
// something (the URL, the server) rather than only time: Redis answered,
// and refused.
func permanent(err error) bool {
	if errors.Is(err, ErrAuth) || errors.Is(err, ErrCluster) || errors.Is(err, ErrTLSHandshake) {
		return true
	}
	var rerr *rueidis.RedisError
	return errors.As(err, &rerr) && !unavailableReply(rerr)
}

// hint says in a few words what a permanent failure to connect means.
func hint(err error) string {
	for _, known := range []error{ErrAuth, ErrCluster, ErrTLSHandshake} {
		if errors.Is(err, known) {
			return strings.TrimPrefix(known.Error(), "redis: ")
		}
	}
	return "Redis refused the connection"
}

// ErrTLSHandshake is wrapped by the error of an attempt to connect whose
// TLS handshake (rediss://) failed or timed out: most often the port
// speaks plain Redis.
var ErrTLSHandshake = errors.New("TLS handshake failed (rediss:// needs a Redis that speaks TLS on this port; use redis:// for a plain one)")

// connectError is the error of an attempt to connect that failed: it
// wraps broker.ErrUnavailable and err; ErrAuth when Redis refused the
// credentials (NOAUTH, WRONGPASS); and ErrTLSHandshake when the connection
// was over TLS and failed with a TLS error or a timeout (a plain Redis
// waits, silently, for the rest of the TLS hello).
func (b *Broker) connectError(what string, err error) error {
	var netErr net.Error
	timeout := errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout())
	if b.opt.TLSConfig != nil && (timeout || strings.Contains(err.Error(), "tls: ")) {
		return fmt.Errorf("redis: %s %s: %w: %w: %w", what, b.addr, ErrTLSHandshake, broker.ErrUnavailable, err)
	}
	var rerr *rueidis.RedisError
	if errors.As(err, &rerr) && authReply(rerr) {
		return fmt.Errorf("%w: %s %s: %w: %w", ErrAuth, what, b.addr, broker.ErrUnavailable, err)
	}
	return fmt.Errorf("redis: %s %s: %w: %w", what, b.addr, broker.ErrUnavailable, err)
}

// authReply reports whether a Redis error reply refuses the connection's
// credentials.
func authReply(err *rueidis.RedisError) bool {
	msg := err.Error()
	return strings.HasPrefix(msg, "NOAUTH") || strings.HasPrefix(msg, "WRONGPASS")
}

// Ready returns nil while the broker can publish and deliver, and otherwise
// an error wrapping broker.ErrUnavailable that says why (and
// broker.ErrClosed after Close).
func (b *Broker) Ready() error {
	if b.closed.Load() {
		return fmt.Errorf("redis: %w: %w", broker.ErrUnavailable, broker.ErrClosed)
	}
	if !b.running.Load() {
		if p := b.connErr.Load(); p != nil {
			return *p
		}
		return fmt.Errorf("%w: %w", ErrNotStarted, broker.ErrUnavailable)
	}
	if b.cluster != nil {
		return b.cluster.ready()
	}
	if p := b.subErr.Load(); p != nil {
		return fmt.Errorf("redis: pub/sub connection to %s: %w: %w", b.addr, broker.ErrUnavailable, *p)
	}
	if p := b.pingErr.Load(); p != nil {
		return fmt.Errorf("redis: ping %s: %w: %w", b.addr, broker.ErrUnavailable, *p)
	}
	return nil
}

// setErr records one side's state and logs a change of readiness.
func (b *Broker) setErr(p *atomic.Pointer[error], err error) {
	if err == nil {
		p.Store(nil)
	} else {
		p.Store(&err)
	}
	b.readyMu.Lock()
	defer b.readyMu.Unlock()
	ready := b.subErr.Load() == nil && b.pingErr.Load() == nil
	if ready == b.ready || b.closed.Load() {
		return
	}
	b.ready = ready
	if ready {
		b.log.Info("redis: connection restored", "addr", b.addr)
	} else {
		b.log.Warn("redis: connection lost", "addr", b.addr, "err", err)
	}
}

// usable returns the error of a call that cannot proceed: the broker is
// closed, not started, or not connected yet (wrapping
// broker.ErrUnavailable).
func (b *Broker) usable() error {
	if b.closed.Load() {
		return broker.ErrClosed
	}
	if !b.running.Load() {
		if p := b.connErr.Load(); p != nil {
			return *p
		}
		return ErrNotStarted
	}
	return nil
}

// fail returns the error of a failed command for op on channel: the
// caller's own context error, or one wrapping broker.ErrUnavailable when
// Redis could not do it.
func (b *Broker) fail(ctx context.Context, op, channel string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("redis: %s %q: %w", op, channel, cerr)
	}
	if b.closed.Load() {
		return fmt.Errorf("redis: %s %q: %w", op, channel, broker.ErrClosed)
	}
	if rerr, ok := rueidis.IsRedisErr(err); ok && !unavailableReply(rerr) {
		return fmt.Errorf("redis: %s %q: %w", op, channel, err)
	}
	return fmt.Errorf("redis: %s %q: %w: %w", op, channel, broker.ErrUnavailable, err)
}

// unavailableReply reports whether a Redis error reply means the server
// cannot serve now, rather than that the command was wrong.
func unavailableReply(err *rueidis.RedisError) bool {
	msg := err.Error()
	for _, p := range []string{"LOADING", "BUSY", "MASTERDOWN", "READONLY", "OOM", "CLUSTERDOWN", "TRYAGAIN", "NOREPLICAS"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// Keys of a channel (see the package documentation).

// ttlMillis returns the history time-to-live of opts in milliseconds.
func ttlMillis(opts broker.PublishOptions) string {
	ttl := opts.HistoryTTL
	if ttl <= 0 {
		ttl = 24 * time.Hour
	}
	return strconv.FormatInt(max(ttl.Milliseconds(), 1), 10)
}

// Publish publishes data to the channel; with opts.HistorySize > 0 it also
// appends it to the channel's history and returns its position. It waits
// for Redis's reply, at most Config.Timeout.
func (b *Broker) Publish(ctx context.Context, channel string, data []byte, opts broker.PublishOptions) (broker.Position, error) {
	if err := b.usable(); err != nil {
		return broker.Position{}, err
	}
	if b.cluster != nil {
		// A channel whose primary is down fails at once, the others
		// keep working.
		if err := b.cluster.readyFor(channel); err != nil {
			return broker.Position{}, fmt.Errorf("redis: publish %q: %w", channel, err)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	idemTTL := strconv.FormatInt(opts.IdempotencyWindow().Milliseconds(), 10)
	if opts.HistorySize <= 0 {
		// The data is copied: after a timeout rueidis may still hold the
		// command, and the caller may reuse its buffer.
		payload := string(encode(data, opts.Binary, opts.Skip))
		var err error
		switch {
		case opts.IdempotencyKey != "":
			// Safe to retry through a failover: the key makes it once.
			err = b.retry(cctx, func() error {
				return publishOnceScript.Exec(cctx, b.client, []string{b.keys.idem(channel, opts.IdempotencyKey)},
					[]string{b.keys.channel(channel), payload, idemTTL, b.pubCmd}).Error()
			})
		case b.cluster != nil:
			cmd := b.client.B().Spublish().Channel(b.keys.channel(channel)).Message(payload).Build()
			err = b.client.Do(cctx, cmd).Error()
		default:
			cmd := b.client.B().Publish().Channel(b.keys.channel(channel)).Message(payload).Build()
			err = b.client.Do(cctx, cmd).Error()
		}
		if err != nil {
			return broker.Position{}, b.fail(ctx, "publish", channel, err)
		}
		return broker.Position{}, nil
	}
	keys := []string{b.keys.stream(channel), b.keys.meta(channel)}
	if opts.IdempotencyKey != "" {
		keys = append(keys, b.keys.idem(channel, opts.IdempotencyKey))
	}
	binary := "0"
	if opts.Binary {
		binary = "1"
	}
	args := []string{b.keys.channel(channel), string(data), strconv.Itoa(opts.HistorySize), ttlMillis(opts), newEpoch(), idemTTL, binary, opts.Skip,
		strconv.FormatInt(time.Now().UnixMilli(), 10), b.pubCmd}
	var arr []rueidis.RedisMessage
	run := func() (err error) {
		arr, err = b.publishScript.Exec(cctx, b.client, keys, args).ToArray()
		return err
	}
	var err error
	if opts.IdempotencyKey != "" {
		// Safe to retry through a failover: the key makes it once.
		err = b.retry(cctx, run)
	} else {
		err = run()
	}
	if err != nil {
		return broker.Position{}, b.fail(ctx, "publish", channel, err)
	}
	pos, err := position(arr)
	if err != nil {
		return broker.Position{}, fmt.Errorf("redis: publish %q: %w", channel, err)
	}
	return pos, nil
}

// position reads the epoch and offset that start a script's reply.
func position(arr []rueidis.RedisMessage) (broker.Position, error) {
	if len(arr) < 2 {
		return broker.Position{}, fmt.Errorf("script reply of %d values", len(arr))
	}
	epoch, err := arr[0].ToString()
	if err != nil {
		return broker.Position{}, fmt.Errorf("script reply epoch: %w", err)
	}
	off, err := arr[1].AsInt64()
	if err != nil || off < 0 {
		return broker.Position{}, fmt.Errorf("script reply offset %d: %w", off, err)
	}
	return broker.Position{Epoch: epoch, Offset: uint64(off)}, nil
}

// History reads the channel's history (see broker.Historian). A channel
// without a live history gets a fresh epoch at offset 0 when opts keep
// history, and the zero Position when they do not.
func (b *Broker) History(ctx context.Context, channel string, req broker.HistoryRequest, opts broker.PublishOptions) (broker.HistoryResult, error) {
	if err := b.usable(); err != nil {
		return broker.HistoryResult{}, err
	}
	cctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	var since, sinceEpoch string
	if req.Since != nil {
		since, sinceEpoch = strconv.FormatUint(req.Since.Offset, 10), req.Since.Epoch
	}
	create := "0"
	if opts.HistorySize > 0 {
		create = "1"
	}
	var arr []rueidis.RedisMessage
	// A read is safe to retry while a cluster fails over or moves a slot.
	err := b.retry(cctx, func() (err error) {
		arr, err = b.historyScript.Exec(cctx, b.client,
			[]string{b.keys.stream(channel), b.keys.meta(channel)},
			[]string{since, sinceEpoch, strconv.Itoa(max(req.Limit, 0)), create, newEpoch(), ttlMillis(opts)}).ToArray()
		return err
	})
	if err != nil {
		return broker.HistoryResult{}, b.fail(ctx, "history", channel, err)
	}
	out, err := historyResult(channel, arr, req.Since == nil)
	if err != nil {
		return broker.HistoryResult{}, fmt.Errorf("redis: history %q: %w", channel, err)
	}
	return out, nil
}

// historyResult decodes the history script's reply {epoch, offset,
// recovered, entries}; newestFirst tells that entries are in reverse.
func historyResult(channel string, arr []rueidis.RedisMessage, newestFirst bool) (broker.HistoryResult, error) {
	var res broker.HistoryResult
	pos, err := position(arr)
	if err != nil || len(arr) != 4 {
		return res, fmt.Errorf("bad script reply (%d values): %w", len(arr), err)
	}
	res.Pos = pos
	if pos.Epoch == "" {
		return broker.HistoryResult{}, nil
	}
	rec, err := arr[2].AsInt64()
	if err != nil {
		return res, fmt.Errorf("script reply recovered: %w", err)
	}
	res.Recovered = rec == 1
	entries, err := arr[3].ToArray()
	if err != nil {
		return res, fmt.Errorf("script reply entries: %w", err)
	}
	if len(entries) == 0 {
		return res, nil
	}
	res.Messages = make([]broker.Message, len(entries))
	for i, e := range entries {
		m, err := entry(channel, pos.Epoch, e)
		if err != nil {
			return res, err
		}
		if newestFirst {
			res.Messages[len(entries)-1-i] = m
		} else {
			res.Messages[i] = m
		}
	}
	return res, nil
}

// entry decodes one stream entry [id, [field, value...]].
func entry(channel, epoch string, e rueidis.RedisMessage) (broker.Message, error) {
	kv, err := e.ToArray()
	if err != nil || len(kv) != 2 {
		return broker.Message{}, fmt.Errorf("stream entry: %w", err)
	}
	id, err := kv[0].ToString()
	if err != nil {
		return broker.Message{}, fmt.Errorf("stream entry ID: %w", err)
	}
	off, err := parseID(id)
	if err != nil {
		return broker.Message{}, err
	}
	fields, err := kv[1].ToArray()
	if err != nil || len(fields) < 2 || len(fields)%2 != 0 {
		return broker.Message{}, fmt.Errorf("stream entry %s fields: %w", id, err)
	}
	m := broker.Message{Channel: channel, Pos: broker.Position{Epoch: epoch, Offset: off}}
	hasData := false
	for i := 0; i < len(fields); i += 2 {
		name, err := fields[i].ToString()
		if err != nil {
			return broker.Message{}, fmt.Errorf("stream entry %s field name: %w", id, err)
		}
		switch name {
		case "d":
			if m.Data, err = fields[i+1].AsBytes(); err != nil {
				return broker.Message{}, fmt.Errorf("stream entry %s data: %w", id, err)
			}
			hasData = true
		case "b":
			m.Binary = true
		case "t":
			// The publish time; entries written before it was kept have none.
			if t, err := fields[i+1].AsInt64(); err == nil {
				m.Time = t
			}
		}
	}
	if !hasData {
		return broker.Message{}, fmt.Errorf("stream entry %s has no data", id)
	}
	return m, nil
}

// Subscribe subscribes to the channels not yet subscribed and returns once
// Redis has confirmed it. While the pub/sub connection is down it fails at
// once with an error wrapping broker.ErrUnavailable.
func (b *Broker) Subscribe(ctx context.Context, channels ...string) error {
	if err := b.usable(); err != nil {
		return err
	}
	if len(channels) == 0 {
		return nil
	}
	return b.request(ctx, true, channels)
}

// Unsubscribe unsubscribes from the channels. While the pub/sub connection
// is down it only forgets them, so they are not subscribed again.
func (b *Broker) Unsubscribe(ctx context.Context, channels ...string) error {
	if err := b.usable(); err != nil {
		return err
	}
	if len(channels) == 0 {
		return nil
	}
	return b.request(ctx, false, channels)
}

// request hands a subscription change to the subscriber goroutine and waits
// for its outcome.
func (b *Broker) request(ctx context.Context, subscribe bool, channels []string) error {
	op := "unsubscribe"
	if subscribe {
		op = "subscribe"
	}
	r := &subReq{ctx: ctx, subscribe: subscribe, channels: channels, done: make(chan error, 1)}
	select {
	case b.reqs <- r:
	case <-ctx.Done():
		return fmt.Errorf("redis: %s %d channels: %w", op, len(channels), ctx.Err())
	case <-b.stop:
		return broker.ErrClosed
	}
	select {
	case err := <-r.done:
		if err != nil {
			return fmt.Errorf("redis: %s %d channels (%q...): %w", op, len(channels), channels[0], err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("redis: %s %d channels: %w", op, len(channels), ctx.Err())
	case <-b.stop:
		return broker.ErrClosed
	}
}

// onMessage hands a pub/sub message to the Handler. rueidis calls it from
// the pub/sub connection's reader, one message at a time, in order.
func (b *Broker) onMessage(m rueidis.PubSubMessage) {
	name, ok := b.keys.channelOf(m.Channel)
	if !ok {
		return
	}
	msg, err := decode(name, m.Message)
	if err != nil {
		b.log.Warn("redis: dropped a malformed message", "channel", name, "err", err)
		return
	}
	b.handler.HandleMessage(msg)
}

// health PINGs Redis every HealthInterval until Close, to notice an outage
// that breaks no connection.
func (b *Broker) health() {
	defer b.wg.Done()
	t := time.NewTicker(b.cfg.HealthInterval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
		}
		b.checkPing()
	}
}

// checkPing PINGs Redis through the client that publishes and records the
// outcome.
func (b *Broker) checkPing() {
	err := b.ping()
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		// A connection idle since Redis went away reports its end only
		// when used: the next ping dials a fresh one.
		err = b.ping()
	}
	b.setErr(&b.pingErr, err)
}

// ping PINGs Redis through the client that publishes.
func (b *Broker) ping() error {
	ctx, cancel := context.WithTimeout(context.Background(), min(b.cfg.Timeout, 2*b.cfg.HealthInterval))
	defer cancel()
	return b.client.Do(ctx, b.client.B().Ping().Build()).Error()
}

// Close stops the broker's goroutines, closes its connections and waits
// for the goroutines to end, or for ctx to be done. Later calls fail with
// broker.ErrClosed; a second Close returns nil.
func (b *Broker) Close(ctx context.Context) error {
	b.mu.Lock()
	if b.closed.Swap(true) {
		b.mu.Unlock()
		return nil
	}
	close(b.stop)
	started := b.started
	b.mu.Unlock()
	if !started {
		return nil
	}
	done := make(chan struct{})
	go func() {
		b.wg.Wait()
		close(done)
	}()
	var err error
	clientClosed := false
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("redis: close: %w", ctx.Err())
		// Closing the client ends any command still in flight. Before
		// running, the connect goroutine owns it and closes it itself.
		if b.running.Load() {
			b.client.Close()
			clientClosed = true
		}
	}
	<-done
	if b.running.Load() && !clientClosed {
		b.client.Close()
	}
	return err
}

// epochEncoding writes epochs: short, lowercase, URL and JSON safe.
var epochEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newEpoch returns a fresh random epoch of 8 characters.
func newEpoch() string {
	var b [5]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return epochEncoding.EncodeToString(b[:])
}
