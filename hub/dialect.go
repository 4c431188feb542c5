package hub

import (
	"encoding/json"
	"sync"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/wsframe"
)

// Dialect is how one kind of client speaks: how the hub's messages and
// events are encoded for it, and how what it sends is understood. The raw,
// native and Pusher dialects are packages of their own that implement it on
// the hub's public verbs (Client.Subscribe, Client.Publish...); the hub
// knows none of them.
//
// A Dialect is shared by all its clients and must be safe for concurrent
// use; its per-connection state lives in Client.Data.
type Dialect interface {
	// Name names the dialect in logs and metrics ("raw", "native").
	Name() string
	// MessageFrame encodes m as the WebSocket frame this dialect's
	// subscribers receive. The hub calls it once per message for all of
	// them and shares the result, which must not be modified afterwards.
	// nil means the dialect's clients do not receive m.
	MessageFrame(m broker.Message) []byte
	// EventFrame encodes a presence event the same way; nil when the
	// dialect does not show it.
	EventFrame(e Event) []byte
	// GoingAway returns the close code and reason this dialect's clients
	// receive when the node shuts down: the one that makes them reconnect
	// to another node.
	GoingAway() (code int, reason string)
	// HandleText and HandleBinary handle one complete message a client
	// sent. They are called by the client's reader, one at a time, and
	// return once the message is dealt with, so that replies keep the
	// order of requests.
	HandleText(c *Client, payload []byte)
	HandleBinary(c *Client, payload []byte)
}

// ClosedNotifier may be implemented by a Dialect that keeps count of its
// connections: ClientClosed is called once for each of its clients, when
// the client is finished.
type ClosedNotifier interface {
	ClientClosed(c *Client)
}

// Event is what the hub tells clients beside messages: a channel's join
// and leave events (which cross the broker as this JSON), and the
// unsubscribed event of a subscription the server ended.
type Event struct {
	Op      string          `json:"op"` // "join", "leave" or "unsubscribed"
	Channel string          `json:"channel"`
	Client  string          `json:"client,omitempty"`
	User    string          `json:"user,omitempty"`
	Info    json.RawMessage `json:"info,omitempty"`
	Reason  string          `json:"reason,omitempty"` // unsubscribed only
	// Skip names a client (id or alias) that must not get the event: the
	// member whose arrival it announces, say.
	Skip string `json:"skip,omitempty"`
}

// maxDialects is how many dialects one hub serves; fan-out keeps one
// encoded frame per dialect on the stack.
const maxDialects = 8

// dialects numbers the dialects a hub has seen, so that a client carries
// its dialect's index and fan-out finds the frame of its dialect in an
// array.
type dialects struct {
	mu   sync.Mutex
	list []Dialect // guarded by mu; append-only
}

// index returns d's index, registering d on first use. ok is false when
// the hub already serves maxDialects others.
func (ds *dialects) index(d Dialect) (i uint8, ok bool) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	for i, known := range ds.list {
		if known == d {
			return uint8(i), true
		}
	}
	if len(ds.list) == maxDialects {
		return 0, false
	}
	ds.list = append(ds.list, d)
	return uint8(len(ds.list) - 1), true
}

// frameCache holds one message's frame for each dialect and compression,
// made on first need: a fan-out encodes a message once per dialect, and
// compresses that frame once per compression its subscribers negotiated,
// whatever the number of subscribers.
type frameCache struct {
	frames [numCompressions][maxDialects][]byte
	done   [numCompressions]uint8 // bit i: frames[·][i] is made (it may be nil)
}

// frame returns c's frame of m: its dialect's, compressed as c negotiated.
func (fc *frameCache) frame(c *Client, m *broker.Message) []byte {
	bit := uint8(1) << c.di
	if fc.done[Uncompressed]&bit == 0 {
		fc.frames[Uncompressed][c.di] = c.dialect.MessageFrame(*m)
		fc.done[Uncompressed] |= bit
	}
	plain := fc.frames[Uncompressed][c.di]
	comp := c.Compression()
	if comp == Uncompressed || plain == nil {
		return plain
	}
	if fc.done[comp]&bit == 0 {
		fc.frames[comp][c.di] = wsframe.Deflate(plain, comp.level())
		fc.done[comp] |= bit
		c.hub.stats.messagesDeflated.Add(1)
	}
	return fc.frames[comp][c.di]
}
