package hub

import (
	"encoding/json"
	"time"

	"github.com/switchboard-rt/switchboard/protocol"
)

// Identity is who a client is. The zero Identity is an anonymous client.
type Identity struct {
	// User is the authenticated user; empty for an anonymous client.
	User string
	// Info is shown with the user in presence; a JSON object or nil.
	Info json.RawMessage
	// Channels and Publish are the channel patterns (an exact name, or a
	// prefix ending in "*") the user's token grants for subscribing and
	// publishing.
	Channels, Publish []string
	// Expires is when the user's token expires; zero when it does not.
	Expires time.Time
}

// Action is what a client asks to do with a channel.
type Action uint8

// The actions a client asks the Authorizer about.
const (
	ActionSubscribe Action = iota
	ActionPublish
	ActionHistory
	ActionPresence
)

func (a Action) String() string {
	switch a {
	case ActionSubscribe:
		return "subscribe"
	case ActionPublish:
		return "publish"
	case ActionHistory:
		return "history"
	case ActionPresence:
		return "presence"
	}
	return "unknown"
}

// Authorizer decides whether a client may act on a channel. The hub asks
// it on every client request, not once at connect, so a rule changed (or
// a token that expired) takes effect at once. The HTTP API is not a client
// and is not asked.
//
// Authorize returns nil to allow, or an error the client is told: a
// *protocol.Error with CodeUnauthorized or CodeForbidden. It must be safe
// for concurrent use and must not block.
type Authorizer interface {
	Authorize(id *Identity, a Action, channel string) error
}

// AuthorizerFunc adapts a function to the Authorizer interface.
type AuthorizerFunc func(id *Identity, a Action, channel string) error

// Authorize calls f.
func (f AuthorizerFunc) Authorize(id *Identity, a Action, channel string) error {
	return f(id, a, channel)
}

// namespaceRules is the default Authorizer: the namespace options decide
// (a read-only namespace takes no client publishes).
type namespaceRules struct{ h *Hub }

func (r namespaceRules) Authorize(_ *Identity, a Action, channel string) error {
	if a == ActionPublish && r.h.options(channel).ReadOnly {
		return protocol.Errorf(protocol.CodeForbidden, "clients may not publish to "+channel)
	}
	return nil
}
