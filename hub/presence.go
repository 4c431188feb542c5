package hub

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/protocol"
)

// eventSuffix names the broker channel that carries a channel's join and
// leave events: "chat:lobby" has "chat:lobby#events". '#' is not allowed in
// channel names, so it never collides with a client's channel.
const eventSuffix = "#events"

// occupancySuffix names the presence that counts a channel's subscribers
// across the cluster, for Occupancy: one entry per subscriber, all of one
// pseudo-user, so that the presence's member changes are the channel's
// occupied and vacated.
const occupancySuffix = "#occupancy"

// occupant is the pseudo-user of the occupancy presence.
const occupant = "occupied"

// observe tells Config.Observe an event.
func (h *Hub) observe(e Event) {
	if h.cfg.Observe != nil {
		h.cfg.Observe(e)
	}
}

// eventChannel returns the channel whose events a broker channel carries.
func eventChannel(brokerChannel string) (string, bool) {
	return strings.CutSuffix(brokerChannel, eventSuffix)
}

// brokerChannels returns the broker channels a channel with opts needs.
func brokerChannels(name string, opts NamespaceOptions) []string {
	if opts.JoinLeave || opts.Members && opts.Presence {
		return []string{name, name + eventSuffix}
	}
	return []string{name}
}

// presenceOp is a leave that the presence loop carries out: removing the
// entry and, with join/leave events, publishing the leave.
type presenceOp struct {
	channel string
	client  *Client
	user    string // the client's member in the channel, as it left
	info    json.RawMessage
	opts    NamespaceOptions
}

// entry is c's presence entry in channel.
func (h *Hub) entry(c *Client, channel string) broker.PresenceEntry {
	user, info := c.member(channel)
	return broker.PresenceEntry{Client: c.id, User: user, Info: info, Node: h.cfg.NodeID}
}

// joining is what recording a subscriber found: whether its user is a new
// member of the channel and whether the channel was empty cluster-wide.
type joining struct {
	member, occupied bool
}

// record writes c's presence entries in channel, as its namespace asks,
// before c's subscribe reply is queued. Errors are logged: the subscription
// stands, and the presence loop's next refresh repairs the entry.
func (h *Hub) record(ctx context.Context, c *Client, name string, opts NamespaceOptions) joining {
	var j joining
	if opts.Presence {
		joined, err := h.pres.SetPresence(ctx, name, []broker.PresenceEntry{h.entry(c, name)}, h.cfg.PresenceTTL)
		if err != nil {
			h.log.Warn("cannot set presence", "channel", name, "err", err)
		}
		j.member = len(joined) > 0
	}
	if opts.Occupancy {
		o := broker.PresenceEntry{Client: c.id, User: occupant, Node: h.cfg.NodeID}
		joined, err := h.pres.SetPresence(ctx, name+occupancySuffix, []broker.PresenceEntry{o}, h.cfg.PresenceTTL)
		if err != nil {
			h.log.Warn("cannot count the channel's occupancy", "channel", name, "err", err)
		}
		j.occupied = len(joined) > 0
	}
	return j
}

// unrecord removes the entries record wrote for a subscribe that failed.
func (h *Hub) unrecord(ctx context.Context, c *Client, name string, opts NamespaceOptions) {
	if opts.Presence {
		if _, err := h.pres.RemovePresence(ctx, name, c.id); err != nil {
			h.log.Debug("cannot remove presence", "channel", name, "err", err)
		}
	}
	if opts.Occupancy {
		if _, err := h.pres.RemovePresence(ctx, name+occupancySuffix, c.id); err != nil {
			h.log.Debug("cannot count the channel's occupancy", "channel", name, "err", err)
		}
	}
}

