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
// entries stay until ExpirePresence removes them (reads skip them), so
// that each departure they make is reported once.
type presence struct {
	mu       sync.Mutex
	channels map[string]*presenceChannel // guarded by mu
	nodes    map[string]nodeCounts       // guarded by mu
}

// presenceChannel is one channel's entries and the count of each user's.
type presenceChannel struct {
	entries map[string]presenceEntry
	users   map[string]int
}

type presenceEntry struct {
	broker.PresenceEntry
	expires time.Time
}

type nodeCounts struct {
	counts  map[string]int
	expires time.Time
}

// channel returns channel's presence, made when create is set (nil
// otherwise when it has none). p.mu must be held.
func (p *presence) channel(name string, create bool) *presenceChannel {
	ch := p.channels[name]
	if ch == nil && create {
		if p.channels == nil {
			p.channels = make(map[string]*presenceChannel)
		}
		ch = &presenceChannel{entries: make(map[string]presenceEntry), users: make(map[string]int)}
		p.channels[name] = ch
	}
	return ch
}

// remove drops client's entry and reports the user it leaves with none.
// p.mu must be held.
func (p *presence) remove(name string, ch *presenceChannel, client string, left []string) []string {
	e, ok := ch.entries[client]
	if !ok {
		return left
	}
	delete(ch.entries, client)
	if u := e.User; u != "" {
		if ch.users[u]--; ch.users[u] <= 0 {
			delete(ch.users, u)
			left = append(left, u)
		}
	}
	if len(ch.entries) == 0 {
		delete(p.channels, name)
	}
	return left
}

// SetPresence adds or refreshes entries of channel.
func (b *Broker) SetPresence(ctx context.Context, channel string, entries []broker.PresenceEntry, ttl time.Duration) ([]string, error) {
	if b.closed.Load() {
		return nil, broker.ErrClosed
	}
	p := &b.presence
	p.mu.Lock()
	defer p.mu.Unlock()
	ch := p.channel(channel, true)
	exp := time.Now().Add(ttl)
	var joined []string
	for _, e := range entries {
		if _, known := ch.entries[e.Client]; !known && e.User != "" {
			if ch.users[e.User]++; ch.users[e.User] == 1 {
				joined = append(joined, e.User)
			}
		}
		ch.entries[e.Client] = presenceEntry{e, exp}
	}
	return joined, nil
}

// RemovePresence removes clients from channel.
func (b *Broker) RemovePresence(ctx context.Context, channel string, clients ...string) ([]string, error) {
	if b.closed.Load() {
		return nil, broker.ErrClosed
	}
	p := &b.presence
	p.mu.Lock()
	defer p.mu.Unlock()
	ch := p.channel(channel, false)
	if ch == nil {
		return nil, nil
	}
	var left []string
	for _, c := range clients {
		left = p.remove(channel, ch, c, left)
	}
	return left, nil
}

// ExpirePresence removes channel's expired entries.
func (b *Broker) ExpirePresence(ctx context.Context, channel string) ([]string, error) {
	if b.closed.Load() {
		return nil, broker.ErrClosed
	}
	p := &b.presence
	p.mu.Lock()
	defer p.mu.Unlock()
	ch := p.channel(channel, false)
	if ch == nil {
		return nil, nil
	}
	now := time.Now()
	var left []string
	for id, e := range ch.entries {
		if now.After(e.expires) {
			left = p.remove(channel, ch, id, left)
		}
	}
	return left, nil
}

// Presence returns channel's unexpired entries.
func (b *Broker) Presence(ctx context.Context, channel string) ([]broker.PresenceEntry, error) {
	if b.closed.Load() {
		return nil, broker.ErrClosed
	}
	p := &b.presence
	p.mu.Lock()
	defer p.mu.Unlock()
	ch := p.channel(channel, false)
	if ch == nil {
		return nil, nil
	}
	now := time.Now()
	var out []broker.PresenceEntry
	for _, e := range ch.entries {
		if !now.After(e.expires) {
			out = append(out, e.PresenceEntry)
		}
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

// sweep drops the channels whose every entry expired a long while ago (a
// day): nobody sweeps them by ExpirePresence any more. The janitor calls
// it.
func (p *presence) sweep(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for name, ch := range p.channels {
		stale := true
		for _, e := range ch.entries {
			if now.Sub(e.expires) < 24*time.Hour {
				stale = false
				break
			}
		}
		if stale {
			delete(p.channels, name)
		}
	}
}
