package transport

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"
	"unsafe"

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
	srv  *Server
	c    *hub.Client
	conn net.Conn
	t    *wsConn
	rd   io.Reader     // conn, or br while the upgrade's reader holds bytes
	br   *bufio.Reader // the upgrade's reader; nil once drained
	rc   syscall.RawConn
	poll *poller // nil: the session never parks

	id      uint64       // the poller's key, 0 until the first park; guarded by the poller's mu
	state   atomic.Int32 // stateReading, stateParked or stateDone
	heard   atomic.Int64 // unix nanoseconds when the session last parked
	closing bool         // the server closed: discard until the client answers

	hdr [ws.MaxHeaderSize - 2]byte

	// peek state, bound once so that a peek allocates nothing
	peekFn     func(fd uintptr) bool // returns at once
	peekWaitFn func(fd uintptr) bool // waits for a byte (or the deadline)
	peekByte   [1]byte
	peekErr    syscall.Errno
	chatty     bool  // resumed twice within a linger: linger before parking again
	resumedAt  int64 // unix nanoseconds of the last resume
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
// goroutine of its own) and the handler returns.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, c *hub.Client) {
	conn, rw, _, err := ws.UpgradeHTTP(r, w)
	if err != nil {
		if conn != nil {
			_ = conn.Close()
		}
		c.Finish()
		return
	}
	s.newSession(c, conn, rw.Reader).start()
}

// newSession makes the session of an upgraded connection and attaches it
// to c as its transport. br holds what the client sent after the handshake
// (may be nil).
func (s *Server) newSession(c *hub.Client, conn net.Conn, br *bufio.Reader) *session {
	ss := &session{srv: s, c: c, conn: conn, rd: conn}
	ss.t = &wsConn{conn: conn, writeTimeout: s.cfg.WriteTimeout, sess: ss}
	if br != nil && br.Buffered() > 0 {
		ss.rd, ss.br = br, br
	}
	if ss.rc = rawConn(conn); ss.rc != nil {
		ss.poll = s.poller()
		ss.peekFn = ss.peek
		ss.peekWaitFn = ss.peekWait
		c.Attach(&rawWSConn{wsConn: ss.t, rc: ss.rc})
	} else {
		c.Attach(ss.t)
	}
	return ss
}

// start reads what the client has already sent, then parks the session and
// returns; where it cannot park, it reads on a goroutine of its own, with a
// small new stack, so that the HTTP handler's goroutine (whose stack
// net/http has grown) can return.
func (ss *session) start() {
	if ss.poll != nil {
		// Parking returns at once when the client has sent nothing yet,
		// which is the common case.
		ss.run()
		return
	}
	go ss.run()
}

// run reads until the session parks or ends; when it ends, it finishes the
// client.
func (ss *session) run() {
	if ss.readLoop() {
		return
	}
	ss.finish()
}

// finish unregisters the session and finishes its client. It runs once.
func (ss *session) finish() {
	ss.state.Store(stateDone)
	if ss.poll != nil {
		ss.poll.remove(ss)
	}
	ss.c.Finish()
}

// resume is the poller's hand-off: the client sent something.
func (ss *session) resume() {
	now := time.Now().UnixNano()
	ss.chatty = now-ss.resumedAt < int64(linger)
	ss.resumedAt = now
	ss.run()
}

// closed is called by the transport after it closed the socket: a parked
// session has no reader to notice, so it is finished here.
func (ss *session) closed() {
	if ss.state.CompareAndSwap(stateParked, stateDone) {
		go ss.finish()
	}
}

// idle reports whether the client has nothing more to read right now: the
// upgrade's reader is drained and the socket has no byte waiting.
func (ss *session) idle() bool {
	if ss.br != nil {
		if ss.br.Buffered() > 0 {
			return false
		}
		ss.rd, ss.br = ss.conn, nil
	}
	if err := ss.rc.Read(ss.peekFn); err != nil || ss.peekErr != syscall.EAGAIN {
		return false
	}
	if !ss.chatty {
		return true
	}
	// Linger: wait for the next frame a while, parked in the runtime's
	// poller, before giving the goroutine up.
	_ = ss.conn.SetReadDeadline(time.Now().Add(min(linger, ss.srv.cfg.ReadTimeout)))
	return errors.Is(ss.rc.Read(ss.peekWaitFn), os.ErrDeadlineExceeded)
}

