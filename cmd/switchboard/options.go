package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-rt/switchboard/auth"
	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/pusher"
	"github.com/switchboard-rt/switchboard/raw"
	"github.com/switchboard-rt/switchboard/server"
	"github.com/switchboard-rt/switchboard/transport"
)

// settings is everything the options set: the server's configuration and
// the binary's own.
type settings struct {
	srv             server.Config
	addr            string
	shutdownTimeout time.Duration
	logFormat       string
	logLevel        string
	redisURL        string
	redisShards     []string // --redis-shards; excludes redisURL
	redisPrefix     string
	natsURL         string
	natsPrefix      string
	configFile      string
	debugAddr       string
	jwtSecret       string
	jwtPublicKey    string // a file
	jwksURL         string
	jwtIssuer       string
	jwtAudience     string
	jwtLeeway       time.Duration
	devTokenSecret  string
	trustedProxies  []string
	pusherApp       pusher.App // from the flags; used when it has an id
	pusherApps      []pusher.App
}

// option is one setting of the binary, declared once: its flag
// (--max-message-bytes), environment variable (SWITCHBOARD_MAX_MESSAGE_BYTES),
// key in the configuration file (max_message_bytes), type, default and
// help all come from here. Its value is bound to the field it sets and
// holds the default from the start.
type option struct {
	name   string
	env    string // default: SWITCHBOARD_ and the name in capitals
	help   string
	value  value
	def    string // the default as --help and README show it
	secret bool   // never printed
}

// value is an option's typed value: flag.Value, and a name for its type.
type value interface {
	Set(string) error
	String() string
	Type() string
}

// envName is the option's environment variable.
func (o *option) envName() string {
	if o.env != "" {
		return o.env
	}
	return "SWITCHBOARD_" + strings.ToUpper(strings.ReplaceAll(o.name, "-", "_"))
}

// key is the option's key in the configuration file.
func (o *option) key() string { return strings.ReplaceAll(o.name, "-", "_") }

