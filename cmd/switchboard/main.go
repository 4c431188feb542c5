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
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/server"
	"github.com/switchboard-rt/switchboard/web"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// options are the command-line options, each also read from an
// environment variable.
type options struct {
	addr               string
	allowedOrigins     string
	apiKey             string
	rawChannel         string
	maxMessageBytes    int
	maxSubscriptions   int
	sendQueueBytes     int
	pingInterval       time.Duration
	shutdownTimeout    time.Duration
	logFormat          string
	logLevel           string
	redisURL           string
	nodeID             string
	configFile         string
	historySize        int
	historyTTL         time.Duration
	presence           bool
	joinLeave          bool
	presenceTTL        time.Duration
	writeDelay         time.Duration
	clientRate         float64
	debugAddr          string
	httpHeaderTimeout  time.Duration
	httpReadTimeout    time.Duration
	httpIdleTimeout    time.Duration
	httpMaxHeaderBytes int
	given              map[string]bool // the flags given on the command line or in the environment
}

// envName returns the environment variable of a flag:
// --max-message-bytes is SWITCHBOARD_MAX_MESSAGE_BYTES.
func envName(flagName string) string {
	if flagName == "redis" {
		return "SWITCHBOARD_REDIS_URL"
	}
	return "SWITCHBOARD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parse reads options from args, then from the environment for the flags
// not given on the command line.
func parse(args []string, getenv func(string) string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("switchboard", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.addr, "addr", ":8080", "address to listen on (host:port)")
	fs.StringVar(&o.allowedOrigins, "allowed-origins", "", "comma-separated browser origins allowed to connect, or * for all; empty allows same-origin, loopback and file pages only (set it in production)")
	fs.StringVar(&o.apiKey, "api-key", "", "API key required as a bearer token on /api/*; empty leaves the API open (local development only)")
	fs.StringVar(&o.rawChannel, "raw-channel", "chat_messages", "channel of raw connections on /")
	fs.IntVar(&o.maxMessageBytes, "max-message-bytes", 65536, "largest message a client may send, in bytes")
	fs.IntVar(&o.maxSubscriptions, "max-subscriptions", 128, "most channels one connection may subscribe to")
	fs.IntVar(&o.sendQueueBytes, "send-queue-bytes", 1<<20, "bytes queued for one connection before it is closed as a slow consumer (4008)")
	fs.DurationVar(&o.pingInterval, "ping-interval", 25*time.Second, "interval between server pings; a connection silent for two intervals is closed")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long a graceful shutdown may take")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&o.redisURL, "redis", "", "Redis URL (redis://[:password@]host:port/db or rediss://) to share messages with other instances; empty uses the in-process broker (one node)")
	fs.StringVar(&o.configFile, "config", "", "YAML file with per-namespace options (history_size, history_ttl, read_only); see README")
	fs.IntVar(&o.historySize, "history-size", 0, "messages of history kept per channel of the default namespace, for recovery after reconnects; 0 keeps none")
	fs.DurationVar(&o.historyTTL, "history-ttl", 24*time.Hour, "how long a channel's history lives after its last message")
	fs.BoolVar(&o.presence, "presence", false, "keep who is in each channel of the default namespace (presence request, /api/presence)")
	fs.BoolVar(&o.joinLeave, "join-leave", false, "send join and leave events to the default namespace's subscribers")
	fs.DurationVar(&o.presenceTTL, "presence-ttl", 30*time.Second, "how long a presence entry outlives its instance's last refresh (a dead instance's clients leave within it)")
	fs.Float64Var(&o.clientRate, "client-rate", 0, "frames a second one client may send on average (bursts of twice that); over it, native requests get rate_limited and raw connections close with 4029; 0 sets no limit")
	fs.DurationVar(&o.writeDelay, "write-delay", 0, "hold each connection's writes back this long so more messages go out per system call (less CPU at high rates, that much more latency); 0 writes at once")
	fs.StringVar(&o.debugAddr, "debug-addr", "", "address of a separate listener for Go's profiler (/debug/pprof/); keep it private; empty serves none")
	fs.DurationVar(&o.httpHeaderTimeout, "http-header-timeout", server.DefaultReadHeaderTimeout, "longest time a client may take to send a request's headers (the WebSocket handshake's too)")
	fs.DurationVar(&o.httpReadTimeout, "http-read-timeout", server.DefaultReadTimeout, "longest time a client may take to send a whole HTTP request, body included (not a WebSocket connection's life)")
	fs.DurationVar(&o.httpIdleTimeout, "http-idle-timeout", server.DefaultIdleTimeout, "how long a keep-alive HTTP connection may wait for its next request")
	fs.IntVar(&o.httpMaxHeaderBytes, "http-max-header-bytes", server.DefaultMaxHeaderBytes, "largest request headers a client may send, in bytes")
	fs.StringVar(&o.nodeID, "node-id", "", "this node's id in welcome frames and client ids (default random)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: switchboard [options]\n\nRuns a switchboard node. Every option can also be set with the environment variable named after it.\n\nOptions:\n")
		fs.VisitAll(func(f *flag.Flag) {
			def := f.DefValue
			if def == "" {
				def = `""`
			}
			fmt.Fprintf(stderr, "  --%s (%s)\n      %s (default %s)\n", f.Name, envName(f.Name), f.Usage, def)
		})
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || err != nil {
			return
		}
		if v := getenv(envName(f.Name)); v != "" {
			given[f.Name] = true
			if serr := f.Value.Set(v); serr != nil {
				err = fmt.Errorf("%s=%q: %w", envName(f.Name), v, serr)
			}
		}
	})
	if err != nil {
		return nil, err
	}
	o.given = given
	return o, o.validate()
}

