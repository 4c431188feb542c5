package redis

import "strings"

// keyspace names every Redis key and pub/sub channel the broker uses; no
// name is built anywhere else. Every name starts with the prefix, so that
// several applications can share one Redis, and a channel's keys carry its
// name as a hash tag ({c}), so that in a Redis Cluster they live in the
// slot of the channel itself: the publish script touches them in one step.
type keyspace struct {
	prefix string // with its trailing ':'
}

func newKeyspace(prefix string) keyspace { return keyspace{prefix: prefix + ":"} }

// channel is the pub/sub channel of channel c.
func (k keyspace) channel(c string) string { return k.prefix + c }

// channelOf returns the channel whose pub/sub channel is name.
func (k keyspace) channelOf(name string) (string, bool) { return strings.CutPrefix(name, k.prefix) }

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
