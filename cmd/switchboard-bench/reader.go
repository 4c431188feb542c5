//go:build linux

package main

import (
	"bytes"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// conn is one benchmark WebSocket connection after its handshake: a
// non-blocking socket owned by one reader, which reads and parses it.
type conn struct {
	fd     int
	r      *reader
	idx    int  // in r.conns
	sub    bool // its deliveries count (false: a publisher draining its echo)
	closed bool // set by the reader; guarded by r.mu

	// Owned by the reader; guarded by r.mu.
	pending []byte   // the start of an incomplete frame
	last    uint64   // highest seq received
	seen    []uint64 // bitmap of received seqs, for duplicates
	frag    bool     // inside a fragmented message (ignored)

	id int // the last request id used; owned by the one goroutine publishing on c

	// The soak scenario's client this connection belongs to, and what its
	// subscribe reply said; set before the reader gets c, then read-only.
	owner     *soakClient
	target    int    // index of the instance c is connected to
	recoverTo uint64 // offsets up to this (in recoverEp) were recovered, not live
	recoverEp string

	wmu  sync.Mutex // serializes writes (publisher and pong replies)
	mask uint64     // mask key generator state; guarded by wmu
}

// recvStats are the counts of one measurement step on one reader.
type recvStats struct {
	firstSeq  uint64 // the step's first sequence number
	delivered uint64
	dup       uint64
	ooo       uint64
	hist      Histogram
}

// reader owns an epoll set of connections and parses what they receive.
type reader struct {
	epfd    int
	dialect string
	order   bool // count out-of-order deliveries (one publisher)
	stop    *atomic.Bool

	mu          sync.Mutex // held while processing a batch of events
	conns       []*conn
	steps       []*recvStats // by firstSeq ascending
	disconnects uint64
	closeCodes  map[int]uint64
	errors      uint64 // refused requests ("ok":false, centrifugo errors)
	unparsed    uint64 // text frames that carried no payload
	free        []int  // slots of r.conns whose connection closed, for add to reuse
	buf         []byte
	scratch     []byte

	// onMessage, when set, handles every text message in place of the
	// dialect's parsing; onClose, when set, hears of every connection the
	// reader closes, with the server's close code (0: the connection just
	// ended; closedByClient: drop). Both are called with r.mu held and are
	// set before run starts. The soak scenario uses them.
	onMessage func(c *conn, p []byte, now int64)
	onClose   func(c *conn, code int)
}

// closedByClient is the close code recorded for a connection the load tool
// itself closed (drop).
const closedByClient = -1

func newReader(dialect string, order bool, bufSize int, stop *atomic.Bool) (*reader, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	r := &reader{epfd: fd, dialect: dialect, order: order, stop: stop,
		buf: make([]byte, bufSize), closeCodes: map[int]uint64{}}
	r.steps = []*recvStats{{firstSeq: 0}}
	return r, nil
}

// add registers c with the reader. Bytes already read past c's setup
// (pending) are processed on its first event, or now if present.
func (r *reader) add(c *conn) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c.r = r
	if n := len(r.free); n > 0 {
		// Reuse a closed connection's slot: the soak scenario replaces
		// connections all the time. No event of the old one can still
		// come: it left the epoll set before it closed, and events of one
		// wait are handled with r.mu held, as add is.
		c.idx, r.free = r.free[n-1], r.free[:n-1]
		r.conns[c.idx] = c
	} else {
		c.idx = len(r.conns)
		r.conns = append(r.conns, c)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(c.fd), Pad: int32(c.idx)}
	if err := unix.EpollCtl(r.epfd, unix.EPOLL_CTL_ADD, c.fd, &ev); err != nil {
		return err
	}
	if len(c.pending) > 0 {
		n := copy(r.buf, c.pending)
		c.pending = c.pending[:0]
		r.process(c, r.buf[:n], time.Now().UnixNano())
	}
	return nil
}

// newStep starts a measurement step for seqs from firstSeq on.
func (r *reader) newStep(firstSeq uint64) {
	r.mu.Lock()
	r.steps = append(r.steps, &recvStats{firstSeq: firstSeq})
	r.mu.Unlock()
}

// run reads until stop is set. Each wait is bounded (100 ms) so it notices
// stop in time.
func (r *reader) run() {
	events := make([]unix.EpollEvent, 512)
	for !r.stop.Load() {
		n, err := unix.EpollWait(r.epfd, events, 100)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		if n == 0 {
			continue
		}
		r.mu.Lock()
		for i := 0; i < n; i++ {
			c := r.conns[events[i].Pad]
			if !c.closed {
				r.readConn(c)
			}
		}
		r.mu.Unlock()
	}
}

// readConn reads once from c (level-triggered epoll calls again if more is
// waiting) and processes every complete frame. r.mu is held.
func (r *reader) readConn(c *conn) {
	p := copy(r.buf, c.pending)
	n, err := unix.Read(c.fd, r.buf[p:])
	if err != nil {
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			return
		}
		r.closeConn(c, 0)
		return
	}
	if n == 0 {
		r.closeConn(c, 0)
		return
	}
	c.pending = c.pending[:0]
	r.process(c, r.buf[:p+n], time.Now().UnixNano())
}

