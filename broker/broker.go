package broker

import (
	"context"
	"time"
)

// Message is one message of a channel as the broker delivers it.
type Message struct {
	// Channel is the channel the message was published to.
	Channel string
	// Data is the message body, exactly as published: one JSON value, or
	// any bytes when Binary is set. Receivers must treat it as read-only;
	// it may be shared.
	Data []byte
	// Binary tells that Data is binary data (a raw client's binary frame),
	// not JSON. A broker carries it through delivery and history.
	Binary bool
	// Pos is the message's place in the channel's history. It is zero when
	// the channel keeps no history.
	Pos Position
	// Skip, when set, names a client that must not receive the message
	// (its sender, say): PublishOptions.Skip, carried to every node.
	Skip string
	// Time is when the message was published, in milliseconds since the
	// Unix epoch, as the publishing node's broker saw it. A broker that
	// does not carry it leaves it 0, and the hub stamps the time it
	// received the message (the Redis broker's live messages: its pub/sub
	// payload is unchanged, so that nodes of different versions mix).
	// History keeps it.
	Time int64
}

// Position names a place in a channel's history: Offset counts the messages
// of one life of the channel's stream, starting at 1; Epoch names that life
// and changes when the stream is lost (Redis restarted without persistence,
// say), after which offsets start again from 1.
type Position struct {
	Epoch  string
	Offset uint64
}

// IsZero reports whether p is the zero Position (a channel without history).
func (p Position) IsZero() bool { return p.Epoch == "" && p.Offset == 0 }

// PublishOptions are the per-channel settings a publish carries. The zero
// value publishes without history.
type PublishOptions struct {
	// HistorySize is how many messages the channel's history keeps. Zero
	// keeps none: the message is delivered but has no Position.
	HistorySize int
	// HistoryTTL is how long the history is kept after the channel's last
	// publish. Zero with a HistorySize keeps it for a day.
	HistoryTTL time.Duration
	// IdempotencyKey, when set, makes the publish happen at most once per
	// key and channel within IdempotencyTTL: a repeat publishes nothing and
	// returns the first publish's position. A caller whose publish failed
	// without knowing whether it reached the broker (the connection broke
	// after the command was sent) retries with the same key, safely.
	IdempotencyKey string
	// IdempotencyTTL is how long a key is remembered. Zero means 5 minutes.
	IdempotencyTTL time.Duration
	// Binary publishes data as binary data rather than JSON: it is
	// delivered, and kept in history, with Message.Binary set.
	Binary bool
	// Skip names a client that must not receive the message; it travels
	// with the message (Message.Skip) but is not kept in history.
	Skip string
}

// DefaultIdempotencyTTL is how long an idempotency key is remembered when
// PublishOptions.IdempotencyTTL is zero.
const DefaultIdempotencyTTL = 5 * time.Minute

// IdempotencyWindow returns how long o's key is remembered.
func (o PublishOptions) IdempotencyWindow() time.Duration {
	if o.IdempotencyTTL > 0 {
		return o.IdempotencyTTL
	}
	return DefaultIdempotencyTTL
}

// Handler receives the messages of the channels a broker is subscribed to.
//
// A broker calls HandleMessage for the messages of one channel one at a time
// and in the channel's order; messages of different channels may be handled
// concurrently. HandleMessage must not block: the node only queues the
// message for its local subscribers.
type Handler interface {
	HandleMessage(m Message)
}

// StateHandler may be implemented by the Handler given to Start, to learn
// when a broker that can lose its connection (Redis) lost its subscriptions
// and when it has them back. Messages published in between were not
// delivered to this node; a node can fill that gap from the history of the
// channels that keep one (HistoryRequest.Since).
//
// The broker calls SubscriptionsLost once when the subscriptions break and
// SubscriptionsRestored once every subscribed channel is subscribed again;
// messages of channels already restored may be handled before
// SubscriptionsRestored. Neither is called for the first connection. The
// calls must not block, and are never concurrent with each other.
type StateHandler interface {
	SubscriptionsLost(err error)
	SubscriptionsRestored()
}

// HandlerFunc adapts a function to the Handler interface.
type HandlerFunc func(m Message)

// HandleMessage calls f(m).
func (f HandlerFunc) HandleMessage(m Message) { f(m) }

