// Package brokers opens a broker from its URL (Open), or from Options that
// may also list several Redis shards and a key prefix (OpenWith): the one
// place that knows every broker the project has, so that a program (the
// switchboard binary, a test, an embedding program) chooses one with a
// string or two.
package brokers

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/broker/memory"
	"github.com/switchboard-rt/switchboard/broker/nats"
	"github.com/switchboard-rt/switchboard/broker/redis"
	"github.com/switchboard-rt/switchboard/broker/sharded"
)

// Options choose a broker for OpenWith. The zero value is the in-process
// broker.
type Options struct {
	// URL names one broker, as for Open. Empty with Shards empty is the
	// in-process broker.
	URL string
	// Shards are the URLs of several standalone Redis servers that share
	// the channels by a consistent hash (see broker/sharded); every node
	// must list them in the same order. It excludes URL.
	Shards []string
	// Prefix starts every name the broker uses on its server (Redis keys
	// and pub/sub channels; NATS subjects, streams and buckets), so that
	// several applications can share one server without seeing each
	// other's messages. Empty means "sb". Only A-Z a-z 0-9 _ - . : a ':'
	// or a glob character would let one prefix's names match another's
	// (and NATS takes no '.' in a stream's name: see broker/nats). The
	// in-process broker has no use for it.
	Prefix string
	// Logger receives the broker's logs. Default: slog.Default().
	Logger *slog.Logger
}

// OpenWith returns the broker o chooses, not yet started. Like Open it
// fails only on options it cannot use (URL and Shards both set, a bad
// prefix, a malformed or repeated URL); it does not connect.
func OpenWith(o Options) (broker.Broker, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if Name(o.URL) != "nats" { // NATS checks its own (see broker/nats)
		if err := checkPrefix(o.Prefix); err != nil {
			return nil, err
		}
	}
	if len(o.Shards) == 0 {
		return open(o.URL, o.Prefix, o.Logger)
	}
	if o.URL != "" {
		return nil, errors.New("brokers: give either one broker URL or several Redis shards, not both")
	}
	for _, u := range o.Shards {
		if scheme, _, _ := strings.Cut(u, ":"); !strings.EqualFold(scheme, "redis") && !strings.EqualFold(scheme, "rediss") {
			return nil, fmt.Errorf("brokers: shard %q: want redis:// or rediss:// URLs", scheme+":")
		}
	}
	return sharded.NewRedis(o.Shards, redis.Config{Prefix: o.Prefix, Logger: o.Logger.With("component", "redis")})
}

// ErrPrefix is wrapped by OpenWith's error for a Redis prefix it refuses.
var ErrPrefix = errors.New("brokers: bad Redis prefix")

// checkPrefix refuses a Redis prefix that could make one application's
// keys or channels match another's.
func checkPrefix(p string) error {
	for _, r := range p {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return fmt.Errorf("%w %q: use only A-Z a-z 0-9 _ - . (a %q would let its keys mix with another prefix's)", ErrPrefix, p, r)
		}
	}
	return nil
}

// Open returns the broker a URL names, not yet started:
//
//   - "" or "memory:": the in-process broker (one node);
//   - "redis://[:password@]host:port/db" or "rediss://...": Redis (a
//     single server, or a Redis Cluster through any of its nodes);
//   - "nats://[user:password@]host:port" (several comma-separated for a
//     cluster) or "tls://...": NATS with JetStream.
//
// log receives the broker's logs (slog.Default() when nil). Open fails
// only on a URL it cannot use (an unknown scheme, a malformed URL): it does
// not connect, and a broker that cannot reach its server at Start keeps
// trying by itself (see broker/redis and broker/nats).
func Open(url string, log *slog.Logger) (broker.Broker, error) {
	if log == nil {
		log = slog.Default()
	}
	return open(url, "", log)
}

// open opens the broker url names, with a prefix.
func open(url, prefix string, log *slog.Logger) (broker.Broker, error) {
	switch Name(url) {
	case "memory":
		return memory.New(memory.Config{}), nil
	case "redis":
		b, err := redis.New(redis.Config{URL: url, Prefix: prefix, Logger: log.With("component", "redis")})
		if err != nil {
			return nil, err
		}
		return b, nil
	case "nats":
		b, err := nats.New(nats.Config{URL: url, Prefix: prefix, Logger: log.With("component", "nats")})
		if err != nil {
			return nil, err
		}
		return b, nil
	}
	scheme, _, _ := strings.Cut(url, ":")
	return nil, fmt.Errorf("brokers: unknown broker %q: want memory:, redis://, rediss://, nats:// or tls://", scheme+":")
}

// Name returns the kind of broker o chooses, for logs: "sharded redis", or
// Name of its URL.
func (o Options) Name() string {
	if len(o.Shards) > 0 {
		return "sharded redis"
	}
	return Name(o.URL)
}

// Name returns the kind of broker a URL names, for logs: "memory",
// "redis" or "nats" (or the URL's scheme when it names none).
func Name(url string) string {
	scheme, _, _ := strings.Cut(url, ":")
	switch s := strings.ToLower(scheme); s {
	case "", "memory":
		return "memory"
	case "redis", "rediss":
		return "redis"
	case "nats", "tls":
		return "nats"
	default:
		return s
	}
}