// peekWait is peek for rc.Read's waiting mode: on EAGAIN it asks the
// runtime to wait until the socket is readable and call it again.
func (ss *session) peekWait(fd uintptr) bool {
	ss.peek(fd)
	return ss.peekErr != syscall.EAGAIN
}

// peek looks for one waiting byte without consuming it or blocking.
func (ss *session) peek(fd uintptr) bool {
	for {
		_, _, e := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&ss.peekByte[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		if e == syscall.EINTR {
			continue
		}
		ss.peekErr = e
		return true
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
func (ss *session) readLoop() (parked bool) {
	s, c, conn := ss.srv, ss.c, ss.conn
	hdrBuf := ss.hdr[:2]
	var msg []byte      // the message being assembled from fragments
	var msgOp ws.OpCode // its opcode; 0 when none is in progress
	max := int64(s.cfg.MaxMessageBytes)
	for {
		if msgOp == 0 && ss.poll != nil && ss.idle() && ss.park() {
			return true
		}
		_ = conn.SetReadDeadline(time.Now().Add(s.cfg.ReadTimeout))
		h, err := ws.ReadHeaderBuffer(ss.rd, hdrBuf)
		if err != nil {
			return false
		}
		if !h.Masked || h.Rsv != 0 {
			c.Close(protocol.CloseProtocolError, "protocol error")
			return false
		}
		if h.OpCode.IsControl() {
			if h.Length > 125 || !h.Fin {
				c.Close(protocol.CloseProtocolError, "protocol error")
				return false
			}
			p := make([]byte, h.Length)
			if _, err := io.ReadFull(ss.rd, p); err != nil {
				return false
			}
			ws.Cipher(p, h.Mask, 0)
			switch h.OpCode {
			case ws.OpPing:
				c.Pong(p)
			case ws.OpClose:
				code := protocol.CloseNormal
				if len(p) >= 2 {
					code = int(binary.BigEndian.Uint16(p))
				}
				c.Close(code, "")
				return false
			}
			continue
		}
		if ss.closing || c.Closed() {
			ss.closing = true
			if _, err := io.CopyN(io.Discard, ss.rd, h.Length); err != nil {
				return false
			}
			continue
		}
		switch {
		case h.OpCode == ws.OpContinuation && msgOp == 0,
			h.OpCode != ws.OpContinuation && msgOp != 0,
			h.OpCode != ws.OpText && h.OpCode != ws.OpBinary && h.OpCode != ws.OpContinuation:
			c.Close(protocol.CloseProtocolError, "protocol error")
			return false
		}
		if int64(len(msg))+h.Length > max {
			c.Close(protocol.CloseTooLarge, "message too large")
			ss.closing = true
			msg, msgOp = nil, 0
			if _, err := io.CopyN(io.Discard, ss.rd, h.Length); err != nil {
				return false
			}
			continue
		}
		if msgOp == 0 {
			msgOp = h.OpCode
		}
		start := len(msg)
		msg = append(msg, make([]byte, h.Length)...)
		if _, err := io.ReadFull(ss.rd, msg[start:]); err != nil {
			return false
		}
		ws.Cipher(msg[start:], h.Mask, 0)
		if !h.Fin {
			continue
		}
		op := msgOp
		payload := msg
		msg, msgOp = nil, 0
		switch {
		case op == ws.OpBinary && c.Dialect() == hub.Raw:
			c.Close(protocol.CloseUnsupportedData, "binary frames are not supported")
			ss.closing = true
		case op == ws.OpBinary:
			c.HandleBinary()
		case !utf8.Valid(payload):
			c.Close(protocol.CloseInvalidPayload, "text is not valid UTF-8")
			ss.closing = true
		default:
			c.HandleFrame(payload)
		}
	}
}
