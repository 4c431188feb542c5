// Package hub is a switchboard node: the registry of connected clients and
// their subscriptions, the bridge to the broker, and the fan-out that queues
// each message for every local subscriber.
//
// # The path of a message
//
// A client's message reaches the hub through Client.HandleText (or
// HandleBinary), called by the connection's reader, which hands it to the
// client's Dialect (the native and raw dialects are packages of their own).
// The dialect acts with the client's verbs (Subscribe, Publish...), each
// checked by the Config.Authorizer. A publish goes to the Broker; the broker
// hands every message of a subscribed channel back to Hub.HandleMessage,
// which encodes the WebSocket frame once per dialect (and compresses it
// once per Compression its subscribers negotiated) and appends the same
// immutable bytes to each subscriber's send queue. A writer takes everything queued for a
// connection and hands it to the Transport in one call (one writev); an idle
// connection has no writer goroutine of its own.
//
// Clients whose transport can write without blocking are flushed by a small
// pool of writer goroutines (writerPool); a client whose socket is full gets
// a goroutine of its own until it drains, so one slow reader never holds a
// pool writer. A queue never grows past Config.SendQueueBytes: a client that
// does not read fast enough is closed with 4008 and counted, and publishing
// never waits for it.
//
// # History, recovery and presence
//
// Channels whose namespace keeps history carry positions. A subscribe reads
// the channel's history while the live messages are held for the new
// subscriber (channel.pending), so the reply's position, the recovered
// messages and the live ones follow each other with no gap and no
// duplicate; history newer than what the node has delivered (a message in
// the broker whose pub/sub copy is still on its way) is left to arrive
// live, so that it is not sent twice. A per-channel sequencer (sequence.go) drops what the node
// already delivered and fills from history the messages the node missed
// while its broker subscription was down. Presence entries and join/leave
// events (presence.go) go through the broker so that every node sees them.
//
// # Broker subscriptions
//
// The hub subscribes the broker to a channel when its first local client
// joins, and unsubscribes Config.UnsubscribeDelay after the last one leaves
// (a client that comes back in between costs nothing). Releases wait in one
// queue served by one goroutine, with a broker call per stripe of due
// channels (release.go), never a timer per channel.
//
// # Locks and goroutines
//
// Locks are taken in this order, never the other way: a channel's stripe
// lock (Hub.subLocks, serializes broker subscribe and unsubscribe of that
// channel), then the channel's shard lock (shard.mu, guards the subscriber
// lists and the sequencer), then a client's queue lock (Client.mu), then the
// writer pool's lock (writerPool.mu). The client registry's lock
// (Hub.clientsMu) is never held while another is taken. No lock is held
// while writing to a socket, nor while waiting on the broker except the
// stripe lock during a subscribe.
//
// The hub owns its goroutines from Start to Shutdown: the pinger, the
// presence loop, the releaser, the writer pool, the gap fillers (Hub.bg),
// and, when the broker could not be reached at Start, the goroutine that
// subscribes the control channel once it can (subscribeControl), which
// ends then or at Shutdown. A client's
// own blocking writer is counted by the client and waited for in Finish.
// The writer pool's timer (for the write delay) runs its callback on a
// goroutine of the runtime's and is stopped at Shutdown. With Config.IOURing
// each writer of the pool owns a BatchWriter, made when the pool starts
// and closed by that writer when the pool stops; no other goroutine
// touches it. The reader belongs
// to the transport that created the client; it may move from goroutine to
// goroutine (an idle connection parks without one), never two at a time.
//
// All exported methods of Hub are safe for concurrent use. A Client's
// HandleText, HandleBinary, Finish and the verbs a dialect calls from them
// must be called by its reader only, one call at a time; Send and Close are
// safe from anywhere.
package hub
