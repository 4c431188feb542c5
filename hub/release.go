package hub

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/internal/shrink"
)

// releaser unsubscribes the broker from channels that have had no local
// subscriber for Config.UnsubscribeDelay. It is one goroutine for the whole
// hub, not a timer per channel: when a thousand clients in 128 channels each
// leave at once, the releases are one queue and a broker call per batch, not
// 128,000 goroutines (whose descriptors the runtime never frees).
//
// The queue is in due order because the delay is the same for every
// channel. A channel that gets a subscriber again before its due time keeps
// its broker subscription: its channel.releaseAt no longer matches the
// queued entry, which is then skipped.
type releaser struct {
	mu    sync.Mutex
	queue []release // guarded by mu; due order, from head
	head  int       // guarded by mu
	wake  chan struct{}
}

// release is a channel due for release at due (monotime).
type release struct {
	name string
	due  int64
}

// scheduleReleaseLocked queues the release of ch, which just lost its last local
// subscriber. The shard's lock must be held.
func (h *Hub) scheduleReleaseLocked(name string, ch *channel) {
	if ch.releaseAt != 0 {
		return
	}
	ch.releaseAt = monotime() + int64(h.cfg.UnsubscribeDelay)
	r := &h.releases
	r.mu.Lock()
	r.queue = append(r.queue, release{name: name, due: ch.releaseAt})
	first := len(r.queue)-r.head == 1
	r.mu.Unlock()
	if first {
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
}

// takeDue takes the entries due by now; next is when the first remaining one
// is due (0 when none is).
func (r *releaser) takeDue(now int64) (due []release, next int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := r.head
	for i < len(r.queue) && r.queue[i].due <= now {
		i++
	}
	due = append(due, r.queue[r.head:i]...)
	clear(r.queue[r.head:i])
	r.head = i
	switch {
	case r.head == len(r.queue):
		if cap(r.queue) > 1024 {
			r.queue = nil // let a burst's array go
		} else {
			r.queue = r.queue[:0]
		}
		r.head = 0
	case r.head > len(r.queue)/2:
		n := copy(r.queue, r.queue[r.head:])
		clear(r.queue[n:])
		r.queue, r.head = r.queue[:n], 0
	}
	if r.head < len(r.queue) {
		next = r.queue[r.head].due
	}
	return due, next
}

// releaseLoop releases channels as they come due. The hub owns it; it ends
// at Shutdown, after which the broker's Close drops every subscription.
func (h *Hub) releaseLoop() {
	defer h.done.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		due, next := h.releases.takeDue(monotime())
		if len(due) > 0 {
			h.release(due)
			continue
		}
		wait := time.Hour
		if next != 0 {
			wait = time.Duration(next - monotime())
		}
		t.Reset(max(wait, 0))
		select {
		case <-h.stop:
			return
		case <-h.releases.wake:
		case <-t.C:
		}
	}
}

// release forgets the channels of due that still have no subscriber and
// unsubscribes the broker from them: one call per stripe, under that
// stripe's lock, so that no subscribe of the same channels runs meanwhile.
func (h *Hub) release(due []release) {
	var byStripe [numSubLocks][]release
	for _, r := range due {
		i := h.stripe(r.name)
		byStripe[i] = append(byStripe[i], r)
	}
	touched := make(map[*shard]bool)
	for i := range byStripe {
		if len(byStripe[i]) == 0 {
			continue
		}
		h.subLocks[i].Lock()
		var names []string
		for _, r := range byStripe[i] {
			sh := h.shard(r.name)
			sh.mu.Lock()
			ch := sh.channels[r.name]
			switch {
			case ch == nil || ch.releaseAt != r.due:
				// Subscribed again since, or already released.
			case len(ch.subs) > 0 || len(ch.pending) > 0:
				// A subscribe is under way: it reschedules the
				// release if it fails.
				ch.releaseAt = 0
			default:
				delete(sh.channels, r.name)
				touched[sh] = true
				if ch.brokerSubscribed {
					h.stats.brokerChannels.Add(-1)
					names = append(names, brokerChannels(r.name, h.options(r.name))...)
				}
			}
			sh.mu.Unlock()
		}
		if len(names) > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), h.cfg.RequestTimeout)
			if err := h.broker.Unsubscribe(ctx, names...); err != nil && !errors.Is(err, broker.ErrClosed) {
				h.log.Warn("broker unsubscribe failed", "channels", len(names), "first", names[0], "err", err)
			}
			cancel()
		}
		h.subLocks[i].Unlock()
	}
	for sh := range touched {
		sh.shrink()
	}
}

// shrink rebuilds the shard's channel map once it holds a quarter of what
// it once held (shrink.Map).
func (sh *shard) shrink() {
	sh.mu.Lock()
	sh.channels = shrink.Map(sh.channels, &sh.peak)
	sh.mu.Unlock()
}
