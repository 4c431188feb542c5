package memory

import (
	"context"
	"sync"
	"time"

	"github.com/switchboard-rt/switchboard/broker"
)

var (
	_ broker.Presencer   = (*Broker)(nil)
	_ broker.NodeCounter = (*Broker)(nil)
)

// presence holds the memory broker's presence and node counts. Expired
// entries are dropped when read and by the janitor.
type presence struct {
	mu       sync.Mutex
	channels map[string]map[string]presenceEntry // guarded by mu
	nodes    map[string]nodeCounts               // guarded by mu
}

type presenceEntry struct {
	broker.PresenceEntry
	expires time.Time
}

type nodeCounts struct {
	counts  map[string]int
	expires time.Time
}

// SetPresence adds or refreshes entries of channel.
func (b *Broker) SetPresence(ctx context.Context, channel string, entries []broker.PresenceEntry, ttl time.Duration) error {
	if b.closed.Load() {
		return broker.ErrClosed
	}
	p := &b.presence
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.channels == nil {
		p.channels = make(map[string]map[string]presenceEntry)
	}
	ch := p.channels[channel]
	if ch == nil {
		ch = make(map[string]presenceEntry)
		p.channels[channel] = ch
	}
	exp := time.Now().Add(ttl)
	for _, e := range entries {
		ch[e.Client] = presenceEntry{e, exp}
	}
	return nil
}

// RemovePresence removes clients from channel.
func (b *Broker) RemovePresence(ctx context.Context, channel string, clients ...string) error {
	if b.closed.Load() {
		return broker.ErrClosed
	}
	p := &b.presence
	p.mu.Lock()
	defer p.mu.Unlock()
	ch := p.channels[channel]
	for _, c := range clients {
		delete(ch, c)
	}
	if len(ch) == 0 {
		delete(p.channels, channel)
	}
	return nil
}

// Presence returns channel's unexpired entries.
func (b *Broker) Presence(ctx context.Context, channel string) ([]broker.PresenceEntry, error) {
	if b.closed.Load() {
		return nil, broker.ErrClosed
	}
	p := &b.presence
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	var out []broker.PresenceEntry
	for id, e := range p.channels[channel] {
		if now.After(e.expires) {
			delete(p.channels[channel], id)
			continue
		}
		out = append(out, e.PresenceEntry)
	}
	return out, nil
}

// SetNodeChannels replaces node's channel counts.
func (b *Broker) SetNodeChannels(ctx context.Context, node string, counts map[string]int, ttl time.Duration) error {
	if b.closed.Load() {
		return broker.ErrClosed
	}
	p := &b.presence
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.nodes == nil {
		p.nodes = make(map[string]nodeCounts)
	}
	p.nodes[node] = nodeCounts{counts, time.Now().Add(ttl)}
	return nil
}

// ClusterChannels sums the live nodes' counts.
func (b *Broker) ClusterChannels(ctx context.Context) (map[string]int, error) {
	if b.closed.Load() {
		return nil, broker.ErrClosed
	}
	p := &b.presence
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	out := make(map[string]int)
	for node, nc := range p.nodes {
		if now.After(nc.expires) {
			delete(p.nodes, node)
			continue
		}
		for ch, n := range nc.counts {
			out[ch] += n
		}
	}
	return out, nil
}

// sweep drops expired entries; the janitor calls it.
func (p *presence) sweep(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for name, ch := range p.channels {
		for id, e := range ch {
			if now.After(e.expires) {
				delete(ch, id)
			}
		}
		if len(ch) == 0 {
			delete(p.channels, name)
		}
	}
}