// declare returns every option of the binary, bound to s and holding its
// default. It is the one place an option is written.
func declare(s *settings) []*option {
	h := &s.srv.Hub
	return []*option{
		stringOpt(&s.addr, "addr", ":8080", "address to listen on (host:port)"),
		listOpt(&s.srv.AllowedOrigins, "allowed-origins", "comma-separated browser origins allowed to connect and to call the API (* for all, https://*.example.com for subdomains); empty allows same-origin, loopback and file pages only: set it in production"),
		secretOpt(stringOpt(&s.srv.APIKey, "api-key", "", "API key required as a bearer token on /api/*; empty leaves the API open (local development only)")),
		secretOpt(stringOpt(&s.srv.AdminPassword, "admin-password", "", "serve the cluster dashboard at /admin/ to the user admin with this password (HTTP Basic: serve it over TLS); empty serves no dashboard")),
		stringOpt(&s.srv.RawChannel, "raw-channel", raw.DefaultChannel, "channel of raw connections on /"),
		intOpt(&s.srv.MaxMessageBytes, "max-message-bytes", transport.DefaultMaxMessageBytes, "largest message a client may send, in bytes (a compressed one once inflated); larger closes with 1009"),
		boolOpt(&s.srv.Compression, "compression", "accept permessage-deflate from WebSocket clients that offer it: each message is compressed once for all its subscribers that negotiated it (no context takeover); costs CPU per message for bandwidth"),
		intOpt(&h.MaxSubscriptions, "max-subscriptions", hub.DefaultMaxSubscriptions, "most channels one connection may subscribe to (limit_exceeded beyond)"),
		intOpt(&h.SendQueueBytes, "send-queue-bytes", hub.DefaultSendQueueBytes, "bytes queued for one connection before it is closed as a slow consumer (4008)"),
		durationOpt(&h.PingInterval, "ping-interval", hub.DefaultPingInterval, "interval between server pings; a connection silent for two intervals is closed"),
		durationOpt(&s.shutdownTimeout, "shutdown-timeout", 10*time.Second, "the longest a graceful shutdown takes"),
		withEnv(secretOpt(stringOpt(&s.redisURL, "redis", "", "Redis URL (redis://[:password@]host:port/db or rediss://) to share messages with other instances; for a Redis Cluster, any node or several comma-separated seeds (redis://:password@host1:7000,host2:7000); empty uses the in-process broker (one node)")), "SWITCHBOARD_REDIS_URL"),
		secretOpt(listOpt(&s.redisShards, "redis-shards", "comma-separated URLs of several standalone Redis servers that share the channels by a consistent hash (not a Redis Cluster), in the same order on every instance; instead of --redis")),
		stringOpt(&s.redisPrefix, "redis-prefix", "sb", "prefix of every Redis key and pub/sub channel, so that several applications can share one Redis without seeing each other's messages (A-Z a-z 0-9 _ - .)"),
		withEnv(secretOpt(stringOpt(&s.natsURL, "nats", "", "NATS URL (nats://[user:password@]host:port, several comma-separated, or tls://) with JetStream, to share messages with other instances instead of Redis; not with --redis or --redis-shards")), "SWITCHBOARD_NATS_URL"),
		stringOpt(&s.natsPrefix, "nats-prefix", "sb", "prefix of every NATS subject, stream and KV bucket this deployment uses (letters, digits, - and _), so that applications sharing one NATS do not see each other's"),
		intOpt(&h.Default.HistorySize, "history-size", 0, "messages kept per channel of the default namespace, for recovery after reconnects; 0 keeps none"),
		durationOpt(&h.Default.HistoryTTL, "history-ttl", hub.DefaultHistoryTTL, "how long a channel's history lives after its last message"),
		boolOpt(&h.Default.Presence, "presence", "keep who is in each channel of the default namespace, across instances"),
		boolOpt(&h.Default.JoinLeave, "join-leave", "send join and leave events to the default namespace's subscribers"),
		ruleOpt(&h.Default.Subscribe, "subscribe", false, "who may subscribe to the default namespace's channels: public, authenticated (a valid token) or granted (the token's channels claim, or a subscription token); empty: public without a key, authenticated with one"),
		ruleOpt(&h.Default.Publish, "publish", true, "who may publish on the default namespace's channels: public, authenticated, granted (the token's publish claim) or api (only the HTTP API); empty: public without a key, authenticated with one"),
		durationOpt(&h.PresenceTTL, "presence-ttl", hub.DefaultPresenceTTL, "how long a presence entry outlives its instance's last refresh (a dead instance's clients leave within it)"),
		stringOpt(&s.configFile, "config", "", "YAML file with any of these options (by their key: max_subscriptions: 256) and per-namespace options under namespaces:; see below"),
		floatOpt(&h.ClientRate, "client-rate", 0, "frames a second one client may send on average (bursts of twice that); over it, native requests get rate_limited and raw connections close with 4029; 0 sets no limit"),
		writeDelayOpt(&h.WriteDelay, "write-delay", "shortest time between two writes to one connection, so that frames for a busy connection go out together in one system call; auto adapts it to each connection's traffic (at most 25ms, none for a connection that gets a message now and then), 0 always writes at once"),
		boolOptDefault(&h.IOURing, "io-uring", true, "on Linux, write many ready connections with one io_uring system call instead of one writev each (less CPU per write where entering the kernel is dear); falls back to writev, with a warning, where io_uring is unavailable; false always uses writev"),
		durationOpt(&h.RequestTimeout, "request-timeout", hub.DefaultRequestTimeout, "longest a broker call made for one request may take before the request fails with unavailable"),
		durationOpt(&h.UnsubscribeDelay, "unsubscribe-delay", hub.DefaultUnsubscribeDelay, "how long an instance stays subscribed to a channel's broker messages after its last client left"),
		durationOpt(&h.CloseGrace, "close-grace", hub.DefaultCloseGrace, "how long a connection the server closes may take to read its close frame before its socket is cut"),
		durationOpt(&s.srv.WriteTimeout, "write-timeout", transport.DefaultWriteTimeout, "longest a write to a connection whose socket is full may wait"),
		durationOpt(&s.srv.HTTP.ReadHeaderTimeout, "http-header-timeout", server.DefaultReadHeaderTimeout, "longest time a client may take to send a request's headers (the WebSocket handshake's too)"),
		durationOpt(&s.srv.HTTP.ReadTimeout, "http-read-timeout", server.DefaultReadTimeout, "longest time a client may take to send a whole HTTP request, body included"),
		durationOpt(&s.srv.HTTP.IdleTimeout, "http-idle-timeout", server.DefaultIdleTimeout, "how long a keep-alive HTTP connection may wait for its next request"),
		intOpt(&s.srv.HTTP.MaxHeaderBytes, "http-max-header-bytes", server.DefaultMaxHeaderBytes, "largest request headers a client may send, in bytes"),
		secretOpt(stringOpt(&s.jwtSecret, "jwt-hmac-secret", "", "HMAC secret (at least 32 bytes) that signs the clients' tokens (HS256, HS384, HS512)")),
		stringOpt(&s.jwtPublicKey, "jwt-public-key", "", "PEM file of the public key that signs the clients' tokens: RSA (RS*, PS*), EC (ES256/384/512) or Ed25519 (EdDSA)"),
		stringOpt(&s.jwksURL, "jwks-url", "", "URL of a JWKS holding the keys that sign the clients' tokens, by kid; refreshed in the background"),
		stringOpt(&s.jwtIssuer, "jwt-issuer", "", "when set, a token's iss must be this"),
		stringOpt(&s.jwtAudience, "jwt-audience", "", "when set, a token's aud must hold this"),
		durationOpt(&s.jwtLeeway, "jwt-leeway", auth.DefaultLeeway, "clock skew allowed on a token's exp, nbf and iat; a connection is closed this long after its token's exp (0: none)"),
		durationOpt(&s.srv.AuthTimeout, "auth-timeout", server.DefaultAuthTimeout, "how long a connection has to present a valid token when the default namespace is not public (closed with 4001 after)"),
		secretOpt(stringOpt(&s.devTokenSecret, "dev-token-secret", "", "DEVELOPMENT ONLY: serve GET /dev/token?user=NAME, a token for anyone that grants every channel, signed with this secret (at least 32 bytes), which is then the key")),
		intOpt(&s.srv.MaxConnections, "max-connections", 0, "most WebSocket connections this node holds; more are refused with 503 and Retry-After; 0 sets no limit"),
		intOpt(&s.srv.MaxConnectionsPerIP, "max-connections-per-ip", 0, "most WebSocket connections from one client address; 0 sets no limit"),
		listOpt(&s.trustedProxies, "trusted-proxies", "comma-separated addresses or CIDRs of the proxies whose X-Forwarded-For names the client (for --max-connections-per-ip)"),
		stringOpt(&s.pusherApp.ID, "pusher-app-id", "", "serve a Pusher app with this id (its channels are the namespace of that name): pusher-js and Laravel Echo connect to /app/KEY, Pusher server SDKs call /apps/ID/..."),
		stringOpt(&s.pusherApp.Key, "pusher-key", "", "the Pusher app's key (public)"),
		secretOpt(stringOpt(&s.pusherApp.Secret, "pusher-secret", "", "the Pusher app's secret: it signs channel authorizations, sign-ins and API requests")),
		boolOpt(&s.pusherApp.ClientEvents, "pusher-client-events", "let the Pusher app's clients send client-* events on private and presence channels"),
		stringOpt(&s.debugAddr, "debug-addr", "", "address of a separate listener serving Go's profiler at /debug/pprof/; keep it private; empty serves none"),
		withDefault(stringOpt(&h.NodeID, "node-id", "", "this node's id in welcome frames and client ids"), "random"),
		stringOpt(&s.logFormat, "log-format", "text", "log format: text or json"),
		stringOpt(&s.logLevel, "log-level", "info", "log level: debug, info, warn or error"),
	}
}

