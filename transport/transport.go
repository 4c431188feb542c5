package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/protocol"
)

// Config configures a Server. Zero fields take the documented defaults.
type Config struct {
	// Hub serves the connections. Required.
	Hub *hub.Hub
	// MaxMessageBytes is the largest message a client may send, in bytes
	// (all fragments together); a larger one closes the connection with
	// 1009. Default 65536.
	MaxMessageBytes int
	// Origins decides which browser origins may connect.
	Origins OriginPolicy
	// WriteTimeout bounds one write to a connection. Default 10s.
	WriteTimeout time.Duration
	// ReadTimeout is how long a connection may stay silent (no frame, no
	// pong) before it is closed. Default: twice the hub's ping interval.
	ReadTimeout time.Duration
	// Logger receives the transport's logs. Default: slog.Default().
	Logger *slog.Logger
}

// Server upgrades HTTP requests to WebSocket connections served by a hub.
type Server struct {
	cfg Config
	log *slog.Logger
}

// New returns a Server.
func New(cfg Config) *Server {
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = 65536
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = 2 * cfg.Hub.Config().PingInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Server{cfg: cfg, log: cfg.Logger}
}

// IsUpgrade reports whether r asks for a WebSocket upgrade.
func IsUpgrade(r *http.Request) bool {
	return r.Method == http.MethodGet && headerHasToken(r.Header, "Connection", "upgrade") &&
		headerHasToken(r.Header, "Upgrade", "websocket")
}

// ServeNative serves a native-dialect connection (GET /ws).
func (s *Server) ServeNative(w http.ResponseWriter, r *http.Request) {
	if !s.admit(w, r) {
		return
	}
	c, err := s.cfg.Hub.NewClient(hub.Native)
	if err != nil {
		writeHTTPError(w, http.StatusServiceUnavailable, "unavailable", "the server is shutting down")
		return
	}
	c.Welcome()
	s.serve(w, r, c)
}

// ServeRaw serves a raw-dialect connection on channel (GET / or
// /raw/{channel}). The client is subscribed before the upgrade completes,
// so it receives every message published after its connection opened. A
// bad channel name is refused after the upgrade with close 1008, as the raw
// dialect has no other way to say it.
func (s *Server) ServeRaw(w http.ResponseWriter, r *http.Request, channel string) {
	if !s.admit(w, r) {
		return
	}
	c, err := s.cfg.Hub.NewClient(hub.Raw)
	if err != nil {
		writeHTTPError(w, http.StatusServiceUnavailable, "unavailable", "the server is shutting down")
		return
	}
	if protocol.ValidateChannel(channel) != nil {
		c.Close(protocol.ClosePolicy, "bad channel name")
		s.serve(w, r, c)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Hub.Config().RequestTimeout)
	err = c.SubscribeRaw(ctx, channel)
	cancel()
	if err != nil {
		c.Finish()
		e := hub.ErrorOf(err)
		status := http.StatusInternalServerError
		if e.Code == protocol.CodeUnavailable || errors.Is(err, broker.ErrUnavailable) {
			status = http.StatusServiceUnavailable
		}
		writeHTTPError(w, status, string(e.Code), e.Message)
		return
	}
	s.serve(w, r, c)
}

// admit checks the request's origin and that it is an upgrade; it answers
// the request itself when it refuses it.
func (s *Server) admit(w http.ResponseWriter, r *http.Request) bool {
	if !IsUpgrade(r) {
		writeHTTPError(w, http.StatusBadRequest, "bad_request", "a WebSocket upgrade is required")
		return false
	}
	if !s.cfg.Origins.Check(r) {
		writeHTTPError(w, http.StatusForbidden, "forbidden", "origin not allowed")
		return false
	}
	return true
}

func writeHTTPError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b := append([]byte(`{"error":{"code":`), protocol.AppendString(nil, code)...)
	b = append(b, `,"message":`...)
	b = protocol.AppendString(b, msg)
	_, _ = w.Write(append(b, "}}\n"...))
}

