// Package server assembles a complete switchboard node: the hub on a broker,
// the WebSocket transport for the raw and native dialects, the HTTP API and
// the demo page, behind one http.Handler. The switchboard binary is a thin
// layer over it, and Go programs can embed a node with it.
//
// Routes: GET /ws (native), GET /raw/{channel} (raw), GET / (the demo page,
// or a raw connection on the default channel when it is a WebSocket
// upgrade), /api/*, /healthz, /readyz, /metrics, the cluster dashboard
// under /admin/ when Config.AdminPassword is set, and Config.Page for the
// rest.
//
// A Server is safe for concurrent use. It owns the hub, which owns the
// broker: Shutdown closes both.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strings"
	"time"

	"github.com/switchboard-rt/switchboard/admin"
	"github.com/switchboard-rt/switchboard/auth"
	"github.com/switchboard-rt/switchboard/broker/memory"
	"github.com/switchboard-rt/switchboard/httpapi"
	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/native"
	"github.com/switchboard-rt/switchboard/protocol"
	"github.com/switchboard-rt/switchboard/pusher"
	"github.com/switchboard-rt/switchboard/raw"
	"github.com/switchboard-rt/switchboard/transport"
)

// Config configures a Server. Zero fields take the documented defaults.
type Config struct {
	// Hub configures the node: its broker (default: a memory broker, one
	// node), node id, limits, rates, namespaces. Its Logger defaults to
	// Logger.
	Hub hub.Config
	// Logger receives the server's logs. Default: slog.Default().
	Logger *slog.Logger
	// AllowedOrigins lists the browser origins allowed to connect and to
	// call the API; see transport.OriginPolicy for what an empty list
	// allows.
	AllowedOrigins []string
	// APIKey protects /api/* when set.
	APIKey string
	// AdminPassword, when set, serves the cluster dashboard (package
	// admin) under /admin/, to the user "admin" with this password (HTTP
	// Basic: serve it over TLS). Empty: /admin/ is the Page's, which
	// answers 404 by default.
	AdminPassword string
	// NodeInterval is how often the node announces itself to the others
	// (GET /api/nodes); a node that stops is forgotten after three
	// intervals. Default DefaultNodeInterval.
	NodeInterval time.Duration
	// Version is the release the server runs, exported as the version
	// label of switchboard_build_info; empty exports "unknown".
	Version string
	// RawChannel is the channel of raw connections on "/". Default
	// raw.DefaultChannel ("chat_messages", the seed's).
	RawChannel string
	// MaxMessageBytes is the largest message a client may send (a
	// compressed one's inflated size), and the largest data the HTTP API
	// publishes. Default transport.DefaultMaxMessageBytes.
	MaxMessageBytes int
	// Compression accepts permessage-deflate from WebSocket clients that
	// offer it (see transport.Config). Off by default.
	Compression bool
	// WriteTimeout bounds one blocking write to a connection. Default
	// transport.DefaultWriteTimeout.
	WriteTimeout time.Duration
	// Page serves every path the server does not route itself: the demo
	// page and its files. Default: 404 for those paths.
	Page http.Handler
	// HTTP bounds what one HTTP client may hold.
	HTTP HTTPLimits
	// Verifier checks the clients' tokens (JWT). Nil: the node takes no
	// token, and namespaces without rules of their own are public. With a
	// verifier they are authenticated (Hub.DefaultRule), and, unless the
	// default namespace lets anyone subscribe, a connection without a
	// valid token is closed with 4001 after AuthTimeout. The server starts
	// and closes it.
	Verifier *auth.Verifier
	// AuthTimeout is how long a connection has to present a valid token
	// when one is required. Default 10s.
	AuthTimeout time.Duration
	// DevTokenSecret, when set, serves GET /dev/token?user=NAME: a token
	// for any user, granting every channel, signed with this secret (which
	// the Verifier must accept). For local development and the demo only.
	DevTokenSecret []byte
	// Pusher, when set, serves these Pusher apps: their clients on
	// /app/{key} and their HTTP API on /apps/{id}/...
	Pusher []pusher.App
	// MaxConnections, MaxConnectionsPerIP and TrustedProxies bound the
	// WebSocket connections (see transport.Config).
	MaxConnections, MaxConnectionsPerIP int
	TrustedProxies                      []netip.Prefix
}