func withEnv(o *option, env string) *option     { o.env = env; return o }
func secretOpt(o *option) *option               { o.secret = true; return o }
func withDefault(o *option, def string) *option { o.def = def; return o }

// typed is an option value of type T bound to a field.
type typed[T any] struct {
	p      *T
	typ    string
	parse  func(string) (T, error)
	format func(T) string
}

func (v *typed[T]) Set(s string) error {
	x, err := v.parse(s)
	if err != nil {
		return err
	}
	*v.p = x
	return nil
}

func (v *typed[T]) String() string {
	if v.p == nil {
		return ""
	}
	return v.format(*v.p)
}

func (v *typed[T]) Type() string { return v.typ }

// newOption binds a typed value to p, sets p to def and declares the
// option.
func newOption[T any](p *T, name string, def T, help, typ string, parse func(string) (T, error), format func(T) string) *option {
	*p = def
	o := &option{name: name, help: help, value: &typed[T]{p: p, typ: typ, parse: parse, format: format}}
	if o.def = format(def); o.def == "" {
		o.def = "empty"
	}
	return o
}

func stringOpt(p *string, name, def, help string) *option {
	return newOption(p, name, def, help, "string", func(s string) (string, error) { return s, nil }, func(s string) string { return s })
}

func intOpt(p *int, name string, def int, help string) *option {
	return newOption(p, name, def, help, "int", func(s string) (int, error) {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return 0, fmt.Errorf("want a whole number, like %d", max(def, 100))
		}
		return n, nil
	}, strconv.Itoa)
}

