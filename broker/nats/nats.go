package nats

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-rt/switchboard/broker"
)

// Config configures a NATS Broker. Zero fields take the defaults below.
type Config struct {
	// URL locates the NATS server: nats://[user:password@]host[:port], or
	// several comma-separated URLs of one cluster; tls:// for TLS.
	// Default "nats://127.0.0.1:4222".
	URL string
	// Prefix starts every subject, stream and KV bucket the broker uses,
	// so that several applications can share one NATS: letters, digits,
	// '-' and '_'. Default "sb".
	Prefix string
	// Logger receives connection loss and recovery. Default: discard.
	Logger *slog.Logger
	// Timeout bounds every request to NATS (a JetStream publish, a history
	// read, a subscription's confirmation). Default 2s.
	Timeout time.Duration
	// PingInterval is how often the connection pings NATS to notice an
	// outage that breaks no connection; two unanswered pings end it.
	// Default 1s.
	PingInterval time.Duration
	// ReconnectDelay is the wait between two attempts to reconnect, and to
	// make the first connection when NATS cannot be reached at Start.
	// Default 250ms.
	ReconnectDelay time.Duration
	// Storage is where JetStream keeps history, presence and idempotency
	// keys: jetstream.FileStorage (the default), which survives a restart
	// of NATS, or jetstream.MemoryStorage.
	Storage jetstream.StorageType
	// Replicas is the number of replicas of every stream and bucket the
	// broker creates, in a JetStream cluster. Default 1.
	Replicas int
	// IdempotencyWindow is how long the live stream (channels without
	// history) remembers idempotency keys, whatever a publish's
	// IdempotencyTTL: the stream's duplicate window. History streams
	// remember them for the shorter of it and their history's ttl.
	// Default broker.DefaultIdempotencyTTL (5 minutes).
	IdempotencyWindow time.Duration
}

var (
	_ broker.Broker      = (*Broker)(nil)
	_ broker.Historian   = (*Broker)(nil)
	_ broker.Readier     = (*Broker)(nil)
	_ broker.Presencer   = (*Broker)(nil)
	_ broker.NodeCounter = (*Broker)(nil)
)

// Broker is the NATS broker. Create it with New.
type Broker struct {
	cfg  Config
	log  *slog.Logger
	ns   namespace
	addr string // the URL without credentials, for messages

	// mu guards the life cycle: started and closed change under it. nc,
	// js and handler are set by Start and read-only after.
	mu      sync.Mutex
	started bool        // guarded by mu
	running atomic.Bool // set at the end of Start: nc and js are set
	closed  atomic.Bool
	nc      *nats.Conn
	js      jetstream.JetStream
	handler broker.Handler
	state   broker.StateHandler // handler as a StateHandler, or nil

	// connErr is the latest connection error, for Ready; nil once
	// connected.
	connErr atomic.Pointer[error]
	// jsErr is why JetStream cannot be used on the server the broker is
	// connected to (not enabled, say); nil when it can. Set by the state
	// goroutine after each connection.
	jsErr atomic.Pointer[error]
	// firstSent is set when the first connection's event is sent (by
	// Start or nats.go's callback, whichever sees it first); jsChecks
	// counts the JetStream checks done.
	firstSent atomic.Bool
	jsChecks  atomic.Int64
	// attemptLogged is when a failed attempt to connect was last logged
	// (Unix ns).
	attemptLogged atomic.Int64
	// events carries connection changes from nats.go's callbacks to the
	// state goroutine, which alone calls the StateHandler.
	events chan connEvent
	stop   chan struct{}  // closed by Close
	wg     sync.WaitGroup // the state goroutine

	subsMu sync.Mutex
	subs   map[string]*channelSub // guarded by subsMu

	hist history // streams, and each channel's newest message
	kv   buckets // presence and node counts
}

// connEvent is a change of the connection: lost (with why), back, or
// made for the first time.
type connEvent struct {
	lost  bool
	first bool
	err   error
}

