package hub

import (
	"log/slog"
	"runtime"
	"sync"
	"time"
)

// BatchWriter writes to many clients' connections with one system call:
// with Config.IOURing, each writer goroutine of the hub's pool owns one
// (made by Config.NewBatchWriter, closed by that goroutine when the pool
// stops), adds the batch of every ready client it took, up to
// batchClients, and submits them together. It is not safe for concurrent
// use, and the hub never calls it from two goroutines.
//
// The transport package's URing (io_uring on Linux) implements it for the
// transport's sockets.
type BatchWriter interface {
	// Add adds a write of frames to t's connection to the batch, and
	// reports whether it did: false when it cannot write to t or the
	// batch is full; the caller then writes with t.TryWriteFrames. The
	// frames must stay unchanged until Submit returns.
	Add(t TryWriter, frames [][]byte) bool
	// Submit writes everything added since the last Submit, without
	// waiting for any socket to be writable, and returns one result per
	// Add, in order, valid until the next Add.
	Submit() []BatchResult
	// Close releases the BatchWriter.
	Close() error
}

// BatchResult is what one write of a BatchWriter's Submit did, as
// TryWriteFrames says it: N bytes written; a short N with a nil Err means
// the connection would block.
type BatchResult struct {
	N   int
	Err error
}

// batchClients is the most ready clients a writer with a BatchWriter takes
// at once. It never waits to gather them: it takes those ready now.
const batchClients = 64

// writerPool is the hub's pool of writer goroutines. Clients with queued
// frames wait in a FIFO of ready clients, each at most once (its writing
// flag); a writer takes one, writes everything it has queued in one
// non-blocking writev, and schedules it again if more arrived meanwhile.
// The FIFO grows to the number of clients once and is then reused, so
// scheduling a client allocates nothing.
//
// With Config.IOURing each writer owns a BatchWriter (runBatched): it
// takes up to batchClients ready clients at once, never waiting to gather
// more, and writes all their batches with one system call; each client's
// write is then accounted for as flushNow's (takeFlush, endFlush), short
// writes and errors included.
//
// A client written recently waits before its next write, so that the
// frames that arrive meanwhile leave in the same system call: it waits in a
// heap ordered by due time (its last write plus its window, rounded up to a
// quarter of the window so that clients come due in groups), and the pool's
// timer moves it to the FIFO when due. A client not written for its window
// is written at once, so waiting costs latency only to connections that
// receive more than one message per window, the ones for which it saves
// system calls.
//
// The window is the same for every client with a fixed write delay
// (Config.WriteDelay > 0). By default (auto) it adapts to each client's
// traffic: after every write the pool estimates the client's rate of
// frames from the frames written and the time since the previous write,
// and sets the window to gather autoFrames frames per write, at most
// AutoWriteDelayMax; a client that would not gather autoMinFrames frames
// in AutoWriteDelayMax (a chat member who gets a message now and then)
// gets no window and is always written at once.
type writerPool struct {
	delay   int64 // nanoseconds; set before start, read-only after
	auto    bool  // the window adapts to each client; set before start
	workers int   // set by start, read-only after
	// newBatch, when set before start, makes each writer's BatchWriter
	// (Config.IOURing); log tells when it fails.
	newBatch func() (BatchWriter, error)
	log      *slog.Logger
	// The fields above are read on every flush; keep them off the cache
	// line that mu and the ring's indexes keep bouncing between cores.
	_       [64]byte
	mu      sync.Mutex
	cond    sync.Cond
	ring    []*Client // guarded by mu; a circular buffer of clients ready now
	head    int       // guarded by mu; index of the oldest entry
	n       int       // guarded by mu; number of entries
	later   dueHeap   // guarded by mu; clients waiting for their due time
	timer   *time.Timer
	timerAt int64 // guarded by mu; when timer fires, 0 when it is not armed
	waiting int   // guarded by mu; writers blocked in pop
	stopped bool  // guarded by mu
	wg      sync.WaitGroup
}

