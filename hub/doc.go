// Package hub is a switchboard node: the registry of connected clients and
// their subscriptions, the bridge to the broker, and the fan-out that queues
// each message for every local subscriber.
//
// # The path of a message
//
// A client's frame reaches the hub through Client.HandleFrame, called by the
// connection's reader. A publish goes to the Broker; the broker hands every
// message of a subscribed channel back to Hub.HandleMessage, which encodes the
// WebSocket frame once per dialect and appends the same immutable bytes to
// each subscriber's send queue. A connection's writer goroutine exists only
// while its queue has frames: it takes everything queued and hands it to the
// Transport in one call (one writev), and exits when the queue is empty, so an
// idle connection costs no goroutine of its own.
//
// A queue never grows past Config.SendQueueBytes: a client that does not read
// fast enough is closed with 4008 and counted, and publishing never waits for
// it.
//
// # Broker subscriptions
//
// The hub subscribes the broker to a channel when its first local client
// joins, and unsubscribes Config.UnsubscribeDelay after the last one leaves
// (a client that comes back in between costs nothing).
//
// # Locks and goroutines
//
// Locks are taken in this order, never the other way: a channel's stripe
// lock (Hub.subLocks, serializes broker subscribe and unsubscribe of that
// channel), then the channel's shard lock (shard.mu, guards the subscriber
// lists), then a client's queue lock (Client.mu). The client registry's lock
// (Hub.clientsMu) is never held while another is taken. No lock is held
// while writing to a socket.
//
// The hub owns one goroutine (the pinger) from Start to Shutdown. Each client
// owns its writer goroutine and waits for it in Finish. The reader goroutine
// belongs to the transport that created the client.
//
// All exported methods of Hub are safe for concurrent use. A Client's
// HandleFrame and Finish must be called from its reader goroutine only.
package hub
