package hub

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-rt/switchboard/protocol"
	"github.com/switchboard-rt/switchboard/wsframe"
)

// TryWriter is implemented by transports that can write without blocking
// (a TCP socket through writev). Clients on such transports are flushed by
// the hub's small pool of writer goroutines, so an idle or lightly loaded
// connection has no goroutine of its own.
type TryWriter interface {
	// TryWriteFrames writes as much of frames as the connection takes
	// at once, without waiting, and returns how many bytes it wrote. A
	// short count with a nil error means the connection would block.
	// Like WriteFrames, it may modify the slice but not the frames.
	TryWriteFrames(frames [][]byte) (int, error)
}

// Transport is a client's connection as the hub sees it.
type Transport interface {
	// WriteFrames writes the encoded frames, in order, in as few system
	// calls as it can, and returns once they are written or it failed. It
	// may modify the slice but not the frames' bytes, which other clients
	// share. The hub calls it from one goroutine at a time.
	WriteFrames(frames [][]byte) error
	// Close closes the connection at once. It is safe to call concurrently
	// and more than once.
	Close() error
}

// Client is one connection to the hub. The transport creates it with
// NewClient, attaches itself with Attach, hands every message the client
// sends to HandleText or HandleBinary, and calls Finish when reading ends.
//
// The verbs a dialect uses (Subscribe, Unsubscribe, Publish, History,
// Presence, Allow) must be called from the client's reader, one at a time:
// they own the client's subscriptions. Send, Close and the accessors are
// safe from any goroutine.
type Client struct {
	hub     *Hub
	id      string
	dialect Dialect
	di      uint8 // dialect's index in the hub (frameCache)
	stripe  uint8 // the client registry's stripe that holds it
	// deadlineWhy is the close reason at the deadline (a deadline*
	// constant), guarded by mu.
	deadlineWhy uint8
	// mu guards writing and closed (with the send queue below).
	writing bool // a flush is scheduled or running (pool or goroutine)
	closed  bool // no more frames are accepted
	// try is set by Attach when the transport is a TryWriter: it is
	// flushed by the hub's writer pool. Asserting c.t where it is needed
	// keeps the client a word smaller than holding the interface twice.
	try bool
	// window is how long, in milliseconds, the writer pool lets the
	// client's frames gather after a write when the write delay adapts
	// (see writerPool); owned by whoever owns the flush.
	window uint8
	// dueIndex is the client's index in the pool's heap of delayed
	// clients, -1 outside; guarded by the pool's mu.
	dueIndex int32
	// compression is the client's Compression, set by its transport and
	// read by every fan-out. (It shares dueIndex's word: the client stays
	// in the 256-byte size class.)
	compression atomic.Uint32
	// ident is who the client is: nil while anonymous. The reader replaces
	// it (auth, refresh); any goroutine may load it. An Identity, once
	// stored, is never changed.
	ident atomic.Pointer[Identity]
	// deadline is when the client is closed with 4001 (unix nanoseconds;
	// 0: never): its token's expiry, or the end of the time it has to
	// authenticate.
	deadline atomic.Int64

	// Data is the dialect's state of this connection (a raw client's
	// channel, say). The dialect's handlers own it.
	Data any

	// mu guards the send queue and the fields below it.
	mu     sync.Mutex
	t      Transport // nil until Attach
	queue  [][]byte  // frames waiting for the writer
	spare  [][]byte  // the writer's emptied batch, kept for reuse
	queued int       // bytes queued or being written
	// lastWrite is when the pool last wrote to the client (monotime), for
	// the write delay. Owned by whoever owns the flush (see writing).
	lastWrite int64
	// queuedAt is when the oldest frame in queue was queued (monotime),
	// for the delivery latency histogram.
	queuedAt int64
	killer   *time.Timer
	writer   sync.WaitGroup // counts the flush in progress, if any
	// subs holds the client's channels; the reader changes it, and
	// revocation removes from it, both under mu.
	subs  map[string]*Member
	alias string // another name of the client (Message.Skip); set before it subscribes
	// tokens and refilled are the rate limiter's bucket (Config.ClientRate),
	// refused and refusedAt its count of refused frames (times in unix
	// nanoseconds); all owned by the reader goroutine.
	tokens    float32
	refused   float32
	refilled  int64
	refusedAt int64
}