// HTTPLimits bound the HTTP side of the server. Zero fields take the
// defaults below.
type HTTPLimits struct {
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

func (l *HTTPLimits) setDefaults() {
	if l.ReadHeaderTimeout <= 0 {
		l.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if l.ReadTimeout <= 0 {
		l.ReadTimeout = DefaultReadTimeout
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = DefaultIdleTimeout
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
}

// Server is one switchboard node.
type Server struct {
	cfg       Config
	hub       *hub.Hub
	ws        *transport.Server
	native    *native.Dialect
	raw       *raw.Dialect
	pusher    *pusher.Dialect
	pusherAPI *pusher.API
	webhooks  *pusher.Webhooks
	api       *httpapi.Handler
	admin     *admin.Handler // nil without Config.AdminPassword
	origins   transport.OriginPolicy
	web       http.Handler
	log       *slog.Logger
	httpS     *http.Server
	nodes     *announcer
}

// New returns a Server; call Start before serving.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Hub.Logger == nil {
		cfg.Hub.Logger = cfg.Logger
	}
	if cfg.Hub.Broker == nil {
		cfg.Hub.Broker = memory.New(memory.Config{})
	}
	if cfg.Page == nil {
		cfg.Page = http.NotFoundHandler()
	}
	cfg.HTTP.setDefaults()
	if cfg.NodeInterval <= 0 {
		cfg.NodeInterval = DefaultNodeInterval
	}
	if cfg.Verifier != nil {
		cfg.Hub.Tokens = tokens{cfg.Verifier}
		cfg.Hub.TokenLeeway = cfg.Verifier.Leeway()
		if cfg.Hub.DefaultRule == hub.RuleDefault {
			cfg.Hub.DefaultRule = hub.RuleAuthenticated
		}
		if cfg.AuthTimeout <= 0 {
			cfg.AuthTimeout = DefaultAuthTimeout
		}
		if sub := cfg.Hub.Default.Subscribe; sub != hub.RulePublic && !(sub == hub.RuleDefault && cfg.Hub.DefaultRule == hub.RulePublic) {
			cfg.Hub.AuthTimeout = cfg.AuthTimeout
		}
	}
	var apps *pusher.Apps
	if len(cfg.Pusher) > 0 {
		var err error
		if apps, err = pusher.NewApps(cfg.Pusher); err != nil {
			return nil, err
		}
		cfg.Hub.ChannelOptions, cfg.Hub.Guard = apps.ChannelOptions, apps.Guard
	}
	var hooks *pusher.Webhooks
	if apps != nil && apps.HaveWebhooks() {
		hooks = pusher.NewWebhooks(apps, cfg.Logger)
		cfg.Hub.Observe = hooks.Observe
	}
	if len(cfg.DevTokenSecret) > 0 && cfg.Verifier == nil {
		return nil, errors.New("server: DevTokenSecret needs a Verifier that accepts its tokens")
	}
	if cfg.Hub.IOURing && cfg.Hub.NewBatchWriter == nil {
		cfg.Hub.NewBatchWriter = transport.NewBatchWriter
	}
	h, err := hub.New(cfg.Hub)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:     cfg,
		hub:     h,
		native:  native.New(),
		raw:     raw.New(cfg.RawChannel, cfg.Logger),
		origins: transport.OriginPolicy{Allowed: cfg.AllowedOrigins},
		web:     cfg.Page,
		log:     cfg.Logger,
	}
	s.ws = transport.New(transport.Config{
		Hub:                 h,
		MaxMessageBytes:     cfg.MaxMessageBytes,
		Compression:         cfg.Compression,
		WriteTimeout:        cfg.WriteTimeout,
		Origins:             s.origins,
		Logger:              cfg.Logger,
		MaxConnections:      cfg.MaxConnections,
		MaxConnectionsPerIP: cfg.MaxConnectionsPerIP,
		TrustedProxies:      cfg.TrustedProxies,
	})
	metrics := []func() []hub.Metric{s.ws.Metrics, s.raw.Metrics, s.buildInfo}
	if apps != nil {
		s.pusher = pusher.New(pusher.Config{Apps: apps, NodeID: h.NodeID(), Logger: cfg.Logger, Webhooks: hooks})
		s.webhooks = hooks
		s.pusherAPI = pusher.NewAPI(apps, h)
		metrics = append(metrics, s.pusher.Metrics)
	}
	s.nodes = newAnnouncer(s)
	s.api = httpapi.New(httpapi.Config{
		Hub:             h,
		APIKey:          cfg.APIKey,
		MaxMessageBytes: cfg.MaxMessageBytes,
		Metrics:         metrics,
		Nodes:           func(ctx context.Context) ([]json.RawMessage, error) { return s.nodes.nodes(ctx) },
	})
	if cfg.AdminPassword != "" {
		// The dashboard's actions are the API's requests, behind the
		// dashboard's password instead of the API key.
		s.admin, err = admin.New(admin.Config{
			Password: cfg.AdminPassword,
			NodeID:   h.NodeID(),
			Nodes:    s.nodes.nodes,
			Channels: h.ClusterChannels,
			API:      httpapi.New(httpapi.Config{Hub: h, MaxMessageBytes: cfg.MaxMessageBytes}),
			Logger:   cfg.Logger,
		})
		if err != nil {
			return nil, err
		}
	}
	s.httpS = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: cfg.HTTP.ReadHeaderTimeout,
		ReadTimeout:       cfg.HTTP.ReadTimeout,
		IdleTimeout:       cfg.HTTP.IdleTimeout,
		MaxHeaderBytes:    cfg.HTTP.MaxHeaderBytes,
		ErrorLog:          newErrorLog(cfg.Logger),
	}
	return s, nil
}