// Adaptive batching's rule (see writerPool). At 200 frames/s a client is
// written every 20 ms with 4 frames; at 80 frames/s or less, at once.
const (
	// NoWriteDelay, as Config.WriteDelay, writes every frame at once.
	NoWriteDelay time.Duration = -1
	// AutoWriteDelayMax is the longest a client waits for more frames
	// when the write delay adapts (Config.WriteDelay zero).
	AutoWriteDelayMax = 25 * time.Millisecond
	// autoFrames is how many frames per write the window aims for.
	autoFrames = 4
	// autoMinFrames is the fewest frames a window of AutoWriteDelayMax
	// must be expected to gather to be worth having.
	autoMinFrames = 2
)

// batching reports whether clients may wait before a write.
func (p *writerPool) batching() bool { return p.auto || p.delay > 0 }

// window returns how long after its last write c waits before the next
// (nanoseconds; 0: it never waits). Its caller owns c's flush.
func (p *writerPool) window(c *Client) int64 {
	if p.auto {
		return int64(c.window) * int64(time.Millisecond)
	}
	return p.delay
}

// autoWindow returns a client's next window in milliseconds, from its
// current one, the frames its last write carried and the nanoseconds since
// the write before (interval). The target is the window that gathers
// autoFrames frames at the observed rate, capped at AutoWriteDelayMax, or
// none when even the cap would gather fewer than autoMinFrames; the window
// moves halfway to it on every write, so that one burst or one pause does
// not swing it; a client without a window gets the target at once.
//
// A write that carried one frame although a window was in force gathered
// nothing by waiting, and the window closes. That is the client that
// answers each message before it gets the next (an echo, a game's moves):
// its frames come at the pace of its own round trips, which a window would
// only stretch (13 ms per message on average under the halfway rule alone,
// TestAutoWindowPingPong).
func autoWindow(cur uint8, frames int, interval int64) uint8 {
	if cur > 0 && frames <= 1 {
		return 0
	}
	var target int64
	if frames > 0 && int64(frames)*int64(AutoWriteDelayMax) >= autoMinFrames*interval {
		target = min(autoFrames*interval/int64(frames), int64(AutoWriteDelayMax))
		target = (target + int64(time.Millisecond) - 1) / int64(time.Millisecond)
	}
	if cur == 0 {
		return uint8(target)
	}
	if target > int64(cur) {
		return uint8((int64(cur) + target + 1) / 2)
	}
	return uint8((int64(cur) + target) / 2)
}

// dueTime returns when a client whose last write was at last (monotime, 0
// for never) and whose window is w may be written again, rounded up to a
// quarter of w (at least a millisecond) so that clients written around the
// same time come due together; 0 when it may be written now.
func dueTime(last, w, now int64) int64 {
	if w <= 0 || last == 0 {
		return 0
	}
	d := last + w
	if d <= now {
		return 0
	}
	q := max(w/4, int64(time.Millisecond))
	return (d + q - 1) / q * q
}

// epoch is the origin of monotonic times in the pool (Client.lastWrite).
var epoch = time.Now()

// monotime returns nanoseconds since epoch on the monotonic clock.
func monotime() int64 { return int64(time.Since(epoch)) }

// start starts one writer per CPU.
func (p *writerPool) start() {
	p.cond.L = &p.mu
	p.timer = time.AfterFunc(time.Hour, p.due)
	p.timer.Stop()
	n := max(runtime.GOMAXPROCS(0), 2)
	p.workers = n
	bws := p.batchWriters(n)
	p.wg.Add(n)
	for i := range n {
		if bws != nil {
			go p.runBatched(bws[i])
		} else {
			go p.run()
		}
	}
}

// batchWriters makes n BatchWriters, one per writer, with newBatch; nil
// when there is no newBatch or it fails (which is logged, once: the
// writers then write each client with its TryWriteFrames).
func (p *writerPool) batchWriters(n int) []BatchWriter {
	if p.newBatch == nil {
		return nil
	}
	bws := make([]BatchWriter, 0, n)
	for range n {
		bw, err := p.newBatch()
		if err != nil {
			for _, bw := range bws {
				_ = bw.Close()
			}
			p.log.Warn("io_uring is unavailable; writing each connection with its own system call", "err", err)
			return nil
		}
		bws = append(bws, bw)
	}
	return bws
}

