package transport

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/protocol"
)

// Session states. A session is reading while a goroutine runs its read
// loop, parked while it waits in the server's poller with no goroutine, and
// done once its client has been finished. Only the goroutine that moves a
// session out of parked (the poller, the transport's Close, or the reader
// whose arming failed) may run it next, so exactly one goroutine reads or
// finishes it.
const (
	stateReading int32 = iota
	stateParked
	stateDone
)

// session is the read side of one connection. Its read loop runs on
// whatever goroutine owns the session: the HTTP handler's right after the
// upgrade, then a short-lived goroutine per burst of frames. Between bursts
// a session on a plain socket parks in the server's poller and holds no
// goroutine and no buffer, which is what keeps an idle connection small.
type session struct {
	srv   *Server
	c     *hub.Client
	conn  net.Conn
	t     *wsConn
	rd    io.Reader    // conn, early while it holds bytes, or br while it is set
	early *earlyReader // what the client sent with its handshake; nil once read
	// br is a pooled read buffer, held by a parking session only while it
	// has bytes to read, so that a frame's header and payload (and often
	// the frames after it) take one read instead of three. Owned by the
	// reader; nil while parked.
	br   *bufio.Reader
	rc   syscall.RawConn
	poll *poller // nil: the session never parks

	id       uint64       // the poller's key, 0 until the first park; guarded by the poller's mu
	state    atomic.Int32 // stateReading, stateParked or stateDone
	heard    atomic.Int64 // unix nanoseconds when the session last parked
	finished atomic.Bool  // finish has run
	closing  bool         // the server closed: discard until the client answers
	ip       netip.Addr   // the client's address, for the per-address count
	counted  bool         // the connection counts against the server's limits
	asm      assembler    // owned by the reader

	chatty    bool  // resumed twice within a linger: linger before parking again
	resumedAt int64 // unix nanoseconds of the last resume
	fresh     bool  // just resumed by the poller: the socket has something to read
}

// readBufSize is the size of the pooled read buffers: larger than most
// frames, so that one read takes a whole frame or several. A larger
// payload is read into the message directly.
const readBufSize = 4 << 10

var readBufs = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufSize) }}

// buffer makes the next reads go through a pooled buffer (parking sessions
// only; the others read the socket directly, as they never give a buffer
// back).
func (ss *session) buffer() {
	if ss.br != nil || ss.early != nil || ss.poll == nil {
		return
	}
	ss.br = readBufs.Get().(*bufio.Reader)
	ss.br.Reset(ss.conn)
	ss.rd = ss.br
}

// unbuffer gives the read buffer back. Bytes still in it are dropped: the
// caller parks only with an empty buffer, or ends the session.
func (ss *session) unbuffer() {
	if ss.br == nil {
		return
	}
	ss.br.Reset(nil)
	readBufs.Put(ss.br)
	ss.br, ss.rd = nil, ss.conn
}

// earlyReader reads the bytes a client sent with its handshake, then the
// connection.
type earlyReader struct {
	b    []byte
	conn net.Conn
}

func (r *earlyReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return r.conn.Read(p)
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// linger is how long a chatty session (one resumed twice within linger)
// waits for its next message before it parks again. A client
// that sends often (a publisher) then keeps its reader and its grown stack
// instead of paying a new goroutine, an epoll re-arm and a stack growth per
// message; a client that sends now and then (a subscribe, a pong) parks at
// once, so that ten thousand clients subscribing together do not hold ten
// thousand grown stacks for a second.
const linger = time.Second

// serve upgrades the connection, attaches it to c and reads what the client
// has already sent; the session then parks (or, where it cannot, reads on a
// goroutine of its own) and the handler returns. With Config.Compression,
// the upgrade accepts the client's permessage-deflate offer, if it makes
// one the server can satisfy.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, c *hub.Client, ip netip.Addr) {
	var u ws.HTTPUpgrader
	comp := hub.Uncompressed
	if s.cfg.Compression {
		var ext string
		if ext, comp = negotiateDeflate(r.Header); ext != "" {
			u.Header = http.Header{"Sec-WebSocket-Extensions": {ext}}
		}
	}
	conn, rw, _, err := u.Upgrade(r, w)
	if err != nil {
		if conn != nil {
			_ = conn.Close()
		}
		c.Finish()
		s.release(ip)
		return
	}
	// The HTTP server's deadlines for the request are not the
	// connection's: the session sets its own.
	_ = conn.SetDeadline(time.Time{})
	c.SetCompression(comp)
	ss := s.newSession(c, conn, rw.Reader, comp != hub.Uncompressed)
	ss.ip, ss.counted = ip, true
	ss.start()
}

// newSession makes the session of an upgraded connection and attaches it
// to c as its transport. br holds what the client sent after the handshake
// (may be nil); deflate says the connection negotiated permessage-deflate.
func (s *Server) newSession(c *hub.Client, conn net.Conn, br *bufio.Reader, deflate bool) *session {
	ss := &session{srv: s, c: c, conn: conn, rd: conn}
	ss.asm.max = int64(s.cfg.MaxMessageBytes)
	ss.asm.deflate = deflate
	ss.t = &wsConn{conn: conn, writeTimeout: s.cfg.WriteTimeout, sess: ss}
	if br != nil && br.Buffered() > 0 {
		// Keep just the bytes, not the upgrade's 4 KB reader.
		b := make([]byte, br.Buffered())
		_, _ = io.ReadFull(br, b)
		ss.early = &earlyReader{b: b, conn: conn}
		ss.rd = ss.early
	}
	if ss.rc = rawConn(conn); ss.rc != nil {
		ss.poll = s.poller()
		c.Attach(&rawWSConn{wsConn: ss.t, rc: ss.rc})
	} else {
		c.Attach(ss.t)
	}
	return ss
}