// Hub returns the server's hub.
func (s *Server) Hub() *hub.Hub { return s.hub }

// Metrics returns every figure the node exports at /metrics.
func (s *Server) Metrics() []hub.Metric { return s.api.Metrics() }

// Start starts the token verifier (a JWKS's first fetch), the hub and its
// broker. A broker that cannot reach its server yet does not make it fail:
// the node serves, not ready (/readyz says why), until the broker
// connects by itself.
func (s *Server) Start(ctx context.Context) error {
	if s.cfg.Verifier != nil {
		if err := s.cfg.Verifier.Start(ctx); err != nil && !errors.Is(err, auth.ErrStarted) {
			return err
		}
	}
	if err := s.hub.Start(ctx); err != nil {
		return err
	}
	s.nodes.start()
	return nil
}

// Serve accepts connections on ln until Shutdown; it then returns nil.
func (s *Server) Serve(ln net.Listener) error {
	s.nodes.listening(ln.Addr().String())
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
		s.ws.Serve(w, r, s.native)
	case strings.HasPrefix(p, "/app/") && s.pusher != nil:
		s.ws.Serve(w, r, s.pusher)
	case strings.HasPrefix(p, "/apps/") && s.pusherAPI != nil:
		s.pusherAPI.ServeHTTP(w, r)
	case strings.HasPrefix(p, "/raw/"), p == "/" && transport.IsUpgrade(r):
		s.ws.Serve(w, r, s.raw)
	case strings.HasPrefix(p, "/api/"):
		// A browser sends Origin with a cross-site request; without
		// this check, any page a developer visits could publish into
		// their local server with a simple form POST.
		if !s.origins.Check(r) {
			protocol.WriteHTTPError(w, protocol.Errorf(protocol.CodeForbidden, "origin not allowed"))
			return
		}
		s.api.ServeHTTP(w, r)
	case p == "/healthz", p == "/readyz", p == "/metrics":
		s.api.ServeHTTP(w, r)
	case s.admin != nil && (p == "/admin" || strings.HasPrefix(p, "/admin/")):
		s.admin.ServeHTTP(w, r)
	case p == "/dev/token" && len(s.cfg.DevTokenSecret) > 0:
		if !s.origins.Check(r) {
			protocol.WriteHTTPError(w, protocol.Errorf(protocol.CodeForbidden, "origin not allowed"))
			return
		}
		s.devToken(w, r)
	default:
		s.web.ServeHTTP(w, r)
	}
}

// Shutdown stops the node within ctx: it stops accepting connections, asks
// every client to move to another instance (spread over half the time ctx
// leaves), closes what remains when ctx is done, and closes the broker.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.admin != nil {
		// Open dashboards' feeds would hold http.Server.Shutdown until
		// ctx ends: they end first.
		s.admin.Close()
	}
	httpDone := make(chan error, 1)
	go func() { httpDone <- s.httpS.Shutdown(ctx) }()
	s.nodes.close(ctx)
	err := s.hub.Shutdown(ctx)
	if werr := s.ws.Shutdown(ctx); werr != nil && err == nil {
		err = werr
	}
	if herr := <-httpDone; herr != nil && err == nil {
		err = herr
	}
	if s.cfg.Verifier != nil {
		s.cfg.Verifier.Close()
	}
	if s.webhooks != nil {
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		s.webhooks.Close(wctx)
		cancel()
	}
	return err
}

// buildInfo returns the server's own metrics: its build, the broker
// latency its node announcements measure, and whether each of the broker's
// shards is up.
func (s *Server) buildInfo() []hub.Metric {
	v := s.cfg.Version
	if v == "" {
		v = "unknown"
	}
	m := []hub.Metric{
		{Name: "switchboard_build_info", Kind: "gauge", Help: "Always 1; its labels are the release the node runs and the Go release that built it.",
			Value: 1, Labels: [][2]string{{"version", v}, {"go", runtime.Version()}}},
		{Name: "switchboard_broker_latency_seconds", Kind: "gauge", Help: "How long the node's last announcement to the cluster took through the broker (two round trips; every second).",
			Value: time.Duration(s.nodes.brokerLatency.Load()).Seconds()},
	}
	for _, sh := range s.hub.BrokerShards() {
		up := 1.0
		if sh.Err != nil {
			up = 0
		}
		m = append(m, hub.Metric{Name: "switchboard_broker_shard_up", Kind: "gauge", Help: "1 while the node reaches this shard of its broker (one Redis of --redis-shards, one Redis Cluster primary), 0 while it cannot: that shard's channels cannot be published to.",
			Value: up, Labels: [][2]string{{"shard", sh.Name}, {"addr", sh.Addr}}})
	}
	return m
}
