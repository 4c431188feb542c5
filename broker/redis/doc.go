// Package redis is the Redis broker: any number of switchboard nodes share
// every channel through one Redis server, or a Redis Cluster, with
// github.com/redis/rueidis as the client.
//
// # Delivery
//
// On one Redis, each node holds one dedicated pub/sub connection and one Redis
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
// (ErrTLSHandshake), seed addresses that are not cluster nodes
// (ErrCluster). Only a URL that cannot be parsed fails, in New.
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
// # Redis Cluster
//
// A URL naming one cluster node, or several seeds (redis://a:7000,b:7001),
// makes the broker speak to a Redis Cluster (Redis 7 or newer): a URL of
// one address whose server says cluster_enabled:1, or of several
// addresses, is a cluster. Commands then go through rueidis's cluster
// client, which follows MOVED and ASK. Channel c's pub/sub channel is
// "sb:{c}", in the slot of its keys, and messages go through sharded
// Pub/Sub: the publish scripts SPUBLISH (they take the publish command as
// an argument), and each node holds one SSUBSCRIBE per channel on the
// primary of the channel's slot, one command per slot, over one dedicated
// connection per primary. Presence, idempotency keys and history are
// per-channel keys in that slot; the nodes' channel counts are read by
// SCAN on every node. No command spans two slots.
//
// One goroutine (clusterSubs.run) owns those connections. Every
// HealthInterval it reads CLUSTER SLOTS and PINGs each primary. A channel
// loses its subscription when its primary's connection breaks, when Redis
// pushes SUNSUBSCRIBE (its slot moved, or its primary became a replica)
// or when the topology shows its slot elsewhere; it is then subscribed
// where its slot lives now, and a Handler that implements
// broker.ChannelStateHandler is told which channels were lost and when
// they are back (a StateHandler, of all of them), so that it fills their
// gaps from history. The broker is a broker.ShardReadier: Shards lists the
// primaries by address with why each cannot be reached, ReadyFor tells
// whether a channel's primary can, and Ready fails only when none can.
// Publish to a channel whose primary is down fails at once with
// broker.ErrUnavailable while the other channels keep working (run the
// cluster with cluster-require-full-coverage no, or the live primaries
// refuse every command while a slot is down). History reads, and publishes
// with an idempotency key, are retried within Config.Timeout through
// CLUSTERDOWN, TRYAGAIN and broken connections; other publishes never are,
// as a retry could publish twice. Each change of a primary's state is
// logged once.
//
// Redis Cluster replicates asynchronously: a primary that dies before its
// replica has a write loses it, even when acknowledged, and the channel's
// offsets then continue from the replica's. A planned failover (CLUSTER
// FAILOVER) or a slot's move loses nothing.
//
// A Broker is safe for concurrent use.
package redis