// serve upgrades the connection, attaches it to c and reads until it ends.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, c *hub.Client) {
	conn, rw, _, err := ws.UpgradeHTTP(r, w)
	if err != nil {
		if conn != nil {
			_ = conn.Close()
		}
		c.Finish()
		return
	}
	wc := &wsConn{conn: conn, writeTimeout: s.cfg.WriteTimeout}
	if rc := rawConn(conn); rc != nil {
		c.Attach(&rawWSConn{wsConn: wc, rc: rc})
	} else {
		c.Attach(wc)
	}
	var rd io.Reader = rw.Reader
	if rw.Reader.Buffered() == 0 {
		// Let the HTTP server's 4 KiB reader go and read the socket
		// directly: frames from clients are few and small, and an idle
		// connection then holds no buffer.
		rd = conn
	}
	// The read loop gets a goroutine of its own, with a small new stack,
	// and the HTTP handler's goroutine (whose stack net/http has grown)
	// returns: an idle connection then costs a few KiB, not 18. The hub
	// waits for the client's Finish at Shutdown.
	go func() {
		s.readLoop(c, conn, rd)
		c.Finish()
	}()
}

// readLoop reads frames until the connection ends, the client closes it,
// or it breaks the protocol.
func (s *Server) readLoop(c *hub.Client, conn net.Conn, rd io.Reader) {
	hdrBuf := make([]byte, 2, ws.MaxHeaderSize-2)
	var msg []byte      // the message being assembled from fragments
	var msgOp ws.OpCode // its opcode; 0 when none is in progress
	max := int64(s.cfg.MaxMessageBytes)
	closing := false // the server closed: discard until the client answers
	for {
		_ = conn.SetReadDeadline(time.Now().Add(s.cfg.ReadTimeout))
		h, err := ws.ReadHeaderBuffer(rd, hdrBuf)
		if err != nil {
			return
		}
		if !h.Masked || h.Rsv != 0 {
			c.Close(protocol.CloseProtocolError, "protocol error")
			return
		}
		if h.OpCode.IsControl() {
			if h.Length > 125 || !h.Fin {
				c.Close(protocol.CloseProtocolError, "protocol error")
				return
			}
			p := make([]byte, h.Length)
			if _, err := io.ReadFull(rd, p); err != nil {
				return
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
				return
			}
			continue
		}
		if closing || c.Closed() {
			closing = true
			if _, err := io.CopyN(io.Discard, rd, h.Length); err != nil {
				return
			}
			continue
		}
		switch {
		case h.OpCode == ws.OpContinuation && msgOp == 0,
			h.OpCode != ws.OpContinuation && msgOp != 0,
			h.OpCode != ws.OpText && h.OpCode != ws.OpBinary && h.OpCode != ws.OpContinuation:
			c.Close(protocol.CloseProtocolError, "protocol error")
			return
		}
		if int64(len(msg))+h.Length > max {
			c.Close(protocol.CloseTooLarge, "message too large")
			closing = true
			msg, msgOp = nil, 0
			if _, err := io.CopyN(io.Discard, rd, h.Length); err != nil {
				return
			}
			continue
		}
		if msgOp == 0 {
			msgOp = h.OpCode
		}
		start := len(msg)
		msg = append(msg, make([]byte, h.Length)...)
		if _, err := io.ReadFull(rd, msg[start:]); err != nil {
			return
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
			closing = true
		case op == ws.OpBinary:
			c.HandleBinary()
		case !utf8.Valid(payload):
			c.Close(protocol.CloseInvalidPayload, "text is not valid UTF-8")
			closing = true
		default:
			c.HandleFrame(payload)
		}
	}
}

// wsConn is the hub.Transport of one WebSocket connection.
type wsConn struct {
	conn         net.Conn
	writeTimeout time.Duration
	closeOnce    sync.Once
}

// WriteFrames writes frames with one writev (net.Buffers on a TCP
// connection).
func (t *wsConn) WriteFrames(frames [][]byte) error {
	_ = t.conn.SetWriteDeadline(time.Now().Add(t.writeTimeout))
	if len(frames) == 1 {
		_, err := t.conn.Write(frames[0])
		return err
	}
	nb := net.Buffers(frames)
	_, err := nb.WriteTo(t.conn)
	return err
}

// rawWSConn is a wsConn on a plain socket: it can also write without
// blocking, so the hub's writer pool serves it.
type rawWSConn struct {
	*wsConn
	rc syscall.RawConn
}

// TryWriteFrames writes what the socket takes now with writev.
func (t *rawWSConn) TryWriteFrames(frames [][]byte) (int, error) {
	return tryWritev(t.rc, frames)
}

// Close closes the connection once.
func (t *wsConn) Close() error {
	var err error
	t.closeOnce.Do(func() { err = t.conn.Close() })
	return err
}
