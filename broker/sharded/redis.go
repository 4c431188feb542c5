package sharded

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/redis/rueidis"

	"github.com/switchboard-rt/switchboard/broker/redis"
)

// NewRedis returns a Broker over one Redis broker per URL (standalone Redis
// servers, --redis-shards), each configured as cfg but for its URL, and its
// Logger tagged with the shard's index. It fails when a URL cannot be
// parsed or two name the same server.
func NewRedis(urls []string, cfg redis.Config) (*Broker, error) {
	if len(urls) == 0 {
		return nil, errors.New("sharded: no Redis URLs")
	}
	c := Config{Logger: cfg.Logger}
	for i, u := range urls {
		rc := cfg
		rc.URL = u
		if cfg.Logger != nil {
			rc.Logger = cfg.Logger.With("shard", i)
		}
		rb, err := redis.New(rc)
		if err != nil {
			return nil, fmt.Errorf("sharded: shard %d: %w", i, err)
		}
		c.Shards = append(c.Shards, Shard{Broker: rb, Addr: redisAddr(u)})
	}
	return New(c)
}

// redisAddr returns the host:port of a Redis URL that redis.New accepted,
// without its credentials.
func redisAddr(u string) string {
	if opt, err := rueidis.ParseURL(u); err == nil && len(opt.InitAddress) > 0 {
		return strings.Join(opt.InitAddress, ",")
	}
	if p, err := url.Parse(u); err == nil {
		return p.Host
	}
	return ""
}
