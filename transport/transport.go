package transport

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
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
	// (all fragments together; a compressed message's inflated size); a
	// larger one closes the connection with 1009. Default
	// DefaultMaxMessageBytes.
	MaxMessageBytes int
	// Compression accepts permessage-deflate (RFC 7692) from clients that
	// offer it, always without context takeover: each message a client
	// receives is compressed once for all its subscribers, and the
	// connection keeps no compression state between messages. Off by
	// default: compression costs CPU per message (and per message a
	// client sends) for bandwidth.
	Compression bool
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
	// MaxConnections bounds the node's WebSocket connections, and
	// MaxConnectionsPerIP those from one client address; an upgrade over
	// either is refused with 503 and Retry-After before any connection
	// exists. Zero sets no limit.
	MaxConnections, MaxConnectionsPerIP int
	// TrustedProxies are the peers whose X-Forwarded-For header names the
	// client's address (the last address before the first trusted hop);
	// from any other peer the header is ignored.
	TrustedProxies []netip.Prefix
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
	conns          atomic.Int64 // connections admitted and not finished
	ipMu           sync.Mutex
	perIP          map[netip.Addr]int // guarded by ipMu; connections per client address
	refused        [numRefusals]atomic.Uint64
}

// Why an upgrade is refused before it happens.
const (
	refusedOrigin = iota
	refusedMaxConnections
	refusedPerIP
	numRefusals
)

// Panics returns how many connections were closed because reading them
// panicked (a bug; each is logged at error level).
func (s *Server) Panics() uint64 { return s.panics.Load() }

// Metrics returns the transport's figures.
func (s *Server) Metrics() []hub.Metric {
	return []hub.Metric{
		{Name: "switchboard_read_panics_total", Kind: "counter",
			Help: "Connections closed because reading them panicked (a bug; each is logged).", Value: float64(s.Panics())},
		{Name: "switchboard_refused_origin_total", Kind: "counter",
			Help: "WebSocket upgrades refused for their origin (403).", Value: float64(s.refused[refusedOrigin].Load())},
		{Name: "switchboard_refused_max_connections_total", Kind: "counter",
			Help: "WebSocket upgrades refused because the node had --max-connections (503).", Value: float64(s.refused[refusedMaxConnections].Load())},
		{Name: "switchboard_refused_per_ip_total", Kind: "counter",
			Help: "WebSocket upgrades refused because their address had --max-connections-per-ip (503).", Value: float64(s.refused[refusedPerIP].Load())},
	}
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
	return &Server{cfg: cfg, log: cfg.Logger, requestTimeout: cfg.Hub.Config().RequestTimeout, perIP: make(map[netip.Addr]int)}
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
// that is not an upgrade, 403 for an origin the policy refuses, 503 (with
// Retry-After) over the connection limits or while the hub shuts down, and
// what d.Accept says. A token given with the upgrade (?token= or
// Authorization: Bearer) that does not check out is answered after the
// upgrade, with close 4001 and the reason, so that a browser can tell it
// from a network failure.
func (s *Server) Serve(w http.ResponseWriter, r *http.Request, d Dialect) {
	if !IsUpgrade(r) {
		protocol.WriteHTTPError(w, protocol.Errorf(protocol.CodeBadRequest, "a WebSocket upgrade is required"))
		return
	}
	if !s.cfg.Origins.Check(r) {
		s.refused[refusedOrigin].Add(1)
		protocol.WriteHTTPError(w, protocol.Errorf(protocol.CodeForbidden, "origin not allowed"))
		return
	}
	ip, why := s.admit(r)
	if why >= 0 {
		s.refused[why].Add(1)
		w.Header().Set("Retry-After", "5")
		protocol.WriteHTTPError(w, protocol.Errorf(protocol.CodeUnavailable, "too many connections; try again later"))
		return
	}
	id, idErr := s.identify(r)
	c, err := s.cfg.Hub.NewClient(d, id)
	if err != nil {
		s.release(ip)
		protocol.WriteHTTPError(w, hub.ErrorOf(err))
		return
	}
	if idErr != nil {
		c.Close(protocol.CloseUnauthorized, hub.ErrorOf(idErr).Message)
		s.serve(w, r, c, ip)
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
		s.release(ip)
		protocol.WriteHTTPError(w, hub.ErrorOf(err))
		return
	}
	s.serve(w, r, c, ip)
}

// identify returns who the token given with the upgrade names; anonymous
// when there is none.
func (s *Server) identify(r *http.Request) (hub.Identity, error) {
	token := r.URL.Query().Get("token")
	if bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && token == "" {
		token = strings.TrimSpace(bearer)
	}
	if token == "" {
		return hub.Identity{}, nil
	}
	return s.cfg.Hub.Identify(token)
}

// admit counts a new connection from r's client address against the
// limits. It returns the address, and -1, or the reason it refuses.
func (s *Server) admit(r *http.Request) (netip.Addr, int) {
	ip := ClientAddr(r, s.cfg.TrustedProxies)
	if max := s.cfg.MaxConnections; max > 0 && s.conns.Load() >= int64(max) {
		return ip, refusedMaxConnections
	}
	s.ipMu.Lock()
	defer s.ipMu.Unlock()
	if max := s.cfg.MaxConnectionsPerIP; max > 0 && s.perIP[ip] >= max {
		return ip, refusedPerIP
	}
	s.perIP[ip]++
	s.conns.Add(1)
	return ip, -1
}

// release uncounts a connection admitted from ip.
func (s *Server) release(ip netip.Addr) {
	s.ipMu.Lock()
	if s.perIP[ip]--; s.perIP[ip] <= 0 {
		delete(s.perIP, ip)
	}
	s.ipMu.Unlock()
	s.conns.Add(-1)
}

// ClientAddr returns the address of the client behind r: the peer's, or,
// when the peer is a trusted proxy, the rightmost address of
// X-Forwarded-For that is not itself a trusted proxy.
func ClientAddr(r *http.Request, trusted []netip.Prefix) netip.Addr {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	ip := peer.Addr().Unmap()
	isTrusted := func(a netip.Addr) bool {
		for _, p := range trusted {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	if !isTrusted(ip) {
		return ip
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return ip // a hop we cannot read: trust no further
		}
		ip = a.Unmap()
		if !isTrusted(ip) {
			return ip
		}
	}
	return ip
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