// process parses the frames in b and keeps an incomplete tail in
// c.pending. r.mu is held.
func (r *reader) process(c *conn, b []byte, now int64) {
	for len(b) > 0 && !c.closed {
		f, n, err := parseFrame(b)
		if err != nil {
			r.closeConn(c, 0)
			return
		}
		if n == 0 {
			if len(b) > len(r.buf)/2 {
				// A frame larger than the read buffer can hold: give up on
				// the connection rather than grow without bound.
				r.closeConn(c, 1009)
				return
			}
			c.pending = append(c.pending, b...)
			return
		}
		b = b[n:]
		switch f.op {
		case opText, opBin:
			c.frag = !f.fin
			r.message(c, f.payload, now)
		case opCont:
			c.frag = !f.fin
		case opPing:
			r.scratch = appendFrame(r.scratch[:0], opPong, f.payload, c.nextMask())
			_ = c.write(r.scratch)
		case opClose:
			code := 1005
			if len(f.payload) >= 2 {
				code = int(f.payload[0])<<8 | int(f.payload[1])
			}
			r.closeConn(c, code)
			return
		}
	}
}

// message handles one text message.
func (r *reader) message(c *conn, p []byte, now int64) {
	if r.onMessage != nil {
		r.onMessage(c, p, now)
		return
	}
	switch r.dialect {
	case "raw":
		if seq, t, ok := parseRawPayload(p); ok {
			r.deliver(c, seq, t, now)
		} else if c.sub {
			r.unparsed++
		}
	case "centrifugo":
		// Several replies may share one frame, one JSON object a line.
		for len(p) > 0 {
			line := p
			if i := bytes.IndexByte(p, '\n'); i >= 0 {
				line, p = p[:i], p[i+1:]
			} else {
				p = nil
			}
			switch {
			case len(line) == 2 && line[0] == '{' && line[1] == '}':
				// Server ping: answer with an empty command.
				r.scratch = appendFrame(r.scratch[:0], opText, line, c.nextMask())
				_ = c.write(r.scratch)
			case bytes.Contains(line, []byte(`"error":`)):
				r.errors++
			default:
				if seq, t, ok := parseJSONPayload(line); ok {
					r.deliver(c, seq, t, now)
				}
			}
		}
	case "pusher":
		// An event's data is a JSON string: the payload arrives escaped.
		switch {
		case bytes.Contains(p, []byte(`"pusher:ping"`)):
			r.scratch = appendFrame(r.scratch[:0], opText, []byte(`{"event":"pusher:pong","data":{}}`), c.nextMask())
			_ = c.write(r.scratch)
		case bytes.Contains(p, []byte(`"pusher:error"`)):
			r.errors++
		default:
			if seq, t, ok := parseEscapedJSONPayload(p); ok {
				r.deliver(c, seq, t, now)
			}
		}
	default: // native
		if seq, t, ok := parseJSONPayload(p); ok {
			r.deliver(c, seq, t, now)
		} else if bytes.Contains(p, []byte(`"ok":false`)) {
			r.errors++
		}
	}
}

// deliver counts one delivery of seq sent at t.
func (r *reader) deliver(c *conn, seq uint64, t, now int64) {
	if !c.sub {
		return
	}
	st := r.steps[len(r.steps)-1]
	for i := len(r.steps) - 1; i > 0 && seq < st.firstSeq; i-- {
		st = r.steps[i-1]
	}
	if w := seq / 64; w < uint64(len(c.seen)) {
		bit := uint64(1) << (seq % 64)
		if c.seen[w]&bit != 0 {
			st.dup++
			return
		}
		c.seen[w] |= bit
	}
	st.delivered++
	if r.order && seq < c.last {
		st.ooo++
	}
	if seq > c.last {
		c.last = seq
	}
	st.hist.Record(now - t)
}

// closeConn removes c from the epoll set and closes its socket. code is the
// server's close code (0 when the connection just ended).
func (r *reader) closeConn(c *conn, code int) {
	if c.closed {
		return
	}
	c.closed = true
	_ = unix.EpollCtl(r.epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
	c.wmu.Lock()
	_ = unix.Close(c.fd)
	c.fd = -1
	c.wmu.Unlock()
	r.disconnects++
	r.closeCodes[code]++
	r.free = append(r.free, c.idx)
	if r.onClose != nil {
		r.onClose(c, code)
	}
}

// drop closes c from the client side: a close frame (1000), then the
// socket, as a client that goes away does. It does nothing if c is closed.
func (r *reader) drop(c *conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c.closed {
		return
	}
	r.scratch = appendFrame(r.scratch[:0], opClose, []byte{0x03, 0xE8}, c.nextMask())
	_ = c.write(r.scratch)
	r.closeConn(c, closedByClient)
}

// closeAll closes every connection; call after run returned.
func (r *reader) closeAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		if !c.closed {
			c.closed = true
			c.wmu.Lock()
			_ = unix.Close(c.fd)
			c.fd = -1
			c.wmu.Unlock()
		}
	}
	_ = unix.Close(r.epfd)
}

func (c *conn) nextMask() [4]byte {
	c.wmu.Lock()
	k := maskKey(&c.mask)
	c.wmu.Unlock()
	return k
}

// write writes all of b to the non-blocking socket, waiting (up to 2 s in
// all) while the socket buffer is full.
func (c *conn) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	deadline := time.Now().Add(2 * time.Second)
	for len(b) > 0 {
		if c.fd < 0 {
			return errConnClosed
		}
		n, err := unix.Write(c.fd, b)
		if n > 0 {
			b = b[n:]
		}
		switch {
		case err == nil:
		case errors.Is(err, unix.EAGAIN):
			if time.Now().After(deadline) {
				return errWriteTimeout
			}
			pfd := []unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLOUT}}
			_, _ = unix.Poll(pfd, 100)
		case errors.Is(err, unix.EINTR):
		default:
			return err
		}
	}
	return nil
}

var (
	errConnClosed   = errors.New("bench: connection closed")
	errWriteTimeout = errors.New("bench: write timed out")
)
