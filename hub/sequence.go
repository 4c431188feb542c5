package hub

import (
	"context"

	"github.com/switchboard-rt/switchboard/broker"
)

// sequenceLocked delivers a message of a channel with history in offset
// order. A message already delivered (offset not above the last one) is
// dropped. A jump in offsets means this node missed messages (its broker
// subscription dropped and came back): the newer messages are held back
// while a goroutine reads the missing ones from history, so local
// subscribers still see no gap. A new epoch restarts the sequence; clients
// see the epoch change on the message. The shard's write lock must be held.
func (h *Hub) sequenceLocked(name string, ch *channel, m broker.Message) {
	if ch.filling {
		ch.held = append(ch.held, m)
		return
	}
	last := ch.last
	if last.Epoch == m.Pos.Epoch {
		switch {
		case m.Pos.Offset <= last.Offset:
			h.stats.duplicatesDropped.Add(1)
			return
		case m.Pos.Offset > last.Offset+1 && last.Offset > 0:
			ch.filling = true
			ch.held = append(ch.held[:0], m)
			h.bg.Add(1)
			go h.fillGap(name, last)
			return
		}
	}
	ch.last = m.Pos
	h.deliverLocked(ch, m)
}

// fillGap reads the messages after from and delivers them, then the
// messages held meanwhile. When history no longer has them, the gap is
// counted and logged and delivery goes on: a client recovering from its own
// position will then learn of it (recovered:false). It runs on its own
// goroutine, counted in h.bg.
func (h *Hub) fillGap(name string, from broker.Position) {
	defer h.bg.Done()
	var msgs []broker.Message
	filled := false
	if h.hist != nil {
		opts := h.options(name)
		ctx, cancel := context.WithTimeout(context.Background(), h.cfg.RequestTimeout)
		res, err := h.hist.History(ctx, name, broker.HistoryRequest{Since: &from, Limit: opts.HistorySize}, opts.publishOptions())
		cancel()
		switch {
		case err != nil:
			h.log.Warn("cannot fill a gap from history", "channel", name, "after", from.Offset, "err", err)
		case !res.Recovered:
			h.log.Warn("gap is no longer in history", "channel", name, "after", from.Offset, "now", res.Pos.Offset)
		default:
			msgs, filled = res.Messages, true
			if len(msgs) > 0 {
				h.stats.gapsFilled.Add(1)
			}
		}
	}
	sh := h.shard(name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	ch := sh.channels[name]
	if ch == nil {
		return
	}
	held := ch.held
	ch.held, ch.filling = nil, false
	if !filled && len(held) > 0 && held[0].Pos.Epoch == ch.last.Epoch {
		// Unfillable: accept the jump.
		h.stats.gapsLost.Add(1)
		ch.last.Offset = held[0].Pos.Offset - 1
	}
	for _, m := range msgs {
		h.sequenceLocked(name, ch, m)
	}
	for _, m := range held {
		h.sequenceLocked(name, ch, m)
	}
}

// SubscriptionsLost is called by a broker that lost its subscriptions
// (broker.StateHandler): messages published from now on may miss this node
// until SubscriptionsRestored.
func (h *Hub) SubscriptionsLost(err error) {
	h.log.Warn("broker subscriptions lost; clients stay connected", "err", err)
}

// SubscriptionsRestored is called once the broker has every channel
// subscribed again. Each channel with history then checks its history for
// messages this node missed meanwhile and delivers them before newer ones,
// without waiting for the next message to reveal the gap. At most
// restoreFills history reads run at once.
func (h *Hub) SubscriptionsRestored() {
	n := h.fillChannels(nil)
	h.log.Info("broker subscriptions restored", "channels_with_history", n)
}

// ChannelsLost is called by a sharded broker when some channels lost their
// subscriptions (broker.ChannelStateHandler): their messages may miss this
// node until ChannelsRestored.
func (h *Hub) ChannelsLost(channels []string, err error) {
	h.log.Warn("broker subscriptions lost for some channels; clients stay connected", "channels", len(channels), "err", err)
}

// ChannelsRestored is called once a sharded broker has the channels
// subscribed again; those with history fill their gap as after
// SubscriptionsRestored.
func (h *Hub) ChannelsRestored(channels []string) {
	only := make(map[string]struct{}, len(channels))
	for _, c := range channels {
		only[c] = struct{}{}
	}
	n := h.fillChannels(only)
	h.log.Info("broker subscriptions restored for some channels", "channels", len(channels), "channels_with_history", n)
}

// fillChannels starts filling, from history, the gap of every channel with
// history (of those in only, when not nil) and returns how many it started.
func (h *Hub) fillChannels(only map[string]struct{}) int {
	var names []string
	var froms []broker.Position
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		for name, ch := range sh.channels {
			if only != nil {
				if _, ok := only[name]; !ok {
					continue
				}
			}
			if ch.last.Epoch != "" && !ch.filling {
				ch.filling = true
				names = append(names, name)
				froms = append(froms, ch.last)
			}
		}
		sh.mu.Unlock()
	}
	if len(names) == 0 {
		return 0
	}
	h.bg.Add(len(names))
	go func() {
		sem := make(chan struct{}, restoreFills)
		for i, name := range names {
			sem <- struct{}{}
			go func() {
				defer func() { <-sem }()
				h.fillGap(name, froms[i])
			}()
		}
	}()
	return len(names)
}

// restoreFills bounds the history reads after the broker's subscriptions
// come back.
const restoreFills = 16
