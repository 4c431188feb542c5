package redis

import "github.com/redis/rueidis"

// publishOnceScript runs publishLua's counterpart for channels without
// history, publishOnceLua.
var publishOnceScript = rueidis.NewLuaScript(publishOnceLua)

// publishLua publishes a message to a channel with history, atomically:
// it starts a new epoch when the channel's meta hash is missing, assigns the
// next offset, appends the message to the stream (trimmed to the history
// size), refreshes both keys' TTL and PUBLISHes the payload with its
// position. It returns {epoch, offset}.
//
// KEYS: stream, meta, and optionally an idempotency key. ARGV: pub/sub
// channel, data, history size, TTL in milliseconds, a fresh epoch (used only
// when a new one starts), the idempotency key's TTL in milliseconds, and
// "1" for binary data ("0" otherwise), and the client to leave out ("" for
// none; it prefixes the payload, never the stream), and the publish time in
// milliseconds since the epoch (kept as the stream field "t", which readers
// of entries without it do without), and the publish command: "PUBLISH" on
// one Redis, "SPUBLISH" on a Redis Cluster (the channel is then in the
// keys' slot, so the script stays one atomic step). When the idempotency
// key exists, the
// message was published already: the script returns that publish's
// position and does nothing else.
//
// Binary data is marked with a second stream field, "b", and published
// with the mark 0x02 instead of 0x01; JSON data is stored and published
// exactly as before binary data existed.
const publishLua = `
if KEYS[3] then
  local prev = redis.call('GET', KEYS[3])
  if prev then
    local e, o = string.match(prev, '^(.*),(%d+)$')
    return {e, tonumber(o)}
  end
end
local epoch = redis.call('HGET', KEYS[2], 'e')
if not epoch then
  epoch = ARGV[5]
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'e', epoch)
end
local off = redis.call('HINCRBY', KEYS[2], 'o', 1)
local mark = '\1'
if ARGV[7] == '1' then
  mark = '\2'
  redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[3], string.format('%d-0', off), 'd', ARGV[2], 't', ARGV[9], 'b', '1')
else
  redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[3], string.format('%d-0', off), 'd', ARGV[2], 't', ARGV[9])
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
local skip = ''
if ARGV[8] ~= '' then skip = '\3' .. ARGV[8] .. ',' end
redis.call(ARGV[10], ARGV[1], skip .. mark .. string.format('%d,%s,', off, epoch) .. ARGV[2])
if KEYS[3] then
  redis.call('SET', KEYS[3], epoch .. ',' .. off, 'PX', ARGV[6])
end
return {epoch, off}
`

// publishOnceLua publishes a message without history at most once per
// idempotency key. KEYS: the idempotency key. ARGV: pub/sub channel,
// payload, the key's TTL in milliseconds, the publish command (PUBLISH or
// SPUBLISH, as for publishLua).
const publishOnceLua = `
if redis.call('SET', KEYS[1], '', 'NX', 'PX', ARGV[3]) then
  redis.call(ARGV[4], ARGV[1], ARGV[2])
end
return 1
`

// historyLua reads a channel's history, atomically with its position. It
// returns {epoch, offset, recovered (0 or 1), entries}, entries as XRANGE
// gives them (newest first without since). A channel without meta hash
// gets a fresh epoch at offset 0 when create is "1", and otherwise the reply
// {"", 0, 0, {}}.
//
// KEYS: stream, meta. ARGV: since offset ("" for none), since epoch, limit,
// create ("1" or "0"), a fresh epoch, TTL in milliseconds.
const historyLua = `
local m = redis.call('HMGET', KEYS[2], 'e', 'o')
local epoch, off = m[1], tonumber(m[2] or 0)
if not epoch then
  if ARGV[4] ~= '1' then return {'', 0, 0, {}} end
  epoch = ARGV[5]
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'e', epoch, 'o', 0)
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
  return {epoch, 0, 0, {}}
end
local limit = tonumber(ARGV[3])
if ARGV[1] == '' then
  if limit <= 0 or off == 0 then return {epoch, off, 0, {}} end
  return {epoch, off, 0, redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', limit)}
end
local since = tonumber(ARGV[1])
if ARGV[2] ~= epoch or since > off then return {epoch, off, 0, {}} end
if since == off then return {epoch, off, 1, {}} end
if limit <= 0 then return {epoch, off, 0, {}} end
local from = string.format('%d-0', since + 1)
local entries = redis.call('XRANGE', KEYS[1], from, '+', 'COUNT', limit)
if #entries == 0 or entries[1][1] ~= from then return {epoch, off, 0, {}} end
local recovered = 0
if since + #entries == off then recovered = 1 end
return {epoch, off, recovered, entries}
`