// wakeBacklog is how many ready clients per running writer justify waking
// another writer.
const wakeBacklog = 64

// push schedules c: now, or at its last write plus its window. c.mu may be
// held: the pool's lock comes after it. The caller owns c's flush (it set
// c.writing, or it is the writer that just flushed c).
func (p *writerPool) push(c *Client) {
	var due int64
	if p.batching() {
		due = dueTime(c.lastWrite, p.window(c), monotime())
	}
	p.mu.Lock()
	if due != 0 {
		p.later.push(dueClient{c: c, due: due})
		if p.timerAt == 0 || due < p.timerAt {
			p.timerAt = due
			p.timer.Reset(time.Duration(due - monotime()))
		}
		p.mu.Unlock()
		return
	}
	p.appendLocked(c)
	wake := p.shouldWakeLocked()
	p.mu.Unlock()
	if wake {
		p.cond.Signal()
	}
}

// appendLocked adds c to the FIFO. p.mu must be held.
func (p *writerPool) appendLocked(c *Client) {
	if p.n == len(p.ring) {
		p.grow()
	}
	p.ring[(p.head+p.n)%len(p.ring)] = c
	p.n++
}

// shouldWakeLocked reports whether a writer should be woken for the FIFO's
// backlog. Waking a writer costs a futex call, as much as a small write:
// wake one only when none is running, or when the running ones have more
// than wakeBacklog clients each waiting. A fan-out to 1,000 clients then
// wakes one or two writers, not 1,000. p.mu must be held.
func (p *writerPool) shouldWakeLocked() bool {
	active := p.workers - p.waiting
	return p.waiting > 0 && (active == 0 || p.n > active*wakeBacklog)
}

// due runs on the pool's timer: it moves the clients whose time has come
// to the FIFO and re-arms the timer for the next.
func (p *writerPool) due() {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return
	}
	now := monotime()
	moved := 0
	for len(p.later) > 0 && p.later[0].due <= now {
		p.appendLocked(p.later.pop().c)
		moved++
	}
	p.timerAt = 0
	if len(p.later) > 0 {
		p.timerAt = p.later[0].due
		p.timer.Reset(time.Duration(p.timerAt - now))
	}
	wake := moved > 0 && p.shouldWakeLocked()
	p.mu.Unlock()
	if wake {
		p.cond.Signal()
	}
}

// grow doubles the ring. p.mu must be held.
func (p *writerPool) grow() {
	ring := make([]*Client, max(2*len(p.ring), 256))
	for i := range p.n {
		ring[i] = p.ring[(p.head+i)%len(p.ring)]
	}
	p.ring, p.head = ring, 0
}

// pop returns the next ready client, waiting for one; ok is false once the
// pool is stopped.
func (p *writerPool) pop() (c *Client, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.n == 0 && !p.stopped {
		p.waiting++
		p.cond.Wait()
		p.waiting--
	}
	if p.stopped {
		return nil, false
	}
	c = p.ring[p.head]
	p.ring[p.head] = nil
	p.head = (p.head + 1) % len(p.ring)
	p.n--
	return c, true
}

// popMany appends to buf the ready clients, at most cap(buf)-len(buf),
// waiting for one; ok is false once the pool is stopped.
func (p *writerPool) popMany(buf []*Client) (_ []*Client, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.n == 0 && !p.stopped {
		p.waiting++
		p.cond.Wait()
		p.waiting--
	}
	if p.stopped {
		return buf, false
	}
	for k := min(p.n, cap(buf)-len(buf)); k > 0; k-- {
		buf = append(buf, p.ring[p.head])
		p.ring[p.head] = nil
		p.head = (p.head + 1) % len(p.ring)
		p.n--
	}
	return buf, true
}

