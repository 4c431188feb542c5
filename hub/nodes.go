package hub

import (
	"context"
	"encoding/json"
	"time"

	"github.com/switchboard-rt/switchboard/broker"
)

// nodesChannel is the presence in which every node announces itself: one
// entry per node, its info the node's figures. '#' is not allowed in
// channel names, so no client can subscribe to it or read it.
const nodesChannel = "#nodes"

// AnnounceNode sets this node's entry in the cluster's list of nodes to
// info, for ttl: a node that stops announcing (killed, cut off) drops out
// of Nodes when it expires. It also sweeps the expired entries of other
// nodes. Without a broker that keeps presence it does nothing: Nodes then
// knows only this node.
func (h *Hub) AnnounceNode(ctx context.Context, info json.RawMessage, ttl time.Duration) error {
	if h.pres == nil {
		return nil
	}
	e := broker.PresenceEntry{Client: h.cfg.NodeID, Info: info, Node: h.cfg.NodeID}
	if _, err := h.pres.SetPresence(ctx, nodesChannel, []broker.PresenceEntry{e}, ttl); err != nil {
		return err
	}
	_, err := h.pres.ExpirePresence(ctx, nodesChannel)
	return err
}

// WithdrawNode removes this node's entry at once, as it shuts down.
func (h *Hub) WithdrawNode(ctx context.Context) error {
	if h.pres == nil {
		return nil
	}
	_, err := h.pres.RemovePresence(ctx, nodesChannel, h.cfg.NodeID)
	return err
}

// Nodes returns the info of every node whose announcement has not
// expired, by node id. Without a broker that keeps presence it is nil.
func (h *Hub) Nodes(ctx context.Context) (map[string]json.RawMessage, error) {
	if h.pres == nil {
		return nil, nil
	}
	entries, err := h.pres.Presence(ctx, nodesChannel)
	if err != nil {
		return nil, h.seen("read the nodes", "", err)
	}
	out := make(map[string]json.RawMessage, len(entries))
	for _, e := range entries {
		out[e.Node] = e.Info
	}
	return out, nil
}