// New returns a NATS broker for cfg. It does not connect: Start does. It
// fails only when cfg.URL cannot be parsed or cfg.Prefix is not valid.
func New(cfg Config) (*Broker, error) {
	if cfg.URL == "" {
		cfg.URL = "nats://127.0.0.1:4222"
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "sb"
	}
	if !validPrefix(cfg.Prefix) {
		return nil, fmt.Errorf("nats: prefix %q: want letters, digits, '-' and '_' only", cfg.Prefix)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = time.Second
	}
	if cfg.ReconnectDelay <= 0 {
		cfg.ReconnectDelay = 250 * time.Millisecond
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.IdempotencyWindow <= 0 {
		cfg.IdempotencyWindow = broker.DefaultIdempotencyTTL
	}
	addrs, err := redactURLs(cfg.URL)
	if err != nil {
		return nil, err
	}
	b := &Broker{
		cfg:    cfg,
		log:    cfg.Logger,
		ns:     namespace{prefix: cfg.Prefix},
		addr:   addrs,
		events: make(chan connEvent, 64),
		stop:   make(chan struct{}),
		subs:   make(map[string]*channelSub),
	}
	b.hist.init(b)
	b.kv.init(b)
	return b, nil
}

// redactURLs checks the comma-separated URLs and returns them without
// credentials.
func redactURLs(urls string) (string, error) {
	var out []string
	for _, s := range strings.Split(urls, ",") {
		u, err := url.Parse(strings.TrimSpace(s))
		if err != nil {
			var uerr *url.Error
			if errors.As(err, &uerr) {
				err = uerr.Err // url.Error repeats the URL, password and all
			}
			return "", fmt.Errorf("nats: parse URL: %w", err)
		}
		switch u.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return "", fmt.Errorf("nats: parse URL: scheme %q: want nats://, tls://, ws:// or wss://", u.Scheme)
		}
		if u.Host == "" {
			return "", errors.New("nats: parse URL: no host")
		}
		out = append(out, u.Scheme+"://"+u.Host)
	}
	return strings.Join(out, ","), nil
}

// Start connects to NATS and starts the goroutine that reports connection
// changes to the Handler, until Close.
//
// When NATS cannot be reached now, Start still returns nil: nats.go keeps
// trying every Config.ReconnectDelay until it connects or Close. Meanwhile
// Ready returns why, wrapping broker.ErrUnavailable, and so does every call
// that needs NATS.
func (b *Broker) Start(ctx context.Context, h broker.Handler) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed.Load() {
		return broker.ErrClosed
	}
	if b.started {
		return errors.New("nats: Start called twice")
	}
	b.handler = h
	b.state, _ = h.(broker.StateHandler)
	notYet := fmt.Errorf("nats: connecting to %s: %w", b.addr, broker.ErrUnavailable)
	b.connErr.Store(&notYet)
	nc, err := nats.Connect(b.cfg.URL,
		nats.Name("switchboard"),
		nats.Timeout(b.cfg.Timeout),
		nats.PingInterval(b.cfg.PingInterval),
		nats.MaxPingsOutstanding(2),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(b.cfg.ReconnectDelay),
		nats.ReconnectJitter(b.cfg.ReconnectDelay/5, b.cfg.ReconnectDelay/5),
		// Fail publishes at once while disconnected, as the Redis broker
		// does, rather than buffer them for a reconnection that may not
		// come: the caller decides what an outage means.
		nats.ReconnectBufSize(-1),
		nats.ConnectHandler(func(*nats.Conn) { b.connected(false) }),
		nats.ReconnectHandler(func(*nats.Conn) { b.connected(true) }),
		nats.DisconnectErrHandler(b.disconnected),
		nats.ReconnectErrHandler(b.attemptFailed),
		nats.ErrorHandler(b.asyncError),
	)
	if err != nil {
		return fmt.Errorf("nats: connect to %s: %w", b.addr, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return fmt.Errorf("nats: jetstream: %w", err)
	}
	b.nc, b.js = nc, js
	b.started = true
	b.running.Store(true)
	if nc.IsConnected() {
		b.connErr.Store(nil)
		if !b.firstSent.Swap(true) {
			b.send(connEvent{first: true})
		}
	} else if err := nc.LastError(); err != nil {
		b.attemptFailed(nc, err)
	}
	b.wg.Add(1)
	go b.watch()
	return nil
}

// connected is nats.go's callback for a (re)connection.
func (b *Broker) connected(again bool) {
	b.connErr.Store(nil)
	if b.closed.Load() {
		return
	}
	if again {
		b.send(connEvent{})
		return
	}
	if !b.firstSent.Swap(true) {
		b.log.Info("nats: connected", "addr", b.addr)
		b.send(connEvent{first: true})
	}
}

// disconnected is nats.go's callback for a lost connection.
func (b *Broker) disconnected(_ *nats.Conn, err error) {
	if err == nil {
		err = errors.New("connection closed")
	}
	werr := fmt.Errorf("nats: connection to %s: %w: %w", b.addr, broker.ErrUnavailable, err)
	b.connErr.Store(&werr)
	if b.closed.Load() {
		return
	}
	b.send(connEvent{lost: true, err: werr})
}

