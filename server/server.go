// Package server assembles a complete switchboard node: the hub on a broker,
// the WebSocket transport for the raw and native dialects, the HTTP API and
// the demo page, behind one http.Handler. The switchboard binary is a thin
// layer over it, and Go programs can embed a node with it.
//
// Routes: GET /ws (native), GET /raw/{channel} (raw), GET / (the demo page,
// or a raw connection on the default channel when it is a WebSocket
// upgrade), /api/*, /healthz, /readyz, /metrics, and Config.Page for the
// rest.
//
// A Server is safe for concurrent use. It owns the hub, which owns the
// broker: Shutdown closes both.
package server

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/broker/memory"
	"github.com/switchboard-rt/switchboard/httpapi"
	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/transport"
)

// Config configures a Server. Zero fields take the documented defaults.
type Config struct {
	// Broker shares messages with other nodes. Default: a memory broker
	// (one node).
	Broker broker.Broker
	// NodeID names the node. Default: random.
	NodeID string
	// Logger receives the server's logs. Default: slog.Default().
	Logger *slog.Logger
	// AllowedOrigins lists the browser origins allowed to connect; see
	// transport.OriginPolicy for what an empty list allows.
	AllowedOrigins []string
	// APIKey protects /api/* when set.
	APIKey string
	// RawChannel is the channel of raw connections on "/". Default
	// "chat_messages", the seed's.
	RawChannel string
	// MaxMessageBytes is the largest message a client may send. Default
	// 65536.
	MaxMessageBytes int
	// MaxSubscriptions per connection. Default 128.
	MaxSubscriptions int
	// SendQueueBytes bounds each connection's send queue. Default 1 MiB.
	SendQueueBytes int
	// PingInterval between server pings. Default 25s.
	PingInterval time.Duration
	// CloseGrace is how long a connection the server closes may take to
	// receive its close frame and answer it before its socket is cut.
	// Default 3s (see hub.Config).
	CloseGrace time.Duration
	// Page serves every path the server does not route itself: the demo
	// page and its files. Default: 404 for those paths.
	Page http.Handler
	// ClientRate limits the frames a client may send per second (zero:
	// none); see hub.Config.
	ClientRate float64
	// WriteDelay is the shortest time between two writes to one
	// connection, so that frames batch (see hub.Config). Zero writes at once.
	WriteDelay time.Duration
	// PresenceTTL is how long a presence entry outlives its node's last
	// refresh. Default 30s.
	PresenceTTL time.Duration
	// Default holds the options of the default namespace and of every
	// namespace not in Namespaces (history, read-only).
	Default hub.NamespaceOptions
	// Namespaces holds per-namespace options.
	Namespaces map[string]hub.NamespaceOptions
	// UnsubscribeDelay keeps a channel's broker subscription after its
	// last local client left. Default 2s.
	UnsubscribeDelay time.Duration
	// ReadHeaderTimeout bounds the reading of a request's headers, the
	// WebSocket handshake's included. Default 5s.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds the reading of a whole HTTP request, its body
	// included, so that a body trickled byte by byte cannot hold a
	// connection. A WebSocket connection is not bound by it once upgraded.
	// Default 15s.
	ReadTimeout time.Duration
	// IdleTimeout closes a keep-alive HTTP connection that sends no new
	// request for this long. Default 60s.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's headers. Default 16 KiB.
	MaxHeaderBytes int
}

// The HTTP limits' defaults.
const (
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 15 * time.Second
	DefaultIdleTimeout       = 60 * time.Second
	DefaultMaxHeaderBytes    = 16 << 10
)

// Server is one switchboard node.
type Server struct {
	cfg     Config
	hub     *hub.Hub
	ws      *transport.Server
	api     *httpapi.Handler
	origins transport.OriginPolicy
	web     http.Handler
	log     *slog.Logger
	httpS   *http.Server
}

