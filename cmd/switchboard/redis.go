package main

import (
	"log/slog"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/broker/redis"
)

// newRedisBroker returns the Redis broker for --redis.
func newRedisBroker(url string, log *slog.Logger) (broker.Broker, error) {
	return redis.New(redis.Config{URL: url, Logger: log.With("component", "redis")})
}