// attemptFailed is nats.go's callback for a failed attempt to connect or
// reconnect: Ready says why, and the log says so now and then (at most
// every 10 seconds: nats.go tries every ReconnectDelay).
func (b *Broker) attemptFailed(_ *nats.Conn, err error) {
	if err == nil || b.closed.Load() {
		return
	}
	werr := fmt.Errorf("nats: connect to %s: %w: %w", b.addr, broker.ErrUnavailable, err)
	b.connErr.Store(&werr)
	now := time.Now().UnixNano()
	last := b.attemptLogged.Load()
	if now-last < int64(10*time.Second) || !b.attemptLogged.CompareAndSwap(last, now) {
		return
	}
	b.log.Warn("nats: cannot connect; retrying", "addr", b.addr, "retry_every", b.cfg.ReconnectDelay, "err", err)
}

// asyncError logs what nats.go reports outside any call: a slow consumer,
// a permission denied.
func (b *Broker) asyncError(_ *nats.Conn, sub *nats.Subscription, err error) {
	if sub != nil {
		b.log.Warn("nats: subscription error", "subject", sub.Subject, "err", err)
		return
	}
	b.log.Warn("nats: error", "err", err)
}

// send hands an event to the state goroutine without blocking nats.go.
func (b *Broker) send(e connEvent) {
	select {
	case b.events <- e:
	default:
		b.log.Warn("nats: connection events pile up; one dropped", "lost", e.lost)
	}
}

// watch is the state goroutine: it logs connection changes, forgets what
// a NATS restart may have erased, and calls the StateHandler, once per
// loss and once per recovery, the latter once NATS has confirmed every
// subscription again (a flush after nats.go resent them).
func (b *Broker) watch() {
	defer b.wg.Done()
	lost := false
	for {
		var e connEvent
		select {
		case <-b.stop:
			return
		case e = <-b.events:
		}
		if e.first {
			b.checkJetStream()
			continue
		}
		if e.lost {
			if !lost {
				lost = true
				b.log.Warn("nats: connection lost", "addr", b.addr, "err", e.err)
				if b.state != nil {
					b.state.SubscriptionsLost(e.err)
				}
			}
			continue
		}
		if !lost {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), b.cfg.Timeout)
		err := b.nc.FlushWithContext(ctx)
		cancel()
		if err != nil {
			// The connection broke again: its loss event follows.
			continue
		}
		lost = false
		b.checkJetStream()
		// NATS may have restarted empty: streams and buckets are made
		// again when next used, and channels start their order afresh.
		b.hist.forget()
		b.kv.forget()
		b.resetOrder()
		b.log.Info("nats: connection restored", "addr", b.addr)
		if b.state != nil {
			b.state.SubscriptionsRestored()
		}
	}
}

// checkJetStream asks the server for the account's JetStream usage, and
// records and logs (as an error: time alone will not fix it) when
// JetStream cannot be used there.
func (b *Broker) checkJetStream() {
	defer b.jsChecks.Add(1)
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.Timeout)
	defer cancel()
	_, err := b.js.AccountInfo(ctx)
	if err == nil {
		if b.jsErr.Swap(nil) != nil {
			b.log.Info("nats: JetStream available", "addr", b.addr)
		}
		return
	}
	if !b.nc.IsConnected() || b.closed.Load() {
		return // the connection broke again: its loss is reported
	}
	werr := fmt.Errorf("nats: JetStream on %s: %w: %w", b.addr, broker.ErrUnavailable, err)
	b.jsErr.Store(&werr)
	hint := "the broker needs JetStream: start nats-server with -js (or jetstream {} in its configuration), and give this account JetStream"
	b.log.Error("nats: "+hint, "addr", b.addr, "err", err)
}

// Ready returns nil while the broker can publish and deliver, and otherwise
// an error wrapping broker.ErrUnavailable that says why (and
// broker.ErrClosed after Close).
func (b *Broker) Ready() error {
	if b.closed.Load() {
		return fmt.Errorf("nats: %w: %w", broker.ErrUnavailable, broker.ErrClosed)
	}
	if err := b.usable(); err != nil {
		return err
	}
	if p := b.jsErr.Load(); p != nil {
		return *p
	}
	return nil
}

// usable returns the error of a call that cannot proceed: the broker is
// closed, not started, or not connected (wrapping broker.ErrUnavailable).
func (b *Broker) usable() error {
	if b.closed.Load() {
		return broker.ErrClosed
	}
	if !b.running.Load() {
		return fmt.Errorf("nats: not started: %w", broker.ErrUnavailable)
	}
	if !b.nc.IsConnected() {
		if p := b.connErr.Load(); p != nil {
			return *p
		}
		return fmt.Errorf("nats: not connected to %s: %w", b.addr, broker.ErrUnavailable)
	}
	return nil
}

