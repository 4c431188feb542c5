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

// Presence keys of a channel: a hash client -> {"u":user,"i":info,"n":node},
// a sorted set client -> expiry (Redis time, ms), and a hash user -> how
// many of the user's entries the first holds. The three also expire as a
// whole when no node refreshes them. Expired entries stay until
// expirePresenceLua removes them, so that each departure is reported once.

// setPresenceLua adds or refreshes entries. KEYS: hash, zset, users.
// ARGV: ttl in ms, then client, value and user triples. It returns the
// users who had no entry before.
const setPresenceLua = `
local t = redis.call('TIME')
local exp = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
local joined = {}
for i = 2, #ARGV, 3 do
  if ARGV[i + 2] ~= '' and redis.call('HEXISTS', KEYS[1], ARGV[i]) == 0 then
    if redis.call('HINCRBY', KEYS[3], ARGV[i + 2], 1) == 1 then
      joined[#joined + 1] = ARGV[i + 2]
    end
  end
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  redis.call('ZADD', KEYS[2], exp, ARGV[i])
end
-- The keys outlive their longest-lived entry: a short ttl given for one
-- entry must not cut the others'.
for k = 1, 3 do
  if redis.call('PTTL', KEYS[k]) < tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[k], ARGV[1]) end
end
return joined
`

// removeLua is the part of the scripts below that removes one client's
// entry and counts its user down, adding the user to left at zero.
const removeLua = `
local function remove(client, left)
  local v = redis.call('HGET', KEYS[1], client)
  if not v then return end
  redis.call('HDEL', KEYS[1], client)
  redis.call('ZREM', KEYS[2], client)
  local ok, e = pcall(cjson.decode, v)
  if ok and type(e) == 'table' and type(e.u) == 'string' and e.u ~= '' then
    if redis.call('HINCRBY', KEYS[3], e.u, -1) <= 0 then
      redis.call('HDEL', KEYS[3], e.u)
      left[#left + 1] = e.u
    end
  end
end
`

// removePresenceLua removes clients. KEYS: hash, zset, users. ARGV:
// clients. It returns the users left with no entry.
const removePresenceLua = removeLua + `
local left = {}
for i = 1, #ARGV do remove(ARGV[i], left) end
return left
`

// expirePresenceLua removes the expired entries. KEYS: hash, zset, users.
// It returns the users left with no entry.
const expirePresenceLua = removeLua + `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local left = {}
for _, client in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do remove(client, left) end
return left
`

// presenceLua returns the unexpired entries as HGETALL does. KEYS: hash,
// zset.
const presenceLua = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for _, client in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. now, '+inf')) do
  local v = redis.call('HGET', KEYS[1], client)
  if v then
    out[#out + 1] = client
    out[#out + 1] = v
  end
end
return out
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
	expirePresenceScript = rueidis.NewLuaScript(expirePresenceLua)
	setNodeScript        = rueidis.NewLuaScript(setNodeLua)
)

type presenceValue struct {
	User string          `json:"u,omitempty"`
	Info json.RawMessage `json:"i,omitempty"`
	Node string          `json:"n"`
}

// presenceKeys are the keys of channel's presence, in the scripts' order.
func (b *Broker) presenceKeys(channel string) []string {
	return []string{b.keys.presence(channel), b.keys.presenceExpiry(channel), b.keys.presenceUsers(channel)}
}

// SetPresence adds or refreshes entries of channel (see broker.Presencer).
func (b *Broker) SetPresence(ctx context.Context, channel string, entries []broker.PresenceEntry, ttl time.Duration) ([]string, error) {
	if err := b.usable(); err != nil {
		return nil, err
	}
	if len(entries) == 0 {
		return nil, nil
	}
	args := make([]string, 0, 1+3*len(entries))
	args = append(args, strconv.FormatInt(max(ttl.Milliseconds(), 1), 10))
	for _, e := range entries {
		v, _ := json.Marshal(presenceValue{User: e.User, Info: e.Info, Node: e.Node})
		args = append(args, e.Client, string(v), e.User)
	}
	return b.presenceScript(ctx, "set presence", channel, setPresenceScript, args)
}

// RemovePresence removes clients from channel (see broker.Presencer).
func (b *Broker) RemovePresence(ctx context.Context, channel string, clients ...string) ([]string, error) {
	if err := b.usable(); err != nil {
		return nil, err
	}
	if len(clients) == 0 {
		return nil, nil
	}
	return b.presenceScript(ctx, "remove presence", channel, removePresenceScript, clients)
}

// ExpirePresence removes channel's expired entries (see broker.Presencer).
func (b *Broker) ExpirePresence(ctx context.Context, channel string) ([]string, error) {
	if err := b.usable(); err != nil {
		return nil, err
	}
	return b.presenceScript(ctx, "expire presence", channel, expirePresenceScript, nil)
}

// presenceScript runs one of the presence scripts that return users.
func (b *Broker) presenceScript(ctx context.Context, op, channel string, script *rueidis.Lua, args []string) ([]string, error) {
	cctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	users, err := script.Exec(cctx, b.client, b.presenceKeys(channel), args).AsStrSlice()
	if err != nil {
		return nil, b.fail(ctx, op, channel, err)
	}
	return users, nil
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
	var keys []string
	if b.cluster == nil {
		var err error
		if keys, err = b.scanNodes(cctx, b.client); err != nil {
			return nil, b.fail(ctx, "cluster channels", "", err)
		}
	} else {
		// The nodes' keys are spread over the slots: SCAN every node
		// (replicas hold copies, hence the set), and skip the ones down:
		// their nodes' counts are missing until they are back.
		seen := make(map[string]struct{})
		var lastErr error
		ok := 0
		for _, c := range b.client.Nodes() {
			ks, err := b.scanNodes(cctx, c)
			if err != nil {
				lastErr = err
				continue
			}
			ok++
			for _, k := range ks {
				if _, dup := seen[k]; !dup {
					seen[k] = struct{}{}
					keys = append(keys, k)
				}
			}
		}
		if ok == 0 {
			return nil, b.fail(ctx, "cluster channels", "", lastErr)
		}
	}
	out := make(map[string]int)
	for _, key := range keys {
		kv, err := b.client.Do(cctx, b.client.B().Hgetall().Key(key).Build()).AsIntMap()
		if err != nil {
			if b.cluster != nil && transient(err) {
				continue
			}
			return nil, b.fail(ctx, "cluster channels", key, err)
		}
		for ch, n := range kv {
			out[ch] += int(n)
		}
	}
	return out, nil
}

// scanNodes returns the keys of the nodes' channel counts that c holds.
func (b *Broker) scanNodes(ctx context.Context, c rueidis.Client) ([]string, error) {
	var keys []string
	cursor := uint64(0)
	for {
		entry, err := c.Do(ctx, c.B().Scan().Cursor(cursor).Match(b.keys.nodePattern()).Count(100).Build()).AsScanEntry()
		if err != nil {
			return nil, err
		}
		keys = append(keys, entry.Elements...)
		if entry.Cursor == 0 {
			return keys, nil
		}
		cursor = entry.Cursor
	}
}