func floatOpt(p *float64, name string, def float64, help string) *option {
	return newOption(p, name, def, help, "number", func(s string) (float64, error) {
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return 0, fmt.Errorf("want a number, like 100 or 0.5")
		}
		return f, nil
	}, func(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) })
}

func durationOpt(p *time.Duration, name string, def time.Duration, help string) *option {
	return newOption(p, name, def, help, "duration", func(s string) (time.Duration, error) {
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			return 0, fmt.Errorf("want a duration with a unit, like 5s, 250ms or 1m30s")
		}
		return d, nil
	}, shortDuration)
}

// writeDelayOpt is --write-delay: "auto" (the default, hub.Config's zero),
// "0" (never wait: hub.NoWriteDelay) or a duration.
func writeDelayOpt(p *time.Duration, name, help string) *option {
	return newOption(p, name, 0, help, "duration|auto", func(s string) (time.Duration, error) {
		s = strings.TrimSpace(s)
		if strings.EqualFold(s, "auto") {
			return 0, nil
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("want auto, 0 or a duration with a unit, like 20ms")
		}
		if d == 0 {
			return hub.NoWriteDelay, nil
		}
		return d, nil
	}, func(d time.Duration) string {
		switch {
		case d == 0:
			return "auto"
		case d < 0:
			return "0"
		}
		return shortDuration(d)
	})
}

// shortDuration writes d without its zero parts: 24h, not 24h0m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func boolOpt(p *bool, name, help string) *option { return boolOptDefault(p, name, false, help) }

func boolOptDefault(p *bool, name string, def bool, help string) *option {
	o := newOption(p, name, def, help, "bool", func(s string) (bool, error) {
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return false, fmt.Errorf("want true or false")
		}
		return b, nil
	}, strconv.FormatBool)
	return o
}

// listOpt is a comma-separated list of strings.
func listOpt(p *[]string, name, help string) *option {
	*p = nil
	return &option{name: name, help: help, def: "empty", value: &typed[[]string]{p: p, typ: "list", parse: func(s string) ([]string, error) {
		var out []string
		for part := range strings.SplitSeq(s, ",") {
			if part = strings.TrimSpace(part); part != "" {
				out = append(out, part)
			}
		}
		return out, nil
	}, format: func(l []string) string { return strings.Join(l, ",") }}}
}

// ruleOpt is a namespace rule; api is a publish rule only.
func ruleOpt(p *hub.Rule, name string, publish bool, help string) *option {
	return newOption(p, name, hub.RuleDefault, help, "rule", func(s string) (hub.Rule, error) {
		if s == "" {
			return hub.RuleDefault, nil
		}
		r, err := hub.ParseRule(strings.TrimSpace(s), publish)
		if err != nil {
			return "", errors.New(strings.TrimPrefix(err.Error(), "hub: "))
		}
		return r, nil
	}, func(r hub.Rule) string { return string(r) })
}

// IsBoolFlag lets a bool option be given as --presence, without a value.
func (v *typed[T]) IsBoolFlag() bool { return v.typ == "bool" }
