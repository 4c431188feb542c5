package broker

import (
	"context"
	"encoding/json"
	"time"
)

// PresenceEntry is one client in a channel's presence.
type PresenceEntry struct {
	// Client is the client's id, unique across the cluster.
	Client string `json:"client"`
	// User is the authenticated user behind the client; empty when the
	// connection carries none.
	User string `json:"user,omitempty"`
	// Info is what the user's token says about them (a JSON object), to
	// show with them; nil when there is none.
	Info json.RawMessage `json:"info,omitempty"`
	// Node is the id of the node the client is connected to.
	Node string `json:"node"`
}

// Presencer is implemented by brokers that keep who is in each channel,
// across every node that shares the broker. An entry expires unless the
// node that set it refreshes it within its ttl, so the clients of a node
// that dies disappear by themselves.
//
// A Presencer also counts users: a user (non-empty PresenceEntry.User) is a
// member of a channel while at least one entry of theirs is there, on any
// node. The calls that add and remove entries say which users became and
// stopped being members, each change to exactly one caller, so that the
// nodes together announce each member's arrival and departure once.
type Presencer interface {
	// SetPresence adds entries to channel, or refreshes them; each expires
	// ttl after this call unless set again. It returns the users who had
	// no entry in the channel before: the new members.
	SetPresence(ctx context.Context, channel string, entries []PresenceEntry, ttl time.Duration) (joined []string, err error)
	// RemovePresence removes clients from channel's presence and returns
	// the users left with no entry: the members who left.
	RemovePresence(ctx context.Context, channel string, clients ...string) (left []string, err error)
	// ExpirePresence removes channel's expired entries (those of dead
	// nodes) and returns the users left with no entry.
	ExpirePresence(ctx context.Context, channel string) (left []string, err error)
	// Presence returns channel's unexpired entries, in no set order.
	Presence(ctx context.Context, channel string) ([]PresenceEntry, error)
}

// NodeCounter is implemented by brokers that can sum, across nodes, how
// many clients each channel has.
type NodeCounter interface {
	// SetNodeChannels replaces node's subscriber counts per channel; they
	// expire ttl after this call unless set again.
	SetNodeChannels(ctx context.Context, node string, counts map[string]int, ttl time.Duration) error
	// ClusterChannels returns the sum of every live node's counts.
	ClusterChannels(ctx context.Context) (map[string]int, error)
}
