// Command switchboard runs a switchboard node: a WebSocket messaging server
// speaking the raw (seed-compatible) and native dialects, with an HTTP API,
// health and metrics endpoints, and a demo chat page at "/".
//
// Every option is a flag with a matching environment variable; run
// "switchboard --help" for the list and defaults.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/switchboard-rt/switchboard/auth"
	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/broker/brokers"
	"github.com/switchboard-rt/switchboard/pusher"
	"github.com/switchboard-rt/switchboard/server"
	"github.com/switchboard-rt/switchboard/web"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// parse reads the settings: each option's default, then the configuration
// file (--config, or SWITCHBOARD_CONFIG), then the environment, then the
// command line, each winning over what came before.
func parse(args []string, getenv func(string) string, stderr io.Writer) (*settings, error) {
	s := &settings{}
	opts := declare(s)
	fs := flag.NewFlagSet("switchboard", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	for _, o := range opts {
		fs.Var(o.value, o.name, o.help)
	}
	file := configArg(args)
	if file == "" {
		file = getenv("SWITCHBOARD_CONFIG")
	}
	if file != "" {
		if err := loadFile(file, s, opts); err != nil {
			return nil, err
		}
	}
	for _, o := range opts {
		if v := getenv(o.envName()); v != "" {
			if err := o.value.Set(v); err != nil {
				return nil, fmt.Errorf("%s=%q: %v", o.envName(), v, err)
			}
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(stderr, opts)
			return nil, err
		}
		return nil, flagError(err, opts)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q; see --help", fs.Arg(0))
	}
	return s, s.validate()
}

// configArg returns the value of --config on the command line, which must
// be known before the rest is applied.
func configArg(args []string) string {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "config" {
			continue
		}
		if hasVal {
			return val
		}
		if i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// flagError turns the flag package's error into one line that names the
// flag as it is written here (--name) and says what to do.
func flagError(err error, opts []*option) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		var names []string
		for _, o := range opts {
			names = append(names, o.name)
		}
		return fmt.Errorf("unknown flag --%s%s; see --help", name, nearest(name, names))
	}
	if rest, ok := strings.CutPrefix(msg, "invalid value "); ok {
		// invalid value "abc" for flag -history-size: want a whole number
		return fmt.Errorf("invalid value %s", strings.Replace(rest, "for flag -", "for --", 1))
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
		return fmt.Errorf("--%s needs a value; see --help", name)
	}
	return fmt.Errorf("%s; see --help", msg)
}