// Broker moves messages between the nodes that share a channel.
type Broker interface {
	// Start connects the broker and registers h for every message of the
	// channels it will subscribe to. It is called once, before any other
	// method. The broker's goroutines run until Close. A broker that can
	// lose its connection (a Readier) need not fail when its backend
	// cannot be reached at Start: it may connect by itself later, failing
	// every call with ErrUnavailable until then, as Ready tells.
	Start(ctx context.Context, h Handler) error

	// Publish sends data, one JSON value (any bytes with opts.Binary), to
	// every node subscribed to the channel, this one included. A nil error means the broker has taken the
	// message; the error wraps ErrUnavailable when the broker cannot be
	// reached (see ErrUnavailable for when it may still have taken the
	// message). The returned
	// Position is zero when opts keep no history.
	Publish(ctx context.Context, channel string, data []byte, opts PublishOptions) (Position, error)

	// Subscribe makes the broker deliver the channels' messages to the
	// Handler. It returns once the subscription is live: a message published
	// after Subscribe returns is delivered. Subscribing to a channel that is
	// already subscribed is a no-op.
	Subscribe(ctx context.Context, channels ...string) error

	// Unsubscribe stops the delivery of the channels' messages.
	// Unsubscribing from a channel that is not subscribed is a no-op.
	Unsubscribe(ctx context.Context, channels ...string) error

	// Close stops the broker's goroutines and releases its connections. It
	// waits for them to end or for ctx to be done.
	Close(ctx context.Context) error
}

// Readier is implemented by brokers that can lose their connection. Ready
// returns nil while the broker can publish and deliver, and an error wrapping
// ErrUnavailable otherwise. A Broker that does not implement it is always
// ready.
type Readier interface {
	Ready() error
}

// Shard is one part of a broker's backend that can fail on its own: one
// Redis of several (--redis-shards), one primary of a Redis Cluster.
type Shard struct {
	// Name identifies the shard in logs, metrics and /readyz: its index
	// among the broker's shards, or its node's address.
	Name string
	// Addr is the address the broker reaches the shard at (never with a
	// password).
	Addr string
	// Err is nil while the shard can be reached, and otherwise why not
	// (wrapping ErrUnavailable).
	Err error
}

// ShardReadier is implemented by brokers whose backend is made of shards
// that fail independently. Their Ready fails only when no shard can be
// reached; ReadyFor tells whether the shard that owns a channel can, so
// that a node refuses only the publishes and subscribes that cannot
// succeed while the other channels keep working.
type ShardReadier interface {
	Readier
	// ReadyFor returns nil while the shard that owns channel can be
	// reached, and otherwise an error wrapping ErrUnavailable.
	ReadyFor(channel string) error
	// Shards returns the state of every shard, in a stable order.
	Shards() []Shard
}

// ChannelStateHandler may be implemented by the Handler given to Start, to
// learn that some channels lost their subscriptions and got them back (the
// shard that owns them went away, or a slot moved) while the broker's other
// channels kept theirs. It follows StateHandler's rules for those channels:
// ChannelsLost once when they break, ChannelsRestored once they are all
// subscribed again; the calls must not block and are never concurrent with
// each other or with StateHandler's. The slices are the handler's to keep.
type ChannelStateHandler interface {
	ChannelsLost(channels []string, err error)
	ChannelsRestored(channels []string)
}

// HistoryRequest selects messages from a channel's history.
type HistoryRequest struct {
	// Since, when not nil, asks for the messages after this position, oldest
	// first. When its epoch is not the channel's current one, or messages
	// after it have left the history, the result is not Recovered and has no
	// messages.
	Since *Position
	// Limit caps the number of messages returned. With Since it returns the
	// oldest Limit messages after Since (so a caller can page forward from
	// the last one); with Since nil, the newest Limit messages. Zero or less
	// returns none: only the current position, and with Since whether
	// nothing follows it.
	Limit int
}

// HistoryResult is a read of a channel's history.
type HistoryResult struct {
	// Pos is the channel's current position: the position of its newest
	// message, or offset 0 in the current epoch when it has none.
	Pos Position
	// Messages are the selected messages, oldest first.
	Messages []Message
	// Recovered is true when Since was given and every message after it is
	// in Messages: false when messages are missing or Limit left some out.
	Recovered bool
}

// Historian is implemented by brokers that keep channel history.
type Historian interface {
	// History reads a channel's history. A channel never published to has a
	// fresh epoch and offset 0.
	History(ctx context.Context, channel string, req HistoryRequest, opts PublishOptions) (HistoryResult, error)
}