// NewClient registers a new client of dialect d, who is id. It fails with
// ErrClosing during Shutdown.
func (h *Hub) NewClient(d Dialect, id Identity) (*Client, error) {
	di, ok := h.dialects.index(d)
	if !ok {
		return nil, fmt.Errorf("hub: more than %d dialects", maxDialects)
	}
	cid, seq := h.newClientID()
	c := &Client{hub: h, id: cid, stripe: uint8(seq % numClients), dialect: d, di: di, dueIndex: -1}
	c.setIdentity(id)
	if id.User == "" && h.cfg.AuthTimeout > 0 {
		c.setDeadline(time.Now().Add(h.cfg.AuthTimeout), deadlineNoToken)
	}
	if err := h.register(c); err != nil {
		return nil, err
	}
	return c, nil
}

// ID returns the client's id, unique across the cluster.
func (c *Client) ID() string { return c.id }

// Dialect returns the client's dialect.
func (c *Client) Dialect() Dialect { return c.dialect }

// Hub returns the client's hub.
func (c *Client) Hub() *Hub { return c.hub }

// Identity returns who the client is. Only the reader may call it (the
// identity changes with auth and refresh requests).
func (c *Client) Identity() *Identity {
	if id := c.ident.Load(); id != nil {
		return id
	}
	return &anonymous
}

// anonymous is the identity of a client without one. Nobody changes it.
var anonymous Identity

// User returns the client's user; empty when anonymous. It is safe from
// any goroutine.
func (c *Client) User() string { return c.Identity().User }

// Attach gives the client its transport and starts writing whatever was
// queued before it (the welcome frame, or messages of a raw connection's
// channel).
func (c *Client) Attach(t Transport) {
	c.mu.Lock()
	c.t = t
	_, c.try = t.(TryWriter)
	if len(c.queue) > 0 && !c.writing {
		c.startFlushLocked()
	}
	c.mu.Unlock()
}

// enqueue appends frame to the send queue and makes sure a writer runs. It
// returns false when the client is closed or its queue overflowed (the
// client is then closed with 4008). It never blocks on the network.
func (c *Client) enqueue(frame []byte) bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	if c.queued+len(frame) > c.hub.cfg.SendQueueBytes {
		c.hub.stats.slowConsumers.Add(1)
		c.closeLocked(wsframe.Close(protocol.CloseSlowConsumer, "slow consumer"), true)
		c.mu.Unlock()
		return false
	}
	c.pushLocked(frame)
	c.mu.Unlock()
	return true
}

// reply queues frame, a reply to the client's own request, and has it
// written at once even when the adaptive write delay holds the client
// (with a fixed delay it waits like any frame): a client that waits for
// each reply before its next request would otherwise see its replies come
// at the pace of the window, which its own pace widens.
func (c *Client) reply(frame []byte) bool {
	if !c.enqueue(frame) {
		return false
	}
	if c.try && c.hub.writers.auto {
		c.hub.writers.expedite(c)
	}
	return true
}

// pushLocked queues frame and schedules a flush if none is pending.
// c.mu must be held.
func (c *Client) pushLocked(frame []byte) {
	if len(c.queue) == 0 {
		c.queuedAt = monotime()
	}
	c.queue = append(c.queue, frame)
	c.queued += len(frame)
	if c.t != nil && !c.writing {
		c.startFlushLocked()
	}
}

// startFlushLocked schedules a flush: on the hub's writer pool when the
// transport can write without blocking, else on a goroutine of the
// client's own. c.mu must be held.
func (c *Client) startFlushLocked() {
	c.writing = true
	c.writer.Add(1)
	if c.try {
		c.hub.writers.push(c)
		return
	}
	go c.writeLoop(nil, 0)
}

// flushNow is run by a writer of the hub's pool: it writes everything
// queued without blocking. It returns true when more frames were queued
// meanwhile (the client goes back to the end of the pool's queue). When the
// socket cannot take everything, the rest is handed to a goroutine of the
// client's own that may block (a slow reader must not hold a pool writer).
func (c *Client) flushNow() (again bool) {
	f, ok := c.takeFlush()
	if !ok {
		return false
	}
	n, err := f.tw.TryWriteFrames(f.batch)
	return c.endFlush(f, n, err)
}

// flush is one pool write to a client in progress: what takeFlush took,
// for endFlush.
type flush struct {
	c     *Client
	tw    TryWriter
	batch [][]byte
	at    int64 // when the batch's oldest frame was queued (monotime)
	total int   // the batch's bytes
}

