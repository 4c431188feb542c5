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
	"github.com/switchboard-rt/switchboard/broker/redis"
)

// Open returns the broker a URL names, not yet started:
//
//   - "" or "memory:": the in-process broker (one node);
//   - "redis://[:password@]host:port/db" or "rediss://...": Redis.
//
// log receives the broker's logs (slog.Default() when nil). Open fails
// only on a URL it cannot use (an unknown scheme, a malformed URL): it does
// not connect, and a broker that cannot reach its server at Start keeps
// trying by itself (see broker/redis).
func Open(url string, log *slog.Logger) (broker.Broker, error) {
	if log == nil {
		log = slog.Default()
	}
	scheme, _, _ := strings.Cut(url, ":")
	switch strings.ToLower(scheme) {
	case "", "memory":
		return memory.New(memory.Config{}), nil
	case "redis", "rediss":
		b, err := redis.New(redis.Config{URL: url, Logger: log.With("component", "redis")})
		if err != nil {
			return nil, err
		}
		return b, nil
	}
	return nil, fmt.Errorf("brokers: unknown broker %q: want memory:, redis:// or rediss://", scheme+":")
}

// Name returns the kind of broker a URL names, for logs: "memory" or
// "redis".
func Name(url string) string {
	scheme, _, _ := strings.Cut(url, ":")
	switch strings.ToLower(scheme) {
	case "", "memory":
		return "memory"
	case "rediss":
		return "redis"
	}
	return strings.ToLower(scheme)
}
