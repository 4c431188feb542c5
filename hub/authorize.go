package hub

import (
	"encoding/json"
	"fmt"
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

// Rule says who may subscribe to, or publish on, the channels of a
// namespace (NamespaceOptions.Subscribe and Publish).
type Rule string

// The rules.
const (
	// RuleDefault (empty) takes Config.DefaultRule.
	RuleDefault Rule = ""
	// RulePublic lets anyone, with a token or without.
	RulePublic Rule = "public"
	// RuleAuthenticated lets any client with a valid connection token.
	RuleAuthenticated Rule = "authenticated"
	// RuleGranted lets a client whose connection token grants the channel
	// (its channels or publish patterns), or that gave a subscription
	// token for it.
	RuleGranted Rule = "granted"
	// RuleAPI, for publishing only, lets no client: only the HTTP API (and
	// the program embedding the node) publishes.
	RuleAPI Rule = "api"
)

// ParseRule returns the rule s names; api is a publish rule only.
func ParseRule(s string, publish bool) (Rule, error) {
	switch r := Rule(s); r {
	case RulePublic, RuleAuthenticated, RuleGranted:
		return r, nil
	case RuleAPI:
		if publish {
			return r, nil
		}
	}
	if publish {
		return "", fmt.Errorf("hub: %q is not a publish rule: want public, authenticated, granted or api", s)
	}
	return "", fmt.Errorf("hub: %q is not a subscribe rule: want public, authenticated or granted", s)
}

// namespaceRules is the default Authorizer: each namespace's Subscribe and
// Publish rules decide (Config.DefaultRule where a namespace has none); a
// read-only namespace's publish rule is api. History and presence follow
// the subscribe rule.
type namespaceRules struct{ h *Hub }

func (r namespaceRules) Authorize(id *Identity, a Action, channel string) error {
	o := r.h.options(channel)
	rule, patterns, verb := o.Subscribe, id.Channels, "subscribe to"
	if a == ActionPublish {
		rule, patterns, verb = o.Publish, id.Publish, "publish to"
		if o.ReadOnly {
			rule = RuleAPI
		}
	}
	if rule == RuleDefault {
		rule = r.h.cfg.DefaultRule
	}
	switch rule {
	case RuleAuthenticated:
		if id.User == "" {
			return protocol.Errorf(protocol.CodeUnauthorized, "a valid token is needed to "+verb+" "+channel)
		}
	case RuleGranted:
		if id.User == "" {
			return protocol.Errorf(protocol.CodeUnauthorized, "a valid token is needed to "+verb+" "+channel)
		}
		if !protocol.MatchChannel(patterns, channel) {
			return protocol.Errorf(protocol.CodeForbidden, "the token does not grant "+a.String()+" on "+channel)
		}
	case RuleAPI:
		return protocol.Errorf(protocol.CodeForbidden, "clients may not publish to "+channel)
	}
	return nil
}