// takeFlush is the first half of a pool write: it takes everything queued
// as one batch. It returns false, and ends the flush, when there is
// nothing to write (or no transport that can write without blocking). The
// caller owns the client's flush (see writing).
func (c *Client) takeFlush() (f flush, ok bool) {
	c.mu.Lock()
	tw, _ := c.t.(TryWriter)
	if len(c.queue) == 0 || tw == nil {
		c.finishFlushLocked()
		c.mu.Unlock()
		return flush{}, false
	}
	f = flush{c: c, tw: tw, at: c.queuedAt, batch: c.takeLocked()}
	c.mu.Unlock()
	for _, b := range f.batch {
		f.total += len(b)
	}
	return f, true
}

// endFlush is the second half of a pool write, after n bytes of f's batch
// were written without blocking (err as TryWriteFrames returns it): it
// accounts for the write (window, counters, latency, queued bytes), hands
// an unwritten rest to a goroutine of the client's own, and marks a broken
// connection. It returns true when more frames were queued meanwhile: the
// caller pushes the client to the pool again.
func (c *Client) endFlush(f flush, n int, err error) (again bool) {
	batch, frames := f.batch, len(f.batch)
	if p := &c.hub.writers; p.batching() {
		now := monotime()
		if p.auto && c.lastWrite != 0 {
			c.window = autoWindow(c.window, frames, now-c.lastWrite)
		}
		c.lastWrite = now
	}
	c.hub.stats.writes.Add(1)
	if err == nil && n < f.total {
		rest := consume(batch, n)
		c.mu.Lock()
		c.queued -= n
		c.mu.Unlock()
		go c.writeLoop(rest, f.at)
		return false
	}
	if err == nil {
		c.hub.latency.observe(monotime() - f.at)
	}
	c.hub.stats.framesWritten.Add(uint64(frames))
	clear(batch)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.queued -= f.total
	c.keepSpareLocked(batch)
	if err != nil {
		c.brokenLocked()
	}
	if len(c.queue) == 0 {
		c.finishFlushLocked()
		return false
	}
	return true
}

// takeLocked takes the queued frames as one batch. c.mu must be held.
func (c *Client) takeLocked() [][]byte {
	batch := c.queue
	c.queue, c.spare = c.spare[:0], nil
	return batch
}

// keepSpareLocked keeps a written batch's array for the next one, unless
// it grew large. c.mu must be held.
func (c *Client) keepSpareLocked(batch [][]byte) {
	if cap(batch) <= 64 {
		c.spare = batch[:0]
	}
}

// brokenLocked drops everything: the connection cannot be written to. The
// reader sees the broken connection too and finishes the client.
// c.mu must be held.
func (c *Client) brokenLocked() {
	c.closed = true
	clear(c.queue)
	c.queue = nil
	c.queued = 0
}

// finishFlushLocked ends the flush in progress. c.mu must be held.
func (c *Client) finishFlushLocked() {
	c.writing = false
	if cap(c.queue) > 64 {
		c.queue = nil
	}
	c.writer.Done()
}

// consume drops the first n bytes of batch, which were written. It changes
// batch's slice headers only, never the shared frame bytes.
func consume(batch [][]byte, n int) [][]byte {
	for len(batch) > 0 && n >= len(batch[0]) {
		n -= len(batch[0])
		batch[0] = nil
		batch = batch[1:]
	}
	if len(batch) > 0 {
		batch[0] = batch[0][n:]
	}
	return batch
}

// writeLoop writes with blocking writes: first rest (what a pool writer
// could not write), then everything queued, batch by batch, until the queue
// is empty. It runs on a goroutine of the client's own; the client's
// writer WaitGroup counts it and Finish waits for it.
func (c *Client) writeLoop(rest [][]byte, at int64) {
	t := c.t
	if rest != nil {
		c.writeBlocking(t, rest, at)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.queue) > 0 {
		at := c.queuedAt
		batch := c.takeLocked()
		c.mu.Unlock()
		c.writeBlocking(t, batch, at)
		c.mu.Lock()
		c.keepSpareLocked(batch)
	}
	c.finishFlushLocked()
}

// writeBlocking writes batch, whose oldest frame was queued at at, with
// the transport's blocking write and accounts for it: counters, latency,
// queued bytes, a broken connection. It clears batch's entries so the
// frames can be collected.
func (c *Client) writeBlocking(t Transport, batch [][]byte, at int64) {
	n := 0
	for _, f := range batch {
		n += len(f)
	}
	frames := len(batch)
	err := t.WriteFrames(batch)
	clear(batch)
	if err == nil {
		c.hub.latency.observe(monotime() - at)
	}
	c.hub.stats.writes.Add(1)
	c.hub.stats.framesWritten.Add(uint64(frames))
	c.mu.Lock()
	c.queued -= n
	if err != nil {
		c.brokenLocked()
	}
	c.mu.Unlock()
}

