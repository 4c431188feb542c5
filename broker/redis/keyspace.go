package redis

import "strings"

// keyspace names every Redis key and pub/sub channel the broker uses; no
// name is built anywhere else. Every name starts with the prefix, so that
// several applications can share one Redis, and a channel's keys carry its
// name as a hash tag ({c}), so that in a Redis Cluster they live in the
// slot of the channel itself: the publish script touches them in one step.
//
// On a Redis Cluster (sharded set) the pub/sub channel carries the hash tag
// too ("sb:{c}"): a sharded (SPUBLISH) channel lives in a slot like a key,
// and the publish script may only SPUBLISH to its keys' slot. On one Redis
// it stays "sb:c", as nodes of earlier versions name it.
type keyspace struct {
	prefix  string // with its trailing ':'
	sharded bool   // pub/sub channels are hash-tagged shard channels
}

func newKeyspace(prefix string) keyspace { return keyspace{prefix: prefix + ":"} }

// channel is the pub/sub channel of channel c.
func (k keyspace) channel(c string) string {
	if k.sharded {
		return k.prefix + "{" + c + "}"
	}
	return k.prefix + c
}

// channelOf returns the channel whose pub/sub channel is name.
func (k keyspace) channelOf(name string) (string, bool) {
	c, ok := strings.CutPrefix(name, k.prefix)
	if !ok || !k.sharded {
		return c, ok
	}
	c, ok = strings.CutPrefix(c, "{")
	if !ok {
		return "", false
	}
	return strings.CutSuffix(c, "}")
}

// The keys of channel c: its history stream, its meta hash (epoch), an
// idempotency key, and its presence hash and expiry set.
func (k keyspace) stream(c string) string         { return k.prefix + "{" + c + "}:s" }
func (k keyspace) meta(c string) string           { return k.prefix + "{" + c + "}:m" }
func (k keyspace) idem(c, key string) string      { return k.prefix + "{" + c + "}:i:" + key }
func (k keyspace) presence(c string) string       { return k.prefix + "{" + c + "}:p" }
func (k keyspace) presenceExpiry(c string) string { return k.prefix + "{" + c + "}:pz" }
func (k keyspace) presenceUsers(c string) string  { return k.prefix + "{" + c + "}:pu" }

// node is the key of one node's channel counts; nodePattern matches every
// node's.
func (k keyspace) node(id string) string { return k.prefix + "node:" + id }
func (k keyspace) nodePattern() string   { return k.prefix + "node:*" }
