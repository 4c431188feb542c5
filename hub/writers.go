package hub

import (
	"runtime"
	"sync"
	"time"
)

// writerPool is the hub's pool of writer goroutines. Clients with queued
// frames wait in a FIFO of ready clients, each at most once (its writing
// flag); a writer takes one, writes everything it has queued in one
// non-blocking writev, and puts it back at the end if more arrived
// meanwhile. The FIFO grows to the number of clients once and is then
// reused, so scheduling a client allocates nothing.
//
// With a delay, an entry is written no sooner than delay after it was
// scheduled, so that more frames gather for one write: fewer system calls
// per delivery at the price of that much latency. Entries share one delay,
// so the FIFO is also in order of due time.
type writerPool struct {
	delay   time.Duration // set before start
	mu      sync.Mutex
	cond    sync.Cond
	ring    []ready // guarded by mu; a circular buffer
	head    int     // guarded by mu; index of the oldest entry
	n       int     // guarded by mu; number of entries
	waiting int     // guarded by mu; writers blocked in pop
	workers int     // set by start
	stopped bool    // guarded by mu
	wg      sync.WaitGroup
}

// ready is a scheduled client and when it is due (zero without delay).
type ready struct {
	c   *Client
	due time.Time
}

// start starts one writer per CPU.
func (p *writerPool) start() {
	p.cond.L = &p.mu
	n := max(runtime.GOMAXPROCS(0), 2)
	p.workers = n
	p.wg.Add(n)
	for range n {
		go p.run()
	}
}

// wakeBacklog is how many ready clients per running writer justify waking
// another writer.
const wakeBacklog = 64

// push schedules c. c.mu may be held: the pool's lock comes after it.
func (p *writerPool) push(c *Client) {
	p.mu.Lock()
	if p.n == len(p.ring) {
		p.grow()
	}
	r := ready{c: c}
	if p.delay > 0 {
		r.due = time.Now().Add(p.delay)
	}
	p.ring[(p.head+p.n)%len(p.ring)] = r
	p.n++
	// Waking a writer costs a futex call, as much as a small write: wake
	// one only when none is running, or when the running ones have more
	// than wakeBacklog clients each waiting. A fan-out to 1,000 clients
	// then wakes one or two writers, not 1,000.
	active := p.workers - p.waiting
	wake := p.waiting > 0 && (active == 0 || p.n > active*wakeBacklog)
	p.mu.Unlock()
	if wake {
		p.cond.Signal()
	}
}

// grow doubles the ring. p.mu must be held.
func (p *writerPool) grow() {
	ring := make([]ready, max(2*len(p.ring), 256))
	for i := range p.n {
		ring[i] = p.ring[(p.head+i)%len(p.ring)]
	}
	p.ring, p.head = ring, 0
}

// pop returns the next ready client, waiting for one; ok is false once the
// pool is stopped.
func (p *writerPool) pop() (r ready, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.n == 0 && !p.stopped {
		p.waiting++
		p.cond.Wait()
		p.waiting--
	}
	if p.stopped {
		return ready{}, false
	}
	r = p.ring[p.head]
	p.ring[p.head] = ready{}
	p.head = (p.head + 1) % len(p.ring)
	p.n--
	return r, true
}

// run is one writer goroutine; the hub owns it and stop waits for it.
func (p *writerPool) run() {
	defer p.wg.Done()
	for {
		r, ok := p.pop()
		if !ok {
			return
		}
		if !r.due.IsZero() {
			if d := time.Until(r.due); d > 0 {
				time.Sleep(d)
			}
		}
		if r.c.flushNow() {
			p.push(r.c)
		}
	}
}

// stop ends the writers once they finish their current client. Clients
// still waiting are dropped: by then their connections are closed.
func (p *writerPool) stop() {
	p.mu.Lock()
	p.stopped = true
	for p.n > 0 {
		c := p.ring[p.head].c
		p.ring[p.head] = ready{}
		p.head = (p.head + 1) % len(p.ring)
		p.n--
		c.mu.Lock()
		c.finishFlushLocked()
		c.mu.Unlock()
	}
	p.mu.Unlock()
	p.cond.Broadcast()
	p.wg.Wait()
}
