package redis

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/rueidis"

	"github.com/switchboard-rt/switchboard/broker"
)

var (
	_ broker.Presencer   = (*Broker)(nil)
	_ broker.NodeCounter = (*Broker)(nil)
)

// Presence keys of a channel: a hash client -> {"u":user,"i":info,"n":node} and a
// sorted set client -> expiry (Redis time, ms). Both keys also expire as a
// whole when no node refreshes them.

// setPresenceLua adds or refreshes entries. KEYS: hash, zset. ARGV: ttl in
// ms, then client and value pairs.
const setPresenceLua = `
local t = redis.call('TIME')
local exp = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  redis.call('ZADD', KEYS[2], exp, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return 1
`

// presenceLua drops expired entries and returns the rest as HGETALL does.
// KEYS: hash, zset.
const presenceLua = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for i = 1, #expired, 500 do
  redis.call('HDEL', KEYS[1], unpack(expired, i, math.min(i + 499, #expired)))
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
return redis.call('HGETALL', KEYS[1])
`

// removePresenceLua removes clients. KEYS: hash, zset. ARGV: clients.
const removePresenceLua = `
for i = 1, #ARGV, 500 do
  local part = {unpack(ARGV, i, math.min(i + 499, #ARGV))}
  redis.call('HDEL', KEYS[1], unpack(part))
  redis.call('ZREM', KEYS[2], unpack(part))
end
return 1
`

// setNodeLua replaces a node's counts. KEYS: node hash. ARGV: ttl in ms,
// then channel and count pairs.
const setNodeLua = `
redis.call('DEL', KEYS[1])
for i = 2, #ARGV, 500 do
  redis.call('HSET', KEYS[1], unpack(ARGV, i, math.min(i + 499, #ARGV)))
end
if #ARGV > 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 1
`

var (
	setPresenceScript    = rueidis.NewLuaScript(setPresenceLua)
	presenceScript       = rueidis.NewLuaScript(presenceLua)
	removePresenceScript = rueidis.NewLuaScript(removePresenceLua)
	setNodeScript        = rueidis.NewLuaScript(setNodeLua)
)

type presenceValue struct {
	User string          `json:"u,omitempty"`
	Info json.RawMessage `json:"i,omitempty"`
	Node string          `json:"n"`
}

// SetPresence adds or refreshes entries of channel (see broker.Presencer).
func (b *Broker) SetPresence(ctx context.Context, channel string, entries []broker.PresenceEntry, ttl time.Duration) error {
	if err := b.usable(); err != nil {
		return err
	}
	if len(entries) == 0 {
		return nil
	}
	args := make([]string, 0, 1+2*len(entries))
	args = append(args, strconv.FormatInt(max(ttl.Milliseconds(), 1), 10))
	for _, e := range entries {
		v, _ := json.Marshal(presenceValue{User: e.User, Info: e.Info, Node: e.Node})
		args = append(args, e.Client, string(v))
	}
	cctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	keys := []string{b.keys.presence(channel), b.keys.presenceExpiry(channel)}
	if err := setPresenceScript.Exec(cctx, b.client, keys, args).Error(); err != nil {
		return b.fail(ctx, "set presence", channel, err)
	}
	return nil
}

// RemovePresence removes clients from channel (see broker.Presencer).
func (b *Broker) RemovePresence(ctx context.Context, channel string, clients ...string) error {
	if err := b.usable(); err != nil {
		return err
	}
	if len(clients) == 0 {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	keys := []string{b.keys.presence(channel), b.keys.presenceExpiry(channel)}
	if err := removePresenceScript.Exec(cctx, b.client, keys, clients).Error(); err != nil {
		return b.fail(ctx, "remove presence", channel, err)
	}
	return nil
}

// Presence returns channel's unexpired entries (see broker.Presencer).
func (b *Broker) Presence(ctx context.Context, channel string) ([]broker.PresenceEntry, error) {
	if err := b.usable(); err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	keys := []string{b.keys.presence(channel), b.keys.presenceExpiry(channel)}
	kv, err := presenceScript.Exec(cctx, b.client, keys, nil).AsStrSlice()
	if err != nil {
		return nil, b.fail(ctx, "presence", channel, err)
	}
	out := make([]broker.PresenceEntry, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		var v presenceValue
		if err := json.Unmarshal([]byte(kv[i+1]), &v); err != nil {
			return nil, fmt.Errorf("redis: presence %q: entry %q: %w", channel, kv[i], err)
		}
		out = append(out, broker.PresenceEntry{Client: kv[i], User: v.User, Info: v.Info, Node: v.Node})
	}
	return out, nil
}

// SetNodeChannels replaces node's counts (see broker.NodeCounter).
func (b *Broker) SetNodeChannels(ctx context.Context, node string, counts map[string]int, ttl time.Duration) error {
	if err := b.usable(); err != nil {
		return err
	}
	args := make([]string, 0, 1+2*len(counts))
	args = append(args, strconv.FormatInt(max(ttl.Milliseconds(), 1), 10))
	for ch, n := range counts {
		args = append(args, ch, strconv.Itoa(n))
	}
	cctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	if err := setNodeScript.Exec(cctx, b.client, []string{b.keys.node(node)}, args).Error(); err != nil {
		return b.fail(ctx, "set node channels", node, err)
	}
	return nil
}

// ClusterChannels sums every live node's counts (see broker.NodeCounter).
func (b *Broker) ClusterChannels(ctx context.Context) (map[string]int, error) {
	if err := b.usable(); err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	out := make(map[string]int)
	cursor := uint64(0)
	for {
		entry, err := b.client.Do(cctx, b.client.B().Scan().Cursor(cursor).Match(b.keys.nodePattern()).Count(100).Build()).AsScanEntry()
		if err != nil {
			return nil, b.fail(ctx, "cluster channels", "", err)
		}
		for _, key := range entry.Elements {
			kv, err := b.client.Do(cctx, b.client.B().Hgetall().Key(key).Build()).AsIntMap()
			if err != nil {
				return nil, b.fail(ctx, "cluster channels", key, err)
			}
			for ch, n := range kv {
				out[ch] += int(n)
			}
		}
		if entry.Cursor == 0 {
			return out, nil
		}
		cursor = entry.Cursor
	}
}