// Close closes the client with a close frame after whatever is already
// queued. The socket is closed when the client answers, or after
// Config.CloseGrace. Close is safe to call from any goroutine, more than
// once; only the first call has an effect.
func (c *Client) Close(code int, reason string) {
	c.mu.Lock()
	c.closeLocked(wsframe.Close(code, reason), false)
	c.mu.Unlock()
}

// closeLocked marks the client closed, queues the close frame (after the
// queued frames, or alone when drop is set), and arms the timer that closes
// the socket after the grace period. c.mu must be held.
func (c *Client) closeLocked(frame []byte, drop bool) {
	if c.closed {
		return
	}
	if drop {
		for i := range c.queue {
			c.queued -= len(c.queue[i])
		}
		clear(c.queue)
		c.queue = c.queue[:0]
	}
	c.pushLocked(frame)
	c.closed = true
	c.armKillLocked()
	if c.try {
		c.hub.writers.expedite(c)
	}
}

// armKillLocked arms the timer that closes the socket after CloseGrace.
// c.mu must be held.
func (c *Client) armKillLocked() {
	if c.killer == nil {
		c.killer = time.AfterFunc(c.hub.cfg.CloseGrace, c.kill)
	}
}

// kill closes the client's socket at once.
func (c *Client) kill() {
	c.mu.Lock()
	t := c.t
	c.closed = true
	c.mu.Unlock()
	if t != nil {
		_ = t.Close()
	}
}

// Finish is called by the transport's reader when the connection ends. It
// leaves every channel, lets the writer flush what is queued (at most
// CloseGrace), closes the socket and unregisters the client.
func (c *Client) Finish() {
	c.mu.Lock()
	subs := c.subs
	c.subs = nil
	c.mu.Unlock()
	for name := range subs {
		c.hub.unsubscribe(c, name, nil)
	}
	c.mu.Lock()
	c.closed = true
	c.armKillLocked()
	t := c.t
	c.mu.Unlock()
	c.hub.writers.expedite(c)
	c.writer.Wait()
	if t != nil {
		_ = t.Close()
	}
	c.mu.Lock()
	c.killer.Stop()
	c.queue, c.spare = nil, nil
	c.mu.Unlock()
	c.hub.unregister(c)
	if n, ok := c.dialect.(ClosedNotifier); ok {
		n.ClientClosed(c)
	}
}

// Allow takes one token from the client's bucket for a frame it sent:
// ClientRate tokens a second, at most ClientBurst saved. It always allows
// without a rate; a refusal is counted. Dialects call it for every frame.
func (c *Client) Allow() bool {
	rate := c.hub.cfg.ClientRate
	if rate <= 0 {
		return true
	}
	now := time.Now().UnixNano()
	if c.refilled == 0 {
		c.tokens = float32(c.hub.cfg.ClientBurst)
	} else {
		c.tokens = float32(min(float64(c.hub.cfg.ClientBurst), float64(c.tokens)+float64(now-c.refilled)/1e9*rate))
	}
	c.refilled = now
	if c.tokens < 1 {
		c.hub.stats.rateLimited.Add(1)
		return false
	}
	c.tokens--
	return true
}

// Flooding is called for a frame Allow refused; it reports whether the
// client goes on sending far past its rate, so that answering it is no
// longer worth it and it should be closed (4029): ClientRate refused
// frames are forgiven each second, and a client with more than
// ClientBurst unforgiven ones is flooding. A client that slows down when
// told it is over its rate is never cut; one that sends more than twice
// its rate for a while is.
func (c *Client) Flooding() bool {
	now := time.Now().UnixNano()
	if c.refusedAt != 0 {
		c.refused = float32(max(0, float64(c.refused)-float64(now-c.refusedAt)/1e9*c.hub.cfg.ClientRate))
	}
	c.refusedAt = now
	c.refused++
	return float64(c.refused) > float64(c.hub.cfg.ClientBurst)
}

// RequestContext returns the context for the broker calls made for one
// request: Config.RequestTimeout.
func (c *Client) RequestContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), c.hub.cfg.RequestTimeout)
}
