// Package nats is the NATS broker: any number of switchboard nodes share
// every channel through one NATS server or cluster with JetStream enabled
// (nats-server 2.9 or newer), with github.com/nats-io/nats.go as the client.
//
// # Delivery
//
// Each node holds one connection and one core NATS subscription per
// channel it has clients for (<prefix>.l.<channel>), whatever the number of
// local clients. Subscribe returns once NATS has confirmed the
// subscriptions (a flush). nats.go hands each subscription's messages to
// the Handler on a goroutine of its own, one message at a time, in the
// order they arrive.
//
// Every message reaches the nodes through a JetStream stream's republish,
// so that NATS, not the publishers, orders a channel: core NATS fans a
// message out from its publisher's connection, and two nodes publishing at
// once could be seen in different orders by two subscribers. A channel
// without history is published to <prefix>.p.<channel> in the memory
// stream <prefix>_live, which keeps only the newest message of each
// channel, for its duplicate window. A channel with history
// (PublishOptions.HistorySize > 0) is published to
// <prefix>.h.<size>_<ttl-ms>.<channel> in the stream of every channel with
// that size and ttl, <prefix>_h_<size>_<ttl-ms>, on Config.Storage (file by
// default), which keeps size messages per channel (MaxMsgsPerSubject, plus
// one for an epoch marker) for ttl (MaxAge). Streams are created when first
// needed. Every publish waits for JetStream's acknowledgement: a nil error
// means NATS stored the message.
//
// # Offsets and epochs
//
// Stream sequences are shared by every channel of a stream, so a channel's
// offsets are kept in a header of each message (Sb-Offset), contiguous from
// 1, with its epoch (Sb-Epoch), a random token. A publish sets the next
// offset after the channel's newest message and sends
// Nats-Expected-Last-Subject-Sequence with that message's stream sequence
// (0 for none), so NATS refuses it if another publish came first; the
// broker then reads the newest message again and retries until
// Config.Timeout. It knows the newest message from its own last publish
// or from the deliveries of a channel it subscribes to, so a publish costs
// one round trip when the node is the channel's only publisher or is
// subscribed to it, and three when another node published since (refused,
// read, publish). A channel with no message left (never published, expired,
// or its stream lost with NATS's store) starts a new epoch at offset 1. A
// History read of such a channel stores an epoch marker (offset 0, no data)
// so that the next publish uses the epoch it returned.
//
// A history read costs four round trips: the newest message, then a
// short-lived consumer of the channel's subject (create, fetch, delete). A
// channel's size and ttl choose its stream, so changing them (the
// namespace's history options) starts every channel of it in a new epoch,
// in the new stream: clients recovering across the change are told of a
// gap, as after a loss of history.
//
// A stream of nats-server 2.9 may republish messages slightly out of order
// under concurrent publishers; a node holds messages that come ahead of a
// missing offset for up to 100ms and delivers them in offset order.
//
// # Idempotency
//
// A publish with an idempotency key carries Nats-Msg-Id (a hash of the
// channel and key), and its stream's duplicate window drops a repeat; a
// repeat with history returns the first publish's position, read back from
// the stream. The window is Config.IdempotencyWindow (5 minutes) for the
// live stream, and the shorter of it and the ttl for a history stream:
// PublishOptions.IdempotencyTTL cannot lengthen it.
//
// # Presence
//
// Presence lives in the KV bucket <prefix>_presence, one key per channel
// holding every entry with its expiry time; node channel counts in
// <prefix>_nodes, one key per node. Keys are changed by compare-and-set
// (KV revisions), retried on conflict, so that concurrent nodes report
// each member's arrival and departure once. Expiry is by the clock of the
// node that reads: nodes' clocks must agree to well within the presence
// ttl. The buckets expire keys nobody writes for an hour. A channel's
// entries share one value, and so do a node's counts, so each holds at
// most what fits in the server's max_payload (1MB by default: some
// thousands of presence entries per channel, some tens of thousands of
// channels per node).
//
// # Names
//
// Every subject, stream and bucket starts with Config.Prefix ("sb"), so
// that several applications can share one NATS. A channel is one token of
// a subject and a KV key: itself when it has only letters, digits, '-' and
// '_', and otherwise '=' and the base32 of its bytes, so that any channel
// name works.
//
// # Faults
//
// Start does not need NATS to be up: nats.go connects in the background,
// and reconnects every Config.ReconnectDelay after an outage, resubscribing
// by itself. While disconnected, Ready and every call fail at once with an
// error wrapping broker.ErrUnavailable that says why the last attempt
// failed (logged at most every 10 seconds). After each connection the broker
// checks that the server has JetStream for it; when not, it logs an error
// saying so, and Ready reports it. A Handler that implements
// broker.StateHandler is told when the connection was lost and when every
// subscription is back (after a flush), so that the node fills the gap from
// history. After a reconnection the broker forgets what it knew of streams
// and buckets, in case NATS came back without its store.
//
// # Goroutines and locks
//
// nats.go owns the connection's goroutines and one per subscription; the
// broker owns one more, which alone calls the StateHandler, and short-lived
// timers for held messages. Broker.mu guards the life cycle; subsMu the
// subscriptions; each channel's subscription has a mutex that serializes
// its Handler calls with its gap timer and Unsubscribe; history and buckets
// guard their caches with their own mutexes. No two are held at once,
// except a channel's mutex while it records a delivery in the history
// cache.
//
// A Broker is safe for concurrent use.
package nats