// announce publishes what c's joining channel changed, after its subscribe
// reply is queued: a new member, an occupied channel, a join.
func (h *Hub) announce(ctx context.Context, c *Client, name string, opts NamespaceOptions, j joining) {
	if opts.Members && j.member {
		// Not to the member's own client: it learns the members from its
		// subscribe reply.
		e := h.entry(c, name)
		added := Event{Op: "member_added", Channel: name, User: e.User, Info: e.Info, Skip: c.id}
		h.publishEvent(ctx, added)
		h.observe(added)
	}
	if j.occupied {
		h.observe(Event{Op: "occupied", Channel: name})
	}
	if opts.JoinLeave {
		e := h.entry(c, name)
		h.publishEvent(ctx, Event{Op: "join", Channel: name, Client: c.id, User: e.User, Info: e.Info})
	}
}

// left queues the presence work of c leaving channel; it never blocks. If
// the queue is full the entry expires by itself.
func (h *Hub) left(c *Client, name string) {
	opts := h.options(name)
	if !opts.Presence && !opts.JoinLeave && !opts.Occupancy {
		return
	}
	user, info := c.member(name)
	select {
	case h.presenceQ <- presenceOp{channel: name, client: c, user: user, info: info, opts: opts}:
	default:
		h.stats.presenceDropped.Add(1)
	}
}

// publishEvent publishes a presence event on its channel's event channel,
// for every node.
func (h *Hub) publishEvent(ctx context.Context, e Event) {
	b, err := json.Marshal(e)
	if err == nil {
		_, err = h.broker.Publish(ctx, e.Channel+eventSuffix, b, broker.PublishOptions{})
	}
	if err != nil {
		h.log.Debug("cannot publish presence event", "op", e.Op, "channel", e.Channel, "err", err)
	}
}

