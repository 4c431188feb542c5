// Package brokers opens a broker from its URL: the one place that knows
// every broker the project has, so that a program (the switchboard binary,
// a test, an embedding program) chooses one with a string.
package brokers

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/broker/memory"
	"github.com/switchboard-rt/switchboard/broker/nats"
	"github.com/switchboard-rt/switchboard/broker/redis"
)

// Options are what a broker may take besides its URL. The zero value
// takes every broker's defaults.
type Options struct {
	// Prefix starts every name the broker uses on its server (Redis keys
	// and channels; NATS subjects, streams and buckets), so that several
	// applications can share one server. Empty: the broker's default, "sb".
	Prefix string
	// Logger receives the broker's logs. Default slog.Default().
	Logger *slog.Logger
}

// Open returns the broker a URL names, not yet started:
//
//   - "" or "memory:": the in-process broker (one node);
//   - "redis://[:password@]host:port/db" or "rediss://...": Redis;
//   - "nats://[user:password@]host:port" (several comma-separated for a
//     cluster) or "tls://...": NATS with JetStream.
//
// log receives the broker's logs (slog.Default() when nil). Open fails
// only on a URL it cannot use (an unknown scheme, a malformed URL): it does
// not connect, and a broker that cannot reach its server at Start keeps
// trying by itself (see broker/redis and broker/nats).
func Open(url string, log *slog.Logger) (broker.Broker, error) {
	return OpenWith(url, Options{Logger: log})
}

// OpenWith is Open with Options.
func OpenWith(url string, o Options) (broker.Broker, error) {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	switch Name(url) {
	case "memory":
		return memory.New(memory.Config{}), nil
	case "redis":
		b, err := redis.New(redis.Config{URL: url, Prefix: o.Prefix, Logger: log.With("component", "redis")})
		if err != nil {
			return nil, err
		}
		return b, nil
	case "nats":
		b, err := nats.New(nats.Config{URL: url, Prefix: o.Prefix, Logger: log.With("component", "nats")})
		if err != nil {
			return nil, err
		}
		return b, nil
	}
	scheme, _, _ := strings.Cut(url, ":")
	return nil, fmt.Errorf("brokers: unknown broker %q: want memory:, redis://, rediss://, nats:// or tls://", scheme+":")
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