func (o *options) validate() error {
	switch {
	case o.logFormat != "text" && o.logFormat != "json":
		return fmt.Errorf("--log-format must be text or json, not %q", o.logFormat)
	case o.maxMessageBytes <= 0:
		return errors.New("--max-message-bytes must be positive")
	case o.maxSubscriptions <= 0:
		return errors.New("--max-subscriptions must be positive")
	case o.sendQueueBytes < o.maxMessageBytes:
		return errors.New("--send-queue-bytes must be at least --max-message-bytes")
	case o.pingInterval < 100*time.Millisecond:
		return errors.New("--ping-interval must be at least 100ms")
	case o.shutdownTimeout <= 0:
		return errors.New("--shutdown-timeout must be positive")
	case o.clientRate < 0:
		return errors.New("--client-rate must not be negative")
	case o.writeDelay < 0 || o.writeDelay > time.Second:
		return errors.New("--write-delay must be between 0 and 1s")
	case o.presenceTTL < 300*time.Millisecond:
		return errors.New("--presence-ttl must be at least 300ms")
	case o.httpHeaderTimeout <= 0 || o.httpReadTimeout <= 0 || o.httpIdleTimeout <= 0:
		return errors.New("--http-header-timeout, --http-read-timeout and --http-idle-timeout must be positive")
	case o.httpMaxHeaderBytes < 1024:
		return errors.New("--http-max-header-bytes must be at least 1024")
	}
	return nil
}

func (o *options) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	hopts := &slog.HandlerOptions{Level: level}
	if o.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, hopts)), nil
	}
	return slog.New(slog.NewTextHandler(w, hopts)), nil
}

func splitList(s string) []string {
	var out []string
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// run runs the server until ctx is done, then shuts it down. It returns the
// process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parse(args, os.Getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "switchboard:", err)
		return 2
	}
	log, err := o.logger(stderr)
	if err != nil {
		fmt.Fprintln(stderr, "switchboard:", err)
		return 2
	}
	defNS, namedNS, err := o.namespaces()
	if err != nil {
		fmt.Fprintln(stderr, "switchboard:", err)
		return 2
	}
	var b broker.Broker
	if o.redisURL != "" {
		b, err = newRedisBroker(o.redisURL, log)
		if err != nil {
			log.Error("cannot use Redis", "err", err)
			return 1
		}
	}
	srv, err := server.New(server.Config{
		Page:              web.Handler(),
		Broker:            b,
		NodeID:            o.nodeID,
		Logger:            log,
		AllowedOrigins:    splitList(o.allowedOrigins),
		APIKey:            o.apiKey,
		RawChannel:        o.rawChannel,
		MaxMessageBytes:   o.maxMessageBytes,
		MaxSubscriptions:  o.maxSubscriptions,
		SendQueueBytes:    o.sendQueueBytes,
		PingInterval:      o.pingInterval,
		PresenceTTL:       o.presenceTTL,
		WriteDelay:        o.writeDelay,
		ClientRate:        o.clientRate,
		Default:           defNS,
		Namespaces:        namedNS,
		ReadHeaderTimeout: o.httpHeaderTimeout,
		ReadTimeout:       o.httpReadTimeout,
		IdleTimeout:       o.httpIdleTimeout,
		MaxHeaderBytes:    o.httpMaxHeaderBytes,
	})
	if err != nil {
		log.Error("bad configuration", "err", err)
		return 2
	}
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		log.Error("cannot listen", "addr", o.addr, "err", err)
		return 1
	}
	if err := srv.Start(ctx); err != nil {
		_ = ln.Close()
		log.Error("cannot start", "err", err)
		return 1
	}
	if o.apiKey == "" {
		log.Warn("no --api-key: the HTTP API is open to anyone who can reach it")
	}
	if o.allowedOrigins == "" {
		log.Warn("no --allowed-origins: pages on loopback origins and pages opened from files (Origin: null) may connect and use the API")
	}
	brokerName := "memory"
	if o.redisURL != "" {
		brokerName = "redis"
	}
	log.Info("switchboard listening", "addr", ln.Addr().String(), "node", srv.Hub().NodeID(), "broker", brokerName)
	fmt.Fprintf(stdout, "switchboard listening on %s\n", ln.Addr())

	if o.debugAddr != "" {
		dln, err := net.Listen("tcp", o.debugAddr)
		if err != nil {
			log.Error("cannot listen", "debug-addr", o.debugAddr, "err", err)
			_ = ln.Close()
			_ = srv.Shutdown(context.Background())
			return 1
		}
		defer dln.Close()
		go func() { _ = http.Serve(dln, debugMux()) }()
		log.Info("profiler listening", "addr", dln.Addr().String())
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	select {
	case err := <-serveErr:
		log.Error("server stopped", "err", err)
		return 1
	case <-ctx.Done():
	}
	log.Info("shutting down", "timeout", o.shutdownTimeout, "connections", srv.Hub().Stats().Connections.Load())
	sctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("shutdown was not clean", "err", err)
	}
	<-serveErr
	log.Info("stopped")
	return 0
}
