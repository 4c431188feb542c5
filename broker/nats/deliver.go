package nats

import (
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard-rt/switchboard/broker"
)

// gapWait is how long a channel holds messages that arrived ahead of a
// missing offset, waiting for it, before it delivers them anyway and
// leaves the gap to the node (which fills it from history).
const gapWait = 100 * time.Millisecond

// channelSub is one channel's subscription on this node. nats.go runs
// receive on one goroutine per subscription, so a channel's messages come
// one at a time; mu also serializes them with the gap timer and with end.
//
// A stream of nats-server 2.9 may republish a channel's messages out of
// their order now and then (measured here: about one in a thousand under
// concurrent publishers), so messages with history are put back in offset
// order: one that comes ahead of the next expected offset is held until
// the missing one arrives or gapWait passes.
type channelSub struct {
	b       *Broker
	channel string
	sub     *nats.Subscription // set before the channelSub is shared; read-only after

	mu    sync.Mutex
	ended bool                      // guarded by mu: deliver nothing more
	epoch string                    // guarded by mu: of the last delivered message
	next  uint64                    // guarded by mu: offset expected next; 0 takes any
	held  map[uint64]broker.Message // guarded by mu: arrived ahead of next
	timer *time.Timer               // guarded by mu: delivers held after gapWait
}

// receive is nats.go's callback for the channel's messages.
func (cs *channelSub) receive(m *nats.Msg) {
	msg := broker.Message{Channel: cs.channel, Data: m.Data}
	h := m.Header
	msg.Binary = h.Get(hdrBinary) == "1"
	msg.Skip = h.Get(hdrSkip)
	msg.Time, _ = strconv.ParseInt(h.Get(hdrTime), 10, 64)
	epoch := h.Get(hdrEpoch)
	off, err := strconv.ParseUint(h.Get(hdrOffset), 10, 64)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.ended {
		return
	}
	if epoch == "" || err != nil {
		cs.b.handler.HandleMessage(msg) // a channel without history
		return
	}
	if epoch != cs.epoch || cs.next == 0 {
		cs.release()
		cs.epoch, cs.next = epoch, off
	}
	if off == 0 {
		// An epoch's start (a History read made it), not a message.
		if cs.next == 0 {
			cs.next = 1
		}
		return
	}
	msg.Pos = broker.Position{Epoch: epoch, Offset: off}
	cs.b.hist.observe(h, epoch, off)
	switch {
	case off < cs.next: // delivered already, or given up on
	case off == cs.next:
		cs.b.handler.HandleMessage(msg)
		cs.next++
		for len(cs.held) > 0 {
			m, ok := cs.held[cs.next]
			if !ok {
				break
			}
			delete(cs.held, cs.next)
			cs.b.handler.HandleMessage(m)
			cs.next++
		}
		if len(cs.held) == 0 && cs.timer != nil {
			cs.timer.Stop()
			cs.timer = nil
		}
	default:
		if cs.held == nil {
			cs.held = make(map[uint64]broker.Message)
		}
		cs.held[off] = msg
		if cs.timer == nil {
			cs.timer = time.AfterFunc(gapWait, cs.gapTimeout)
		}
	}
}

// gapTimeout delivers what waited for a missing offset in vain.
func (cs *channelSub) gapTimeout() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.timer = nil
	if !cs.ended {
		cs.release()
	}
}

// release delivers the held messages in offset order and expects the one
// after them. Called with mu held.
func (cs *channelSub) release() {
	if len(cs.held) == 0 {
		return
	}
	offs := make([]uint64, 0, len(cs.held))
	for off := range cs.held {
		offs = append(offs, off)
	}
	slices.Sort(offs)
	for _, off := range offs {
		cs.b.handler.HandleMessage(cs.held[off])
	}
	cs.next = offs[len(offs)-1] + 1
	clear(cs.held)
	if cs.timer != nil {
		cs.timer.Stop()
		cs.timer = nil
	}
}

// reset delivers what is held and takes the next message as it comes.
func (cs *channelSub) reset() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.ended {
		return
	}
	cs.release()
	cs.next = 0
}

// end unsubscribes and waits for a message being handled: after it, none
// of the channel's messages is handled any more.
func (cs *channelSub) end() {
	_ = cs.sub.Unsubscribe() // fails only when the connection is closed: then nothing comes either
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.ended = true
	if cs.timer != nil {
		cs.timer.Stop()
		cs.timer = nil
	}
	cs.held = nil
}