// start parks the session and returns, when the client has sent nothing
// yet (the common case: parking then returns at once). Otherwise, and where
// it cannot park, it reads on a goroutine of its own, with a small new
// stack, so that the HTTP handler's goroutine (whose stack net/http has
// grown, and which holds the request's buffers) returns at once: a client
// that sends the start of a frame with its handshake and then nothing
// pins none of them.
func (ss *session) start() {
	if ss.poll != nil && ss.early == nil {
		ss.run()
		return
	}
	go ss.run()
}

// run reads until the session parks or ends; when it ends, it finishes the
// client. A panic while reading is a bug: it is logged and counted, and
// ends this connection only, never the process (the reader may be on the
// poller's goroutine, where nothing else would recover it).
func (ss *session) run() {
	defer func() {
		if v := recover(); v != nil {
			ss.srv.panics.Add(1)
			ss.srv.log.Error("panic while reading a connection; it is closed", "panic", v, "stack", string(debug.Stack()))
			ss.c.Close(protocol.CloseInternal, "internal error")
			ss.finish()
		}
	}()
	if ss.readLoop() {
		return
	}
	ss.unbuffer()
	ss.finish()
}

// finish unregisters the session and finishes its client. Only its first
// call has an effect.
func (ss *session) finish() {
	if ss.finished.Swap(true) {
		return
	}
	ss.state.Store(stateDone)
	if ss.poll != nil {
		ss.poll.remove(ss)
	}
	ss.c.Finish()
	if ss.counted {
		ss.srv.release(ss.ip)
	}
}

// resume is the poller's hand-off: the client sent something.
func (ss *session) resume() {
	now := time.Now().UnixNano()
	ss.chatty = now-ss.resumedAt < int64(linger)
	ss.resumedAt = now
	ss.fresh = true
	ss.run()
}

// closed is called by the transport after it closed the socket: a parked
// session has no reader to notice, so it is finished here.
func (ss *session) closed() {
	if ss.state.CompareAndSwap(stateParked, stateDone) {
		go ss.finish()
	}
}

// park hands the session to the poller. It reports false when the session
// could not park and the caller must go on reading (the socket broke: the
// next read says how); true means the caller no longer owns the session.
func (ss *session) park() bool {
	// The last frame was read just now (or a linger ago): the read
	// timeout of a parked session counts from here.
	ss.heard.Store(time.Now().UnixNano())
	ss.state.Store(stateParked)
	if ss.poll.arm(ss) == nil {
		return true
	}
	return !ss.state.CompareAndSwap(stateParked, stateReading)
}

// readLoop reads frames until the connection ends, the client closes it or
// breaks the protocol (false), or the session parks between messages (true).
//
// Once the connection is closing (the server sent its close frame), the
// loop reads and discards what the client still sends until its close
// frame arrives, the connection breaks, or the hub cuts it after the close
// grace: closing a socket with unread input makes the kernel reset it, and
// the client would lose the close frame.
func (ss *session) readLoop() (parked bool) {
	s, c, conn := ss.srv, ss.c, ss.conn
	for {
		if !ss.asm.busy() && ss.poll != nil && ss.idle() && ss.park() {
			return true
		}
		_ = conn.SetReadDeadline(time.Now().Add(s.cfg.ReadTimeout))
		ss.buffer()
		if ss.closing || c.Closed() {
			ss.closing = true
			if !ss.discard() {
				return false
			}
			continue
		}
		op, payload, err := ss.asm.next(ss.rd)
		if err != nil {
			var ce *CloseError
			if !errors.As(err, &ce) {
				return false
			}
			c.Close(ce.Code, ce.Reason)
			if op == ws.OpClose {
				// A close frame the server refused: the client has
				// closed its side all the same, so nothing more comes
				// after the rest of its payload, read so that closing
				// the socket does not reset it. The hub cuts a client
				// that announces more than it sends.
				ss.skipUnread()
				return false
			}
			ss.closing = true
			continue
		}
		switch op {
		case 0: // a fragment; the message goes on
		case ws.OpPing:
			c.Pong(payload)
		case ws.OpPong:
		case ws.OpClose:
			c.Close(closeCode(payload), "")
			return false
		case ws.OpBinary:
			c.HandleBinary(payload)
		default:
			c.HandleText(payload)
		}
	}
}

// discard reads one frame of a closing connection and drops it; it reports
// false when the reading should end (the client's close frame, or an
// error). The rest of a refused frame's payload is dropped first.
func (ss *session) discard() bool {
	if ss.asm.unread > 0 {
		return ss.skipUnread()
	}
	h, err := ws.ReadHeaderBuffer(ss.rd, ss.asm.hdr[:2])
	if err != nil || h.OpCode == ws.OpClose {
		return false
	}
	_, err = io.CopyN(io.Discard, ss.rd, h.Length)
	return err == nil
}

// skipUnread reads and drops the rest of a refused frame's payload. It
// reports false when the connection broke.
func (ss *session) skipUnread() bool {
	n := ss.asm.unread
	ss.asm.unread = 0
	_, err := io.CopyN(io.Discard, ss.rd, n)
	return err == nil
}
