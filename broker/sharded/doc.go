// Package sharded spreads channels over several brokers that share nothing,
// such as standalone Redis servers run without a cluster
// (--redis-shards): each channel belongs to exactly one shard, chosen by a
// consistent hash of its name, and every call about that channel goes to
// that shard alone.
//
// # Routing
//
// A channel's shard is the jump consistent hash (Lamping and Veach) of the
// 64-bit FNV-1a hash of its routing name, over the number of shards. The
// routing name is the channel name up to its first '#', so that the broker
// channels the hub derives from a channel ("chat#events") live on the
// channel's own shard, and a channel fails or survives as a whole; a name
// that starts with '#' (the hub's "#control" and "#nodes") is routed by
// all of it. Every node must list the same shards in the same order. When
// a shard is added, about 1/N of the channels move to it and no channel
// moves between the old shards; a moved channel starts a new epoch on its
// new shard, since its history stays behind.
//
// # Faults
//
// Shards fail independently. While one is down, the calls about its
// channels fail with an error wrapping broker.ErrUnavailable and the others
// go on; Ready fails only while every shard is down; ReadyFor and Shards
// tell which. When a shard's broker loses and regains its subscriptions, a
// Handler that implements broker.ChannelStateHandler is told which channels
// were affected (those subscribed on that shard), so that it fills the gaps
// of those channels only; a Handler that implements only
// broker.StateHandler is told SubscriptionsLost when the first shard goes
// and SubscriptionsRestored when the last one is back.
//
// Channel counts (broker.NodeCounter) are split: each shard keeps the
// counts of its own channels, and ClusterChannels merges the shards it can
// reach, so while a shard is down its channels are missing from the sum
// rather than the whole sum failing.
//
// A Broker is safe for concurrent use. It owns no goroutine of its own
// beyond those of a call in progress (a Subscribe over several shards
// waits for one goroutine per shard); its shards own theirs.
package sharded