// usage writes --help: every option with its type, environment variable,
// help and default, then the configuration file's namespace options.
func usage(w io.Writer, opts []*option) {
	fmt.Fprintf(w, "Usage: switchboard [options]\n       switchboard version | config check FILE [options] | config print [options] | healthcheck [URL]\n\nRuns a switchboard node. Every option can also be set with the environment variable named\nafter it, or in the --config file by its key (max-message-bytes is max_message_bytes);\nthe command line wins over the environment, which wins over the file. SIGHUP reloads the\nnamespace options.\n\nOptions:\n")
	for _, o := range opts {
		typ := " " + o.value.Type()
		if typ == " bool" {
			typ = ""
		}
		fmt.Fprintf(w, "  --%s%s (%s)\n      %s", o.name, typ, o.envName(), o.help)
		if o.def != "empty" {
			fmt.Fprintf(w, " (default %s)", o.def)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "\nNamespace options, in the --config file under namespaces: (default: for the default namespace):\n")
	for _, o := range nsOptions {
		fmt.Fprintf(w, "  %s\n      %s\n", o.key, o.help)
	}
	fmt.Fprintf(w, "\nExample file:\n  max_subscriptions: 256\n  namespaces:\n    default: {history_size: 100, history_ttl: 10m}\n    news:    {history_size: 50, read_only: true}\n")
}

func (s *settings) validate() error {
	h := &s.srv.Hub
	switch {
	case s.logFormat != "text" && s.logFormat != "json":
		return fmt.Errorf("--log-format must be text or json, not %q", s.logFormat)
	case s.srv.MaxMessageBytes <= 0:
		return errors.New("--max-message-bytes must be positive")
	case h.MaxSubscriptions <= 0:
		return errors.New("--max-subscriptions must be positive")
	case h.SendQueueBytes < s.srv.MaxMessageBytes:
		return errors.New("--send-queue-bytes must be at least --max-message-bytes")
	case h.PingInterval < 100*time.Millisecond:
		return errors.New("--ping-interval must be at least 100ms")
	case s.shutdownTimeout <= 0:
		return errors.New("--shutdown-timeout must be positive")
	case h.ClientRate < 0:
		return errors.New("--client-rate must not be negative")
	case h.WriteDelay > time.Second:
		return errors.New("--write-delay must be auto, 0 or at most 1s")
	case h.PresenceTTL < 300*time.Millisecond:
		return errors.New("--presence-ttl must be at least 300ms")
	case h.Default.HistorySize < 0 || h.Default.HistoryTTL < 0:
		return errors.New("--history-size and --history-ttl must not be negative")
	case h.RequestTimeout <= 0 || h.UnsubscribeDelay <= 0 || h.CloseGrace <= 0 || s.srv.WriteTimeout <= 0:
		return errors.New("--request-timeout, --unsubscribe-delay, --close-grace and --write-timeout must be positive")
	case s.srv.HTTP.ReadHeaderTimeout <= 0 || s.srv.HTTP.ReadTimeout <= 0 || s.srv.HTTP.IdleTimeout <= 0:
		return errors.New("--http-header-timeout, --http-read-timeout and --http-idle-timeout must be positive")
	case s.srv.HTTP.MaxHeaderBytes < 1024:
		return errors.New("--http-max-header-bytes must be at least 1024")
	case s.redisURL != "" && len(s.redisShards) > 0:
		return errors.New("--redis and --redis-shards exclude each other: give one Redis (or a cluster) with --redis, or several standalone ones with --redis-shards")
	case s.natsURL != "" && (s.redisURL != "" || len(s.redisShards) > 0):
		return errors.New("--redis and --nats are mutually exclusive: choose one broker")
	}
	return nil
}

// security builds what the security options ask for: the token verifier
// (from exactly one key source), the development token secret and the
// trusted proxies.
func (s *settings) security(log *slog.Logger) error {
	for _, p := range s.trustedProxies {
		prefix, err := netip.ParsePrefix(p)
		if err != nil {
			addr, aerr := netip.ParseAddr(p)
			if aerr != nil {
				return fmt.Errorf("--trusted-proxies: %q is neither an address nor a CIDR (like 10.0.0.0/8)", p)
			}
			prefix = netip.PrefixFrom(addr, addr.BitLen())
		}
		s.srv.TrustedProxies = append(s.srv.TrustedProxies, prefix)
	}
	s.srv.Pusher = s.pusherApps
	if a := s.pusherApp; a.ID != "" || a.Key != "" || a.Secret != "" {
		if a.ID == "" || a.Key == "" || a.Secret == "" {
			return errors.New("--pusher-app-id, --pusher-key and --pusher-secret go together")
		}
		s.srv.Pusher = append([]pusher.App{a}, s.srv.Pusher...)
	}
	cfg := auth.Config{Issuer: s.jwtIssuer, Audience: s.jwtAudience, Leeway: s.jwtLeeway, Logger: log.With("component", "auth")}
	if s.jwtLeeway == 0 {
		cfg.Leeway = -1 // none, where auth.Config's zero is its default
	}
	sources := 0
	if s.jwtSecret != "" {
		cfg.HMACSecret = []byte(s.jwtSecret)
		sources++
	}
	if s.jwtPublicKey != "" {
		pem, err := os.ReadFile(s.jwtPublicKey)
		if err != nil {
			return fmt.Errorf("--jwt-public-key: %w", err)
		}
		cfg.PublicKeyPEM = pem
		sources++
	}
	if s.jwksURL != "" {
		cfg.JWKSURL = s.jwksURL
		sources++
	}
	if s.devTokenSecret != "" {
		if sources > 0 {
			return errors.New("--dev-token-secret is for local development; it cannot be combined with --jwt-hmac-secret, --jwt-public-key or --jwks-url")
		}
		cfg.HMACSecret = []byte(s.devTokenSecret)
		s.srv.DevTokenSecret = cfg.HMACSecret
		sources++
	}
	switch {
	case sources > 1:
		return errors.New("give one of --jwt-hmac-secret, --jwt-public-key and --jwks-url")
	case sources == 0:
		if s.jwtIssuer != "" || s.jwtAudience != "" {
			return errors.New("--jwt-issuer and --jwt-audience need a key: --jwt-hmac-secret, --jwt-public-key or --jwks-url")
		}
		return nil
	}
	v, err := auth.New(cfg)
	if err != nil {
		return err
	}
	s.srv.Verifier = v
	return nil
}

func (s *settings) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(s.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level must be debug, info, warn or error, not %q", s.logLevel)
	}
	hopts := &slog.HandlerOptions{Level: level}
	if s.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, hopts)), nil
	}
	return slog.New(slog.NewTextHandler(w, hopts)), nil
}