// handleEvent delivers a presence event to the subscribers of its channel,
// encoded once per dialect.
func (h *Hub) handleEvent(name string, m broker.Message) {
	var e Event
	if err := json.Unmarshal(m.Data, &e); err != nil || e.Channel != name {
		h.log.Warn("a presence event that is not one was dropped", "channel", name)
		return
	}
	sh := h.shard(name)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	ch := sh.channels[name]
	if ch == nil {
		return
	}
	var frames [maxDialects][]byte
	var done uint8
	for _, c := range ch.subs {
		if e.Skip != "" && (e.Skip == c.id || e.Skip == c.alias) {
			continue
		}
		if done&(1<<c.di) == 0 {
			frames[c.di] = c.dialect.EventFrame(e)
			done |= 1 << c.di
		}
		if f := frames[c.di]; f != nil {
			c.enqueue(f)
		}
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
			if op.opts.Presence {
				left, err := h.pres.RemovePresence(ctx, op.channel, op.client.id)
				if err != nil {
					h.log.Debug("cannot remove presence", "channel", op.channel, "err", err)
				}
				if op.opts.Members {
					h.membersLeft(ctx, op.channel, left)
				}
			}
			if op.opts.Occupancy {
				left, err := h.pres.RemovePresence(ctx, op.channel+occupancySuffix, op.client.id)
				if err != nil {
					h.log.Debug("cannot count the channel's occupancy", "channel", op.channel, "err", err)
				}
				h.vacated(op.channel, left)
			}
			if op.opts.JoinLeave {
				h.publishEvent(ctx, Event{Op: "leave", Channel: op.channel, Client: op.client.id, User: op.user, Info: op.info})
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
	if h.counter != nil {
		if err := h.counter.SetNodeChannels(ctx, h.cfg.NodeID, h.Channels(), h.cfg.PresenceTTL); err != nil {
			h.log.Debug("cannot set node channel counts", "err", err)
		}
	}
	if h.pres == nil {
		return
	}
	h.refreshOccupancy(ctx)
	for name, entries := range h.localPresence("") {
		opts := h.options(name)
		joined, err := h.pres.SetPresence(ctx, name, entries, h.cfg.PresenceTTL)
		if err != nil {
			h.log.Debug("cannot refresh presence", "channel", name, "err", err)
			continue
		}
		// The entries of dead nodes go; members who had only those leave.
		left, err := h.pres.ExpirePresence(ctx, name)
		if err != nil {
			h.log.Debug("cannot expire presence", "channel", name, "err", err)
		}
		if !opts.Members {
			continue
		}
		// A refresh that finds an entry gone (swept while this node could
		// not reach the broker) brings its member back.
		for _, u := range joined {
			for _, e := range entries {
				if e.User == u {
					added := Event{Op: "member_added", Channel: name, User: u, Info: e.Info}
					h.publishEvent(ctx, added)
					h.observe(added)
					break
				}
			}
		}
		h.membersLeft(ctx, name, left)
	}
}

// membersLeft announces the members who left channel.
func (h *Hub) membersLeft(ctx context.Context, channel string, users []string) {
	for _, u := range users {
		e := Event{Op: "member_removed", Channel: channel, User: u}
		h.publishEvent(ctx, e)
		h.observe(e)
	}
}

// vacated tells that channel lost its last subscriber, when the
// occupancy's member left.
func (h *Hub) vacated(channel string, left []string) {
	if len(left) > 0 {
		h.observe(Event{Op: "vacated", Channel: channel})
	}
}

// refreshOccupancy refreshes this node's entries in the occupancy of the
// channels that count it, and sweeps the dead nodes' entries.
func (h *Hub) refreshOccupancy(ctx context.Context) {
	for name, entries := range h.localPresence(occupancySuffix) {
		joined, err := h.pres.SetPresence(ctx, name+occupancySuffix, entries, h.cfg.PresenceTTL)
		if err != nil {
			h.log.Debug("cannot refresh the channel's occupancy", "channel", name, "err", err)
			continue
		}
		if len(joined) > 0 {
			h.observe(Event{Op: "occupied", Channel: name})
		}
		left, err := h.pres.ExpirePresence(ctx, name+occupancySuffix)
		if err != nil {
			h.log.Debug("cannot expire the channel's occupancy", "channel", name, "err", err)
		}
		h.vacated(name, left)
	}
}

// localPresence returns this node's entries of every channel whose
// namespace keeps presence, or, with the occupancy suffix, of every
// channel that counts its occupancy.
func (h *Hub) localPresence(suffix string) map[string][]broker.PresenceEntry {
	out := make(map[string][]broker.PresenceEntry)
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.RLock()
		for name, ch := range sh.channels {
			opts := h.options(name)
			if len(ch.subs) == 0 || suffix == "" && !opts.Presence || suffix == occupancySuffix && !opts.Occupancy {
				continue
			}
			es := make([]broker.PresenceEntry, len(ch.subs))
			for j, c := range ch.subs {
				if suffix == occupancySuffix {
					es[j] = broker.PresenceEntry{Client: c.id, User: occupant, Node: h.cfg.NodeID}
				} else {
					es[j] = h.entry(c, name)
				}
			}
			out[name] = es
		}
		sh.mu.RUnlock()
	}
	return out
}

// Presence returns who is in channel across the cluster. It fails with
// forbidden when the channel's namespace keeps no presence. It asks no
// Authorizer (Client.Presence does).
func (h *Hub) Presence(ctx context.Context, channel string) ([]broker.PresenceEntry, error) {
	if !h.options(channel).Presence || h.pres == nil {
		return nil, protocol.Errorf(protocol.CodeForbidden, "presence is not enabled for channel "+channel)
	}
	entries, err := h.pres.Presence(ctx, channel)
	return entries, h.seen("read presence", channel, err)
}

// ClusterChannels returns the subscriber count of every channel across the
// cluster, this node's counts fresh and the others' as they last reported
// them (at most PresenceTTL/3 old). Without a broker that sums across
// nodes it returns this node's counts.
func (h *Hub) ClusterChannels(ctx context.Context) (map[string]int, error) {
	local := h.Channels()
	if h.counter == nil {
		return local, nil
	}
	if err := h.counter.SetNodeChannels(ctx, h.cfg.NodeID, local, h.cfg.PresenceTTL); err != nil {
		return nil, h.seen("set the node's channel counts", "", err)
	}
	counts, err := h.counter.ClusterChannels(ctx)
	return counts, h.seen("read the cluster's channel counts", "", err)
}
