package hub

import "sync/atomic"

// Stats are the hub's counters and gauges, updated atomically; read them with
// Load. The metrics endpoint exports them.
type Stats struct {
	Connections       atomic.Int64  // connected clients now
	ConnectionsTotal  atomic.Uint64 // clients ever registered
	Subscriptions     atomic.Int64  // client subscriptions now
	BrokerChannels    atomic.Int64  // channels the broker is subscribed to now
	MessagesPublished atomic.Uint64 // publishes the broker accepted
	PublishErrors     atomic.Uint64 // publishes the broker refused
	RawPublishDropped atomic.Uint64 // raw frames that could not be published
	MessagesReceived  atomic.Uint64 // messages from the broker with local subscribers
	MessagesDelivered atomic.Uint64 // message frames queued to clients
	SlowConsumers     atomic.Uint64 // clients closed with 4008
	FramesWritten     atomic.Uint64 // frames handed to transports
	Writes            atomic.Uint64 // transport writes (each may carry many frames)
	DuplicatesDropped atomic.Uint64 // history messages this node had already delivered
	GapsFilled        atomic.Uint64 // missed messages recovered from history by the node
	GapsLost          atomic.Uint64 // missed messages no longer in history
	RateLimited       atomic.Uint64 // requests refused for going over the client rate
	PresenceDropped   atomic.Uint64 // leaves not carried out: the presence queue was full
}