// portOf returns the port of a listener's address.
func portOf(a net.Addr) string {
	_, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return "8080"
	}
	return port
}

// pageHost returns the host:port a browser on this machine opens to reach
// a listener: localhost for a wildcard address.
func pageHost(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok && t.IP.IsUnspecified() {
		return "localhost:" + portOf(a)
	}
	return a.String()
}

// run runs the server until ctx is done, then shuts it down. It returns the
// process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if code, ok := command(args, stdout, stderr); ok {
		return code
	}
	s, err := parse(args, os.Getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "switchboard:", err)
		return 2
	}
	log, err := s.logger(stderr)
	if err != nil {
		fmt.Fprintln(stderr, "switchboard:", err)
		return 2
	}
	if err := s.security(log); err != nil {
		fmt.Fprintln(stderr, "switchboard:", err)
		return 2
	}
	// A URL that cannot be parsed is a mistake in the options; a broker
	// that cannot be reached is not: it connects by itself, and /readyz
	// says why it is not ready until then.
	b, err := s.openBroker(log)
	if err != nil {
		fmt.Fprintln(stderr, "switchboard:", err)
		return 2
	}
	s.srv.Hub.Broker = b
	s.srv.Logger = log
	s.srv.Version = build().Version
	s.srv.Page = web.New(web.Config{Lobby: s.srv.RawChannel})
	srv, err := server.New(s.srv)
	if err != nil {
		log.Error("bad configuration", "err", err)
		return 2
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		log.Error("cannot listen", "addr", s.addr, "err", err)
		return 1
	}
	if err := srv.Start(ctx); err != nil {
		_ = ln.Close()
		log.Error("cannot start", "err", err)
		return 1
	}
	allInterfaces := false
	if a, ok := ln.Addr().(*net.TCPAddr); ok && a.IP.IsUnspecified() {
		allInterfaces = true
	}
	if s.srv.APIKey == "" {
		if allInterfaces {
			log.Warn("no --api-key while listening on all interfaces: anyone who can reach this machine can publish through /api/*; set --api-key, or --addr 127.0.0.1:" + portOf(ln.Addr()) + " to stay local")
		} else {
			log.Warn("no --api-key: the HTTP API is open to anyone who can reach it")
		}
	}
	if s.srv.AdminPassword != "" {
		log.Info("cluster dashboard at /admin/ (user admin); HTTP Basic sends the password with every request: reach it over TLS only")
	}
	if s.devTokenSecret != "" {
		log.Warn("--dev-token-secret: GET /dev/token gives anyone a token for every channel; never use it in production")
	}
	if s.srv.Verifier == nil {
		log.Warn("no token key (--jwt-hmac-secret, --jwt-public-key or --jwks-url): every channel is public")
	}
	if len(s.srv.AllowedOrigins) == 0 {
		log.Warn("no --allowed-origins: pages on loopback origins and pages opened from files (Origin: null) may connect and use the API")
	}
	// SIGHUP reloads the namespace options; it is heard from before the
	// line below says the server is up.
	started := s.values()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	// One line says where the server is: on stdout for people and scripts,
	// and as a log record too only for collectors (JSON logs).
	if s.logFormat == "json" {
		log.Info("switchboard listening", "addr", ln.Addr().String(), "node", srv.Hub().NodeID(), "broker", s.brokerOptions(nil).Name())
	}
	// The address comes first and alone: scripts read it (e2e/harness_test.go).
	where := ""
	if allInterfaces {
		where = "all interfaces; "
	}
	fmt.Fprintf(stdout, "switchboard listening on %s (%snode %s, %s broker): open http://%s/\n",
		ln.Addr(), where, srv.Hub().NodeID(), s.brokerOptions(nil).Name(), pageHost(ln.Addr()))

	if s.debugAddr != "" {
		stopDebug, err := serveDebug(s.debugAddr, log)
		if err != nil {
			log.Error("cannot listen", "debug-addr", s.debugAddr, "err", err)
			_ = ln.Close()
			_ = srv.Shutdown(context.Background())
			return 1
		}
		defer stopDebug()
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	for done := false; !done; {
		select {
		case err := <-serveErr:
			log.Error("server stopped", "err", err)
			return 1
		case <-hup:
			reload(args, started, srv, log)
		case <-ctx.Done():
			done = true
		}
	}
	log.Info("shutting down", "timeout", s.shutdownTimeout, "connections", srv.Hub().Stats().Connections)
	sctx, cancel := context.WithTimeout(context.Background(), s.shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("shutdown was not clean", "err", err)
	}
	<-serveErr
	log.Info("stopped")
	return 0
}

