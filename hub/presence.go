package hub

import (
	"context"
	"strings"
	"time"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/protocol"
)

// eventSuffix names the broker channel that carries a channel's join and
// leave events: "chat:lobby" has "chat:lobby#events". '#' is not allowed in
// channel names, so it never collides with a client's channel.
const eventSuffix = "#events"

// brokerChannels returns the broker channels a channel with opts needs.
func brokerChannels(name string, opts NamespaceOptions) []string {
	if opts.JoinLeave {
		return []string{name, name + eventSuffix}
	}
	return []string{name}
}

// presenceOp is a leave that the presence loop carries out: removing the
// entry and, with join/leave events, publishing the leave.
type presenceOp struct {
	channel string
	client  string
	opts    NamespaceOptions
}

// joined records c in channel's presence and announces it, as its
// namespace asks. Errors are logged: the subscription stands, and the
// presence loop's next refresh repairs the entry.
func (h *Hub) joined(ctx context.Context, c *Client, name string, opts NamespaceOptions) {
	if opts.Presence {
		if p, ok := h.broker.(broker.Presencer); ok {
			e := broker.PresenceEntry{Client: c.id, Node: h.cfg.NodeID}
			if err := p.SetPresence(ctx, name, []broker.PresenceEntry{e}, h.cfg.PresenceTTL); err != nil {
				h.log.Warn("cannot set presence", "channel", name, "err", err)
			}
		}
	}
	if opts.JoinLeave {
		h.publishEvent(ctx, "join", name, c.id)
	}
}

// left queues the presence work of c leaving channel; it never blocks. If
// the queue is full the entry expires by itself.
func (h *Hub) left(c *Client, name string) {
	opts := h.options(name)
	if !opts.Presence && !opts.JoinLeave {
		return
	}
	select {
	case h.presenceQ <- presenceOp{channel: name, client: c.id, opts: opts}:
	default:
		h.stats.PresenceDropped.Add(1)
	}
}

// publishEvent publishes a join or leave event of client on channel's
// event channel; the frame is encoded here, once for every node.
func (h *Hub) publishEvent(ctx context.Context, op, channel, client string) {
	b := append([]byte(`{"op":"`), op...)
	b = append(b, `","channel":`...)
	b = protocol.AppendString(b, channel)
	b = append(b, `,"client":`...)
	b = protocol.AppendString(b, client)
	b = append(b, '}')
	if _, err := h.broker.Publish(ctx, channel+eventSuffix, b, broker.PublishOptions{}); err != nil {
		h.log.Debug("cannot publish presence event", "op", op, "channel", channel, "err", err)
	}
}

// handleEvent delivers a join or leave event to the native subscribers of
// its channel. The broker message's data is the event's JSON.
func (h *Hub) handleEvent(m broker.Message) {
	name := strings.TrimSuffix(m.Channel, eventSuffix)
	sh := h.shard(name)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	ch := sh.channels[name]
	if ch == nil {
		return
	}
	var f []byte
	for _, c := range ch.subs {
		if c.dialect != Native {
			continue
		}
		if f == nil {
			f = textFrame(m.Data)
		}
		c.enqueue(f)
	}
}

// presenceLoop carries out leaves and, every PresenceTTL/3, refreshes the
// presence entries of this node's clients and its channel counts, so that
// they outlive the TTL while the node lives and vanish when it dies. The
// hub owns it; it ends at Shutdown.
func (h *Hub) presenceLoop() {
	defer h.done.Done()
	t := time.NewTicker(h.cfg.PresenceTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case op := <-h.presenceQ:
			ctx, cancel := context.WithTimeout(context.Background(), h.cfg.RequestTimeout)
			if p, ok := h.broker.(broker.Presencer); ok && op.opts.Presence {
				if err := p.RemovePresence(ctx, op.channel, op.client); err != nil {
					h.log.Debug("cannot remove presence", "channel", op.channel, "err", err)
				}
			}
			if op.opts.JoinLeave {
				h.publishEvent(ctx, "leave", op.channel, op.client)
			}
			cancel()
		case <-t.C:
			h.refreshPresence()
		}
	}
}

// refreshPresence sets every local presence entry and the node's channel
// counts again.
func (h *Hub) refreshPresence() {
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.RequestTimeout)
	defer cancel()
	if nc, ok := h.broker.(broker.NodeCounter); ok {
		if err := nc.SetNodeChannels(ctx, h.cfg.NodeID, h.Channels(), h.cfg.PresenceTTL); err != nil {
			h.log.Debug("cannot set node channel counts", "err", err)
		}
	}
	p, ok := h.broker.(broker.Presencer)
	if !ok {
		return
	}
	for name, entries := range h.localPresence() {
		if err := p.SetPresence(ctx, name, entries, h.cfg.PresenceTTL); err != nil {
			h.log.Debug("cannot refresh presence", "channel", name, "err", err)
		}
	}
}

// localPresence returns this node's entries of every channel whose
// namespace keeps presence.
func (h *Hub) localPresence() map[string][]broker.PresenceEntry {
	out := make(map[string][]broker.PresenceEntry)
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.RLock()
		for name, ch := range sh.channels {
			if len(ch.subs) == 0 || !h.options(name).Presence {
				continue
			}
			es := make([]broker.PresenceEntry, len(ch.subs))
			for j, c := range ch.subs {
				es[j] = broker.PresenceEntry{Client: c.id, Node: h.cfg.NodeID}
			}
			out[name] = es
		}
		sh.mu.RUnlock()
	}
	return out
}

// Presence returns who is in channel across the cluster. It fails with
// forbidden when the channel's namespace keeps no presence.
func (h *Hub) Presence(ctx context.Context, channel string) ([]broker.PresenceEntry, error) {
	p, ok := h.broker.(broker.Presencer)
	if !h.options(channel).Presence || !ok {
		return nil, protocol.Errorf(protocol.CodeForbidden, "presence is not enabled for channel "+channel)
	}
	return p.Presence(ctx, channel)
}

// ClusterChannels returns the subscriber count of every channel across the
// cluster, this node's counts fresh and the others' as they last reported
// them (at most PresenceTTL/3 old). Without a broker that sums across
// nodes it returns this node's counts.
func (h *Hub) ClusterChannels(ctx context.Context) (map[string]int, error) {
	local := h.Channels()
	nc, ok := h.broker.(broker.NodeCounter)
	if !ok {
		return local, nil
	}
	if err := nc.SetNodeChannels(ctx, h.cfg.NodeID, local, h.cfg.PresenceTTL); err != nil {
		return nil, err
	}
	return nc.ClusterChannels(ctx)
}
