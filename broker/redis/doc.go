// Package redis is the Redis broker: any number of switchboard nodes share
// every channel through one Redis server, with github.com/redis/rueidis as the
// client.
//
// # Delivery
//
// Each node holds one dedicated pub/sub connection and one Redis
// subscription per channel, whatever the number of local clients. Subscribe
// and Unsubscribe go through one goroutine that owns that connection; the
// requests that queue while a command is in flight are sent together, many
// channels per SUBSCRIBE or UNSUBSCRIBE. Subscribe returns once Redis has
// executed the SUBSCRIBE. Messages are handed to the Handler by the
// connection's reader goroutine, one at a time, in the order Redis sent
// them, which is the same on every node.
//
// Publish sends PUBLISH through rueidis's automatic pipelining. A channel with
// history (PublishOptions.HistorySize > 0) is published by one Lua script
// that assigns the next offset, appends the message to the channel's stream
// and publishes it with its position, atomically: a message's position and
// its delivery never disagree.
//
// # Keys and payload
//
// With the default Prefix "sb", channel c uses:
//
//	sb:c        the pub/sub channel
//	sb:{c}:s    a stream of the newest HistorySize messages: entry ID
//	            "<offset>-0", a field "d" holding the data, and for binary
//	            data a field "b" ("1")
//	sb:{c}:m    a hash: "e" the epoch, "o" the newest offset
//
// Both keys expire HistoryTTL after the last publish. When the hash is
// missing (expired, or Redis restarted without persistence) the next publish
// or history read starts a new epoch at offset 0 and drops any old stream.
// The hash tag {c} keeps a channel's keys in one cluster slot.
//
// A pub/sub payload is the data itself for a message without history. A
// message with history is prefixed: byte 0x01, the offset in decimal, a
// comma, the epoch, a comma, then the data ("\x0142,k3x9ab,{...}"). Data is
// one JSON value, which never starts with 0x01 or 0x02; data that does is
// still sent prefixed (offset 0, no epoch) so that it round-trips. Binary
// data (PublishOptions.Binary) is always prefixed, with byte 0x02 instead
// of 0x01 ("\x020,,<bytes>" without history). JSON messages are encoded
// exactly as before binary data existed, so that nodes of both versions
// share them; binary ones need nodes that know the 0x02 mark.
//
// # Starting before Redis
//
// Start does not need Redis to be up. When the first connection fails,
// Start returns nil and a goroutine of the broker's tries again, waiting
// 100ms, then twice as long each time up to Config.ConnectDelay (5s), with
// jitter, until it connects or Close. Meanwhile Ready says why the broker
// is not ready and every call fails at once with that error, which wraps
// broker.ErrUnavailable. Every failed attempt is logged: as a warning when
// Redis may only be late (connection refused, a timeout), as an error
// when it answered and refused, which time alone will not fix: wrong or
// missing credentials (ErrAuth), a TLS client on a plain port
// (ErrTLSHandshake), a Redis Cluster node (ErrCluster: the broker speaks to
// one server; cluster support is not built yet). Only a URL that cannot be
// parsed fails, in New.
//
// # Faults
//
// Every command is bounded by Config.Timeout and never retried, so Publish,
// Subscribe and History fail within about a second with an error wrapping
// broker.ErrUnavailable while Redis is away. Ready reports the outage as soon
// as the pub/sub connection breaks, or a health PING fails. The broker
// reconnects with backoff by itself and subscribes again to every channel it
// had, in batches; a Handler that implements broker.StateHandler is told when
// the subscriptions were lost and when they are back. Loss and recovery are
// logged once each.
//
// A Broker is safe for concurrent use.
package redis