// brokerOptions are the broker the options choose: --nats, --redis or
// --redis-shards with their prefix, or the in-process broker.
func (s *settings) brokerOptions(log *slog.Logger) brokers.Options {
	if s.natsURL != "" {
		return brokers.Options{URL: s.natsURL, Prefix: s.natsPrefix, Logger: log}
	}
	return brokers.Options{URL: s.redisURL, Shards: s.redisShards, Prefix: s.redisPrefix, Logger: log}
}

// openBroker returns the broker the options choose, not yet started. It
// fails when a URL or a prefix cannot be used by its option's broker,
// naming the option.
func (s *settings) openBroker(log *slog.Logger) (broker.Broker, error) {
	o := s.brokerOptions(log)
	if s.natsURL != "" {
		if brokers.Name(s.natsURL) != "nats" {
			return nil, fmt.Errorf("--nats: %q is not a NATS URL: want nats://host:port or tls://host:port", brokers.Name(s.natsURL)+":")
		}
		b, err := brokers.OpenWith(o)
		if err != nil {
			return nil, fmt.Errorf("--nats: %w", err)
		}
		return b, nil
	}
	if brokers.Name(s.redisURL) == "nats" {
		return nil, errors.New("--redis: a NATS URL: use --nats for NATS")
	}
	b, err := brokers.OpenWith(o)
	if err != nil {
		opt := "--redis"
		switch {
		case errors.Is(err, brokers.ErrPrefix):
			opt = "--redis-prefix"
		case len(s.redisShards) > 0:
			opt = "--redis-shards"
		}
		return nil, fmt.Errorf("%s: %w", opt, err)
	}
	return b, nil
}
