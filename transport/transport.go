package transport

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

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
	cfg      Config
	log      *slog.Logger
	pollOnce sync.Once
	poll     *poller // parks idle sessions; nil where epoll is missing
	panics   atomic.Uint64
}

// Panics returns how many connections were closed because reading them
// panicked (a bug; each is logged at error level).
func (s *Server) Panics() uint64 { return s.panics.Load() }

// poller returns the server's poller, made on first use.
func (s *Server) poller() *poller {
	s.pollOnce.Do(func() { s.poll = newPoller(s.cfg.ReadTimeout) })
	return s.poll
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
		WriteHTTPError(w, http.StatusServiceUnavailable, "unavailable", "the server is shutting down")
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
		WriteHTTPError(w, http.StatusServiceUnavailable, "unavailable", "the server is shutting down")
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
		WriteHTTPError(w, status, string(e.Code), e.Message)
		return
	}
	s.serve(w, r, c)
}

// admit checks the request's origin and that it is an upgrade; it answers
// the request itself when it refuses it.
func (s *Server) admit(w http.ResponseWriter, r *http.Request) bool {
	if !IsUpgrade(r) {
		WriteHTTPError(w, http.StatusBadRequest, "bad_request", "a WebSocket upgrade is required")
		return false
	}
	if !s.cfg.Origins.Check(r) {
		WriteHTTPError(w, http.StatusForbidden, "forbidden", "origin not allowed")
		return false
	}
	return true
}

// WriteHTTPError answers a request with an error status and the JSON error
// body of the HTTP API: {"error":{"code":...,"message":...}}.
func WriteHTTPError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b := append([]byte(`{"error":{"code":`), protocol.AppendString(nil, code)...)
	b = append(b, `,"message":`...)
	b = protocol.AppendString(b, msg)
	_, _ = w.Write(append(b, "}}\n"...))
}

// wsConn is the hub.Transport of one WebSocket connection.
type wsConn struct {
	conn         net.Conn
	writeTimeout time.Duration
	closeOnce    sync.Once
	sess         *session // the read side, told when the socket closes
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
	t.closeOnce.Do(func() {
		err = t.conn.Close()
		if t.sess != nil {
			t.sess.closed()
		}
	})
	return err
}