// New returns a Server; call Start before serving.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.RawChannel == "" {
		cfg.RawChannel = "chat_messages"
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = 65536
	}
	if cfg.Page == nil {
		cfg.Page = http.NotFoundHandler()
	}
	if cfg.Broker == nil {
		cfg.Broker = memory.New(memory.Config{})
	}
	if cfg.ReadHeaderTimeout <= 0 {
		cfg.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = DefaultReadTimeout
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MaxHeaderBytes <= 0 {
		cfg.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	h, err := hub.New(hub.Config{
		Broker:           cfg.Broker,
		NodeID:           cfg.NodeID,
		Logger:           cfg.Logger,
		MaxSubscriptions: cfg.MaxSubscriptions,
		SendQueueBytes:   cfg.SendQueueBytes,
		PingInterval:     cfg.PingInterval,
		CloseGrace:       cfg.CloseGrace,
		UnsubscribeDelay: cfg.UnsubscribeDelay,
		Default:          cfg.Default,
		Namespaces:       cfg.Namespaces,
		PresenceTTL:      cfg.PresenceTTL,
		WriteDelay:       cfg.WriteDelay,
		ClientRate:       cfg.ClientRate,
	})
	if err != nil {
		return nil, err
	}
	ws := transport.New(transport.Config{
		Hub:             h,
		MaxMessageBytes: cfg.MaxMessageBytes,
		Origins:         transport.OriginPolicy{Allowed: cfg.AllowedOrigins},
		Logger:          cfg.Logger,
	})
	s := &Server{
		cfg: cfg,
		hub: h,
		ws:  ws,
		api: httpapi.New(httpapi.Config{Hub: h, APIKey: cfg.APIKey, MaxMessageBytes: cfg.MaxMessageBytes,
			Metrics: []httpapi.Metric{{Name: "switchboard_read_panics_total", Kind: "counter",
				Help: "Connections closed because reading them panicked (a bug; each is logged).", Value: ws.Panics}}}),
		origins: transport.OriginPolicy{Allowed: cfg.AllowedOrigins},
		web:     cfg.Page,
		log:     cfg.Logger,
	}
	s.httpS = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ErrorLog:          newErrorLog(cfg.Logger),
	}
	return s, nil
}

// Hub returns the server's hub.
func (s *Server) Hub() *hub.Hub { return s.hub }

// Start starts the hub and its broker.
func (s *Server) Start(ctx context.Context) error { return s.hub.Start(ctx) }

// Serve accepts connections on ln until Shutdown; it then returns nil.
func (s *Server) Serve(ln net.Listener) error {
	err := s.httpS.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// ServeHTTP routes a request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case p == "/ws":
		s.ws.ServeNative(w, r)
	case strings.HasPrefix(p, "/raw/"):
		s.ws.ServeRaw(w, r, strings.TrimPrefix(p, "/raw/"))
	case p == "/" && transport.IsUpgrade(r):
		s.ws.ServeRaw(w, r, s.cfg.RawChannel)
	case strings.HasPrefix(p, "/api/"):
		// A browser sends Origin with a cross-site request; without
		// this check, any page a developer visits could publish into
		// their local server with a simple form POST.
		if !s.origins.Check(r) {
			transport.WriteHTTPError(w, http.StatusForbidden, "forbidden", "origin not allowed")
			return
		}
		s.api.ServeHTTP(w, r)
	case p == "/healthz", p == "/readyz", p == "/metrics":
		s.api.ServeHTTP(w, r)
	default:
		s.web.ServeHTTP(w, r)
	}
}

// Shutdown stops the node within ctx: it stops accepting connections, asks
// every client to move to another instance (spread over half the time ctx
// leaves), closes what remains when ctx is done, and closes the broker.
func (s *Server) Shutdown(ctx context.Context) error {
	httpDone := make(chan error, 1)
	go func() { httpDone <- s.httpS.Shutdown(ctx) }()
	err := s.hub.Shutdown(ctx)
	if herr := <-httpDone; herr != nil && err == nil {
		err = herr
	}
	return err
}
