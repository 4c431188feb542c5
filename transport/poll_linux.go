//go:build linux

package transport

import (
	"context"
	"errors"
	"os"
	"sync"
	"syscall"
	"time"
)

// poller holds the parked sessions of one Server in an epoll set, so that
// an idle connection costs no goroutine: one goroutine waits for all of
// them and starts a short-lived reader for each that becomes readable. It
// also closes parked sessions that stayed silent longer than the read
// timeout, as a read deadline would.
//
// The waiting goroutine is started by the first park and ends, closing the
// epoll set, once no session is registered; arm and the loop agree on that
// under mu. Sessions are keyed by an id, never by their file descriptor, so
// a late event for a closed socket whose number was reused finds nothing.
type poller struct {
	timeout time.Duration // how long a parked session may stay silent
	wait    int           // milliseconds per wait for events; bounds the sweep's lateness

	loops sync.WaitGroup // the loop goroutines (at most one at a time)

	mu    sync.Mutex
	epfd  int                 // guarded by mu; -1 while no loop runs
	conns map[uint64]*session // guarded by mu; every session that parked and is not finished
	next  uint64              // guarded by mu; the last id given
}

func newPoller(timeout time.Duration) *poller {
	wait := min(250*time.Millisecond, timeout/4)
	return &poller{
		timeout: timeout,
		wait:    max(int(wait/time.Millisecond), 1),
		epfd:    -1,
		conns:   make(map[uint64]*session),
	}
}

// arm waits for the next readable event on ss's socket, registering it on
// its first park. The caller owns ss and has marked it parked.
func (p *poller) arm(ss *session) error {
	p.mu.Lock()
	if p.epfd < 0 {
		fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err == nil {
			// Non-blocking, so that os.NewFile hands it to the
			// runtime's poller.
			err = syscall.SetNonblock(fd, true)
			if err != nil {
				_ = syscall.Close(fd)
			}
		}
		if err != nil {
			p.mu.Unlock()
			return err
		}
		p.epfd = fd
		p.loops.Add(1)
		go p.loop(fd)
	}
	op := syscall.EPOLL_CTL_MOD
	if ss.id == 0 {
		p.next++
		ss.id = p.next
		p.conns[ss.id] = ss
		op = syscall.EPOLL_CTL_ADD
	}
	// The loop cannot close epfd while ss is registered.
	epfd := p.epfd
	ev := syscall.EpollEvent{
		Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT,
		Fd:     int32(uint32(ss.id)),
		Pad:    int32(uint32(ss.id >> 32)),
	}
	p.mu.Unlock()
	var cerr error
	// Control keeps the descriptor open while it runs; on a closed
	// connection it fails without calling the function.
	if err := ss.rc.Control(func(fd uintptr) {
		cerr = syscall.EpollCtl(epfd, op, int(fd), &ev)
	}); err != nil {
		return err
	}
	return cerr
}

// waitLoops waits for the loop to end (it ends once no session is parked), or
// for ctx to be done.
func (p *poller) waitLoops(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		p.loops.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// remove forgets a finished session. Closing its socket has taken it out of
// the epoll set.
func (p *poller) remove(ss *session) {
	p.mu.Lock()
	if ss.id != 0 {
		delete(p.conns, ss.id)
	}
	p.mu.Unlock()
}

// loop waits for events on epfd until no session is registered.
//
// It waits through the runtime's own poller (the epoll set's descriptor is
// itself readable when it has events), never in a blocking epoll_wait: a
// goroutine blocked in a system call ties up an OS thread, and its P until
// the runtime's monitor notices, where the runtime's poller needs neither.
func (p *poller) loop(epfd int) {
	defer p.loops.Done()
	f := os.NewFile(uintptr(epfd), "switchboard-epoll")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		// Not pollable: never expected on Linux. Drop every session's
		// registration by ending them; the poller restarts on demand.
		p.abandon(epfd)
		return
	}
	events := make([]syscall.EpollEvent, 256)
	var n int
	// collect takes the ready events without blocking; false asks the
	// runtime to wait until the epoll set is readable and call it again.
	collect := func(fd uintptr) bool {
		for {
			var err error
			n, err = syscall.EpollWait(int(fd), events, 0)
			if err == syscall.EINTR {
				continue
			}
			return n > 0 || err != nil
		}
	}
	ready := make([]*session, 0, len(events))
	interval := time.Duration(p.wait) * time.Millisecond
	lastSweep := time.Now()
	for {
		n = 0
		_ = f.SetReadDeadline(time.Now().Add(interval))
		if err := rc.Read(collect); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			p.abandon(epfd)
			return
		}
		p.mu.Lock()
		for i := range n {
			id := uint64(uint32(events[i].Fd)) | uint64(uint32(events[i].Pad))<<32
			if ss := p.conns[id]; ss != nil {
				ready = append(ready, ss)
			}
		}
		p.mu.Unlock()
		for i, ss := range ready {
			if ss.state.CompareAndSwap(stateParked, stateReading) {
				go ss.resume()
			}
			ready[i] = nil
		}
		ready = ready[:0]
		if now := time.Now(); now.Sub(lastSweep) >= interval {
			lastSweep = now
			p.sweep(now)
		}
		p.mu.Lock()
		if len(p.conns) == 0 {
			p.epfd = -1
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
	}
}

// abandon is the way out when the epoll set fails: every parked session is
// closed (its client reconnects elsewhere or here), and the next park
// starts a new set.
func (p *poller) abandon(epfd int) {
	p.mu.Lock()
	if p.epfd == epfd {
		p.epfd = -1
	}
	p.mu.Unlock()
	p.closeIf(func(*session) bool { return true })
}

// sweep closes the parked sessions not heard from within the timeout.
func (p *poller) sweep(now time.Time) {
	deadline := now.Add(-p.timeout).UnixNano()
	p.closeIf(func(ss *session) bool {
		return ss.state.Load() == stateParked && ss.heard.Load() < deadline
	})
}

// closeIf closes the socket of every registered session that match picks.
// It chooses under mu and closes outside it: closing finishes a parked
// session, which takes mu to unregister it.
func (p *poller) closeIf(match func(*session) bool) {
	var picked []*session
	p.mu.Lock()
	for _, ss := range p.conns {
		if match(ss) {
			picked = append(picked, ss)
		}
	}
	p.mu.Unlock()
	for _, ss := range picked {
		_ = ss.t.Close()
	}
}

// parked counts the sessions parked now.
func (p *poller) parked() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, ss := range p.conns {
		if ss.state.Load() == stateParked {
			n++
		}
	}
	return n
}
