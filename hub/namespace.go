package hub

import (
	"fmt"
	"maps"
	"strconv"
	"time"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/protocol"
)

// NamespaceOptions are the settings of the channels of one namespace (the
// part of a channel's name before its first ':').
type NamespaceOptions struct {
	// HistorySize is how many messages each channel keeps for history and
	// recovery. Zero keeps none: delivery is then at-most-once across
	// faults.
	HistorySize int
	// HistoryTTL is how long a channel's history lives after its last
	// publish. Zero means DefaultHistoryTTL.
	HistoryTTL time.Duration
	// ReadOnly forbids clients to publish; the HTTP API still may. It is
	// Publish: RuleAPI, kept for the configuration files that say it.
	ReadOnly bool
	// Subscribe and Publish are who may subscribe to (and read the
	// history and presence of) the namespace's channels, and publish on
	// them; RuleDefault takes Config.DefaultRule.
	Subscribe, Publish Rule
	// Presence keeps who is in each channel, across the cluster, for the
	// presence request and GET /api/presence.
	Presence bool
	// JoinLeave sends join and leave events to a channel's subscribers
	// when a client subscribes or leaves.
	JoinLeave bool
	// Members, with Presence, sends member_added when a user's first
	// client joins a channel, on any node, and member_removed when the
	// last leaves (or its node dies): presence counted by user.
	Members bool
	// Occupancy tells Config.Observe, once for the whole cluster, when a
	// channel gets its first subscriber on any node ("occupied") and
	// loses its last ("vacated"; also when the nodes holding them die).
	Occupancy bool
}

func (o NamespaceOptions) publishOptions() broker.PublishOptions {
	return broker.PublishOptions{HistorySize: o.HistorySize, HistoryTTL: o.HistoryTTL}
}

// namespaces is one immutable set of namespace options; the hub swaps the
// whole set when it changes (SetNamespaces), so a request reads a
// consistent set without a lock.
type namespaces struct {
	def   NamespaceOptions
	named map[string]NamespaceOptions
}

func (ns *namespaces) clone() map[string]NamespaceOptions { return maps.Clone(ns.named) }

// SetNamespaces replaces the options of the default namespace and of the
// named ones; requests from then on follow them. It fails, changing
// nothing, when a name is not a valid namespace or the broker cannot do
// what the options ask.
func (h *Hub) SetNamespaces(def NamespaceOptions, named map[string]NamespaceOptions) error {
	if err := h.needs("default", def); err != nil {
		return err
	}
	if err := checkRules(def); err != nil {
		return err
	}
	for name, o := range named {
		if protocol.ValidateChannel(name) != nil || protocol.Namespace(name+":x") != name {
			return &NamespaceError{Name: name}
		}
		if err := h.needs(name, o); err != nil {
			return err
		}
		if err := checkRules(o); err != nil {
			return fmt.Errorf("namespace %q: %w", name, err)
		}
	}
	h.ns.Store(&namespaces{def: def, named: maps.Clone(named)})
	return nil
}

// NamespaceError is a namespace name that cannot be one.
type NamespaceError struct{ Name string }

func (e *NamespaceError) Error() string {
	return "hub: " + strconv.Quote(e.Name) + " is not a valid namespace name (1 to 200 of A-Z a-z 0-9 _ - = @ , . ; without ':')"
}

// options returns the options of channel's namespace: its own, or the
// default namespace's.
func (h *Hub) options(channel string) NamespaceOptions {
	ns := h.ns.Load()
	o := ns.def
	if len(ns.named) > 0 {
		if named, ok := ns.named[protocol.Namespace(channel)]; ok {
			o = named
		}
	}
	if h.cfg.ChannelOptions != nil {
		o = h.cfg.ChannelOptions(channel, o)
	}
	return o
}

// checkRules checks that o's rules are rules.
func checkRules(o NamespaceOptions) error {
	if o.Subscribe != RuleDefault {
		if _, err := ParseRule(string(o.Subscribe), false); err != nil {
			return err
		}
	}
	if o.Publish != RuleDefault {
		if _, err := ParseRule(string(o.Publish), true); err != nil {
			return err
		}
	}
	return nil
}