// runBatched is one writer goroutine that owns bw: it takes up to
// batchClients ready clients at once, writes all their batches with one
// Submit, and accounts for each as flushNow does. It closes bw when the
// pool stops; the hub owns it and stop waits for it.
func (p *writerPool) runBatched(bw BatchWriter) {
	defer p.wg.Done()
	defer bw.Close()
	ready := make([]*Client, 0, batchClients)
	added := make([]flush, 0, batchClients)
	for {
		var ok bool
		ready, ok = p.popMany(ready[:0])
		if !ok {
			return
		}
		for _, c := range ready {
			f, ok := c.takeFlush()
			if !ok {
				continue
			}
			if bw.Add(f.tw, f.batch) {
				added = append(added, f)
				continue
			}
			n, err := f.tw.TryWriteFrames(f.batch)
			if c.endFlush(f, n, err) {
				p.push(c)
			}
		}
		clear(ready)
		if len(added) == 0 {
			continue
		}
		res := bw.Submit()
		for i, f := range added {
			if f.c.endFlush(f, res[i].N, res[i].Err) {
				p.push(f.c)
			}
		}
		clear(added)
		added = added[:0]
	}
}

// run is one writer goroutine; the hub owns it and stop waits for it.
func (p *writerPool) run() {
	defer p.wg.Done()
	for {
		c, ok := p.pop()
		if !ok {
			return
		}
		if c.flushNow() {
			p.push(c)
		}
	}
}

// stop ends the writers once they finish their current client. Clients
// still waiting are dropped: by then their connections are closed.
func (p *writerPool) stop() {
	p.mu.Lock()
	p.stopped = true
	p.timer.Stop()
	for p.n > 0 {
		c := p.ring[p.head]
		p.ring[p.head] = nil
		p.head = (p.head + 1) % len(p.ring)
		p.n--
		dropFlush(c)
	}
	for len(p.later) > 0 {
		dropFlush(p.later.pop().c)
	}
	p.mu.Unlock()
	p.cond.Broadcast()
	p.wg.Wait()
}

// dropFlush ends a scheduled flush that will not run.
func dropFlush(c *Client) {
	c.mu.Lock()
	c.finishFlushLocked()
	c.mu.Unlock()
}

// expedite writes c at once if it waits for its due time: a closing client
// does not wait for the write delay. c.mu may be held.
func (p *writerPool) expedite(c *Client) {
	if !p.batching() {
		return
	}
	p.mu.Lock()
	if c.dueIndex < 0 || p.stopped {
		p.mu.Unlock()
		return
	}
	p.later.remove(int(c.dueIndex))
	p.appendLocked(c)
	wake := p.shouldWakeLocked()
	p.mu.Unlock()
	if wake {
		p.cond.Signal()
	}
}

// dueClient is a client waiting in the pool's heap until due (monotime).
type dueClient struct {
	c   *Client
	due int64
}

// dueHeap is a binary min-heap of clients by due time; each client knows
// its index (Client.dueIndex, -1 outside the heap) so that it can be taken
// out early. It is typed, unlike container/heap, so that pushing allocates
// nothing once it has grown. The pool's mu guards it and the indexes.
type dueHeap []dueClient

func (h *dueHeap) push(d dueClient) {
	*h = append(*h, d)
	d.c.dueIndex = int32(len(*h) - 1)
	h.up(len(*h) - 1)
}

func (h *dueHeap) pop() dueClient {
	top := (*h)[0]
	h.remove(0)
	return top
}

// remove takes out the entry at i.
func (h *dueHeap) remove(i int) {
	s := *h
	last := len(s) - 1
	s[i].c.dueIndex = -1
	if i != last {
		s[i] = s[last]
		s[i].c.dueIndex = int32(i)
	}
	s[last] = dueClient{}
	*h = s[:last]
	if i != last {
		h.down(i)
		h.up(i)
	}
}

func (h dueHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].c.dueIndex = int32(i)
	h[j].c.dueIndex = int32(j)
}

func (h dueHeap) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if h[parent].due <= h[i].due {
			return
		}
		h.swap(parent, i)
		i = parent
	}
}

func (h dueHeap) down(i int) {
	for {
		l, smallest := 2*i+1, i
		if l < len(h) && h[l].due < h[smallest].due {
			smallest = l
		}
		if r := l + 1; r < len(h) && h[r].due < h[smallest].due {
			smallest = r
		}
		if smallest == i {
			return
		}
		h.swap(i, smallest)
		i = smallest
	}
}
