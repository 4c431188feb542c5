package transport

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/protocol"
)

// Config configures a Server. Zero fields take the documented defaults.
type Config struct {
	// Hub serves the connections. Required.
	Hub *hub.Hub
	// MaxMessageBytes is the largest message a client may send, in bytes
	// (all fragments together); a larger one closes the connection with
	// 1009. Default DefaultMaxMessageBytes.
	MaxMessageBytes int
	// Origins decides which browser origins may connect.
	Origins OriginPolicy
	// WriteTimeout bounds one blocking write to a connection (one whose
	// socket was full). Default 10s.
	WriteTimeout time.Duration
	// ReadTimeout is how long a connection may stay silent (no frame, no
	// pong) before it is closed. Default: twice the hub's ping interval.
	ReadTimeout time.Duration
	// Logger receives the transport's logs. Default: slog.Default().
	Logger *slog.Logger
}

// The defaults of Config's fields.
const (
	DefaultMaxMessageBytes = 65536
	DefaultWriteTimeout    = 10 * time.Second
)

// Server upgrades HTTP requests to WebSocket connections served by a hub.
// It is safe for concurrent use.
type Server struct {
	cfg            Config
	log            *slog.Logger
	requestTimeout time.Duration // the hub's, for Dialect.Accept
	pollOnce       sync.Once
	poll           *poller // parks idle sessions; nil where epoll is missing
	panics         atomic.Uint64
}

// Panics returns how many connections were closed because reading them
// panicked (a bug; each is logged at error level).
func (s *Server) Panics() uint64 { return s.panics.Load() }

// Metrics returns the transport's figures.
func (s *Server) Metrics() []hub.Metric {
	return []hub.Metric{{Name: "switchboard_read_panics_total", Kind: "counter",
		Help: "Connections closed because reading them panicked (a bug; each is logged).", Value: float64(s.Panics())}}
}

// Shutdown waits, until ctx is done, for the goroutine that watches idle
// connections to end. Call it after the hub's Shutdown, which finishes
// every connection; the transport serves no connection afterwards.
func (s *Server) Shutdown(ctx context.Context) error {
	s.pollOnce.Do(func() {}) // no poller is made from now on
	if s.poll == nil {
		return nil
	}
	return s.poll.waitLoops(ctx)
}

// poller returns the server's poller, made on first use.
func (s *Server) poller() *poller {
	s.pollOnce.Do(func() { s.poll = newPoller(s.cfg.ReadTimeout) })
	return s.poll
}

// New returns a Server.
func New(cfg Config) *Server {
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = 2 * cfg.Hub.PingInterval()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Server{cfg: cfg, log: cfg.Logger, requestTimeout: cfg.Hub.Config().RequestTimeout}
}

// IsUpgrade reports whether r asks for a WebSocket upgrade.
func IsUpgrade(r *http.Request) bool {
	return r.Method == http.MethodGet && headerHasToken(r.Header, "Connection", "upgrade") &&
		headerHasToken(r.Header, "Upgrade", "websocket")
}

// Dialect is a hub.Dialect that the transport can serve: it also says how
// a new connection starts.
type Dialect interface {
	hub.Dialect
	// Accept prepares c, a new client of the dialect, for the connection
	// r asks for, before the upgrade completes: what it queues is the
	// connection's first frames, and what it subscribes c to, c receives
	// from the moment the connection opens. An error refuses the upgrade
	// with the HTTP status of its code (hub.ErrorOf); a *CloseError
	// accepts the upgrade and closes the connection at once with its code,
	// for refusals a WebSocket client must be able to read (a browser
	// sees no HTTP status).
	Accept(ctx context.Context, r *http.Request, c *hub.Client) error
}

// CloseError is a refusal said with a WebSocket close: the connection is
// closed with Code and Reason.
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string {
	return "transport: close " + strconv.Itoa(e.Code) + " " + e.Reason
}

// Serve upgrades r to a WebSocket connection of dialect d, served by the
// hub. It answers the request itself when it refuses it: 400 for a request
// that is not an upgrade, 403 for an origin the policy refuses, 503 while
// the hub shuts down, and what d.Accept says.
func (s *Server) Serve(w http.ResponseWriter, r *http.Request, d Dialect) {
	if !IsUpgrade(r) {
		protocol.WriteHTTPError(w, protocol.Errorf(protocol.CodeBadRequest, "a WebSocket upgrade is required"))
		return
	}
	if !s.cfg.Origins.Check(r) {
		protocol.WriteHTTPError(w, protocol.Errorf(protocol.CodeForbidden, "origin not allowed"))
		return
	}
	c, err := s.cfg.Hub.NewClient(d, hub.Identity{})
	if err != nil {
		protocol.WriteHTTPError(w, hub.ErrorOf(err))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.requestTimeout)
	err = d.Accept(ctx, r, c)
	cancel()
	var ce *CloseError
	switch {
	case errors.As(err, &ce):
		c.Close(ce.Code, ce.Reason)
	case err != nil:
		c.Finish()
		protocol.WriteHTTPError(w, hub.ErrorOf(err))
		return
	}
	s.serve(w, r, c)
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