// fail returns the error of a failed request for op on channel: the
// caller's own context error, broker.ErrClosed, or one wrapping
// broker.ErrUnavailable when NATS could not do it.
func (b *Broker) fail(ctx context.Context, op, channel string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("nats: %s %q: %w", op, channel, cerr)
	}
	if b.closed.Load() {
		return fmt.Errorf("nats: %s %q: %w", op, channel, broker.ErrClosed)
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.Code < 500 {
		return fmt.Errorf("nats: %s %q: %w", op, channel, err)
	}
	return fmt.Errorf("nats: %s %q: %w: %w", op, channel, broker.ErrUnavailable, err)
}

// Header names of a message. Values are decimal numbers or plain text.
const (
	hdrEpoch  = "Sb-Epoch"  // the channel's epoch (history only)
	hdrOffset = "Sb-Offset" // the message's offset; "0" marks an epoch's start
	hdrTime   = "Sb-Time"   // publish time, ms since the Unix epoch
	hdrBinary = "Sb-Binary" // "1" for binary data
	hdrSkip   = "Sb-Skip"   // the client not to deliver to
)

// Publish publishes data to the channel: a JetStream publish, acknowledged,
// to the live stream, or with opts.HistorySize > 0 to the channel's
// history, which returns the message's position (see the package
// documentation). It waits for the acknowledgement, at most
// Config.Timeout.
func (b *Broker) Publish(ctx context.Context, channel string, data []byte, opts broker.PublishOptions) (broker.Position, error) {
	if err := b.usable(); err != nil {
		return broker.Position{}, err
	}
	if opts.HistorySize > 0 {
		return b.hist.publish(ctx, channel, data, opts)
	}
	return b.hist.publishLive(ctx, channel, data, opts)
}

// setCommon sets the headers every message carries: time, binary, skip.
func setCommon(h nats.Header, opts broker.PublishOptions) {
	h.Set(hdrTime, strconv.FormatInt(time.Now().UnixMilli(), 10))
	if opts.Binary {
		h.Set(hdrBinary, "1")
	}
	if opts.Skip != "" {
		h.Set(hdrSkip, opts.Skip)
	}
}

// Subscribe subscribes to the channels not yet subscribed and returns once
// NATS has confirmed it (a flush). While NATS is away it fails at once with
// an error wrapping broker.ErrUnavailable.
func (b *Broker) Subscribe(ctx context.Context, channels ...string) error {
	if err := b.usable(); err != nil {
		return err
	}
	if len(channels) == 0 {
		return nil
	}
	b.subsMu.Lock()
	for _, ch := range channels {
		if _, ok := b.subs[ch]; ok {
			continue
		}
		cs := &channelSub{b: b, channel: ch}
		sub, err := b.nc.Subscribe(b.ns.live(ch), cs.receive)
		if err != nil {
			b.subsMu.Unlock()
			return b.fail(ctx, "subscribe", ch, err)
		}
		// Keep up with a busy channel rather than drop: the handler
		// only queues.
		_ = sub.SetPendingLimits(-1, 256<<20)
		cs.sub = sub
		b.subs[ch] = cs
	}
	b.subsMu.Unlock()
	fctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	if err := b.nc.FlushWithContext(fctx); err != nil {
		return b.fail(ctx, "subscribe", channels[0], err)
	}
	return nil
}

// Unsubscribe stops the delivery of the channels' messages. When it
// returns, no message of theirs is being handled or will be.
func (b *Broker) Unsubscribe(ctx context.Context, channels ...string) error {
	if err := b.usable(); err != nil && !errors.Is(err, broker.ErrUnavailable) {
		return err
	}
	b.subsMu.Lock()
	var gone []*channelSub
	for _, ch := range channels {
		if cs, ok := b.subs[ch]; ok {
			delete(b.subs, ch)
			gone = append(gone, cs)
		}
	}
	b.subsMu.Unlock()
	for _, cs := range gone {
		cs.end()
	}
	return nil
}

// resetOrder makes every channel accept its next message as it comes
// (after a reconnection, the hub fills what was missed from history).
func (b *Broker) resetOrder() {
	b.subsMu.Lock()
	defer b.subsMu.Unlock()
	for _, cs := range b.subs {
		cs.reset()
	}
}

// Close unsubscribes, closes the connection and waits for the broker's
// goroutines to end, or for ctx to be done. Later calls fail with
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
	b.subsMu.Lock()
	subs := b.subs
	b.subs = make(map[string]*channelSub)
	b.subsMu.Unlock()
	for _, cs := range subs {
		cs.end()
	}
	b.nc.Close()
	done := make(chan struct{})
	go func() {
		b.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("nats: close: %w", ctx.Err())
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
