package hub

import (
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
	// publish. Zero means 24 hours.
	HistoryTTL time.Duration
	// ReadOnly forbids clients to publish; the HTTP API still may.
	ReadOnly bool
	// Presence keeps who is in each channel, across the cluster, for the
	// presence request and GET /api/presence.
	Presence bool
	// JoinLeave sends join and leave events to a channel's native
	// subscribers when a client subscribes or leaves.
	JoinLeave bool
}

func (o NamespaceOptions) publishOptions() broker.PublishOptions {
	return broker.PublishOptions{HistorySize: o.HistorySize, HistoryTTL: o.HistoryTTL}
}

// options returns the options of channel's namespace: its own, or the
// default namespace's.
func (h *Hub) options(channel string) NamespaceOptions {
	if len(h.cfg.Namespaces) > 0 {
		if o, ok := h.cfg.Namespaces[protocol.Namespace(channel)]; ok {
			return o
		}
	}
	return h.cfg.Default
}
