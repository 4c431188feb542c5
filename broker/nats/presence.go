package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-rt/switchboard/broker"
)

// Time-to-live of the KV buckets: a key disappears this long after its
// last write. Entries carry their own expiry, checked when read; the
// buckets' TTLs only sweep away what nobody writes any more, and bound
// the ttl an entry can have.
const (
	presenceBucketTTL = time.Hour
	nodesBucketTTL    = time.Hour
)

// buckets holds the KV buckets the broker uses, made when first needed.
type buckets struct {
	b   *Broker
	mu  sync.Mutex
	kvs map[string]jetstream.KeyValue // guarded by mu: by bucket name
}

func (k *buckets) init(b *Broker) {
	k.b = b
	k.kvs = make(map[string]jetstream.KeyValue)
}

// forget drops the buckets known to exist (after a reconnection).
func (k *buckets) forget() {
	k.mu.Lock()
	defer k.mu.Unlock()
	clear(k.kvs)
}

// bucket returns the named bucket, creating it the first time.
func (k *buckets) bucket(ctx context.Context, name string, ttl time.Duration) (jetstream.KeyValue, error) {
	k.mu.Lock()
	kv, ok := k.kvs[name]
	k.mu.Unlock()
	if ok {
		return kv, nil
	}
	kv, err := k.b.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:   name,
		TTL:      ttl,
		History:  1,
		Storage:  k.b.cfg.Storage,
		Replicas: k.b.cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("create KV bucket %s: %w", name, err)
	}
	k.mu.Lock()
	k.kvs[name] = kv
	k.mu.Unlock()
	return kv, nil
}

// drop forgets a bucket after an error, so that the next call makes it
// again if NATS lost it.
func (k *buckets) drop(name string) {
	k.mu.Lock()
	delete(k.kvs, name)
	k.mu.Unlock()
}

// update changes one key's JSON value with compare-and-set: it reads the
// value, lets change edit it (reporting whether it did), and writes it
// back only if nobody wrote in between, or tries again.
func update[T any](ctx context.Context, kv jetstream.KeyValue, key string, change func(*T) bool) error {
	for {
		var v T
		var rev uint64
		e, err := kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return err
		default:
			rev = e.Revision()
			if err := json.Unmarshal(e.Value(), &v); err != nil {
				return fmt.Errorf("key %s: %w", key, err)
			}
		}
		if !change(&v) {
			return nil
		}
		data, err := json.Marshal(v)
		if err != nil {
			return err
		}
		if rev == 0 {
			_, err = kv.Create(ctx, key, data)
		} else {
			_, err = kv.Update(ctx, key, data, rev)
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !wrongLast(err) {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// presenceRecord is one client's entry in a channel's presence value.
type presenceRecord struct {
	User    string          `json:"u,omitempty"`
	Info    json.RawMessage `json:"i,omitempty"`
	Node    string          `json:"n"`
	Expires int64           `json:"x"` // ms since the Unix epoch
}

// presenceMap is a channel's presence value: client -> entry. Expired
// entries stay until ExpirePresence removes them, so that each departure
// is reported once.
type presenceMap map[string]presenceRecord

// users counts each user's entries.
func (p presenceMap) users() map[string]int {
	n := make(map[string]int)
	for _, r := range p {
		if r.User != "" {
			n[r.User]++
		}
	}
	return n
}

// remove deletes client's entry and adds its user to left when it was
// the user's last.
func (p presenceMap) remove(client string, users map[string]int, left []string) []string {
	r, ok := p[client]
	if !ok {
		return left
	}
	delete(p, client)
	if r.User != "" {
		users[r.User]--
		if users[r.User] == 0 {
			left = append(left, r.User)
		}
	}
	return left
}

// changePresence runs change on channel's presence value.
func (b *Broker) changePresence(ctx context.Context, op, channel string, change func(*presenceMap) bool) error {
	if err := b.usable(); err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	name := b.ns.presenceBucket()
	kv, err := b.kv.bucket(cctx, name, presenceBucketTTL)
	if err == nil {
		err = update(cctx, kv, encodeToken(channel), change)
	}
	if err != nil {
		b.kv.drop(name)
		return b.fail(ctx, op, channel, err)
	}
	return nil
}

// SetPresence adds or refreshes entries of channel (see broker.Presencer).
// Expiry is by this node's clock: nodes' clocks must agree to well within
// the ttl.
func (b *Broker) SetPresence(ctx context.Context, channel string, entries []broker.PresenceEntry, ttl time.Duration) ([]string, error) {
	if len(entries) == 0 {
		return nil, b.usable()
	}
	var joined []string
	err := b.changePresence(ctx, "set presence", channel, func(p *presenceMap) bool {
		joined = joined[:0]
		if *p == nil {
			*p = make(presenceMap)
		}
		users := p.users()
		exp := time.Now().Add(max(ttl, time.Millisecond)).UnixMilli()
		for _, e := range entries {
			if _, ok := (*p)[e.Client]; !ok && e.User != "" {
				users[e.User]++
				if users[e.User] == 1 {
					joined = append(joined, e.User)
				}
			}
			(*p)[e.Client] = presenceRecord{User: e.User, Info: e.Info, Node: e.Node, Expires: exp}
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	return joined, nil
}

// RemovePresence removes clients from channel (see broker.Presencer).
func (b *Broker) RemovePresence(ctx context.Context, channel string, clients ...string) ([]string, error) {
	if len(clients) == 0 {
		return nil, b.usable()
	}
	var left []string
	err := b.changePresence(ctx, "remove presence", channel, func(p *presenceMap) bool {
		left = left[:0]
		users := p.users()
		n := len(*p)
		for _, c := range clients {
			left = p.remove(c, users, left)
		}
		return len(*p) != n
	})
	if err != nil {
		return nil, err
	}
	return left, nil
}

// ExpirePresence removes channel's expired entries (see broker.Presencer).
func (b *Broker) ExpirePresence(ctx context.Context, channel string) ([]string, error) {
	var left []string
	err := b.changePresence(ctx, "expire presence", channel, func(p *presenceMap) bool {
		left = left[:0]
		users := p.users()
		now := time.Now().UnixMilli()
		n := len(*p)
		for c, r := range *p {
			if r.Expires <= now {
				left = p.remove(c, users, left)
			}
		}
		return len(*p) != n
	})
	if err != nil {
		return nil, err
	}
	return left, nil
}

// Presence returns channel's unexpired entries (see broker.Presencer).
func (b *Broker) Presence(ctx context.Context, channel string) ([]broker.PresenceEntry, error) {
	var out []broker.PresenceEntry
	err := b.changePresence(ctx, "presence", channel, func(p *presenceMap) bool {
		now := time.Now().UnixMilli()
		out = out[:0]
		for c, r := range *p {
			if r.Expires > now {
				out = append(out, broker.PresenceEntry{Client: c, User: r.User, Info: r.Info, Node: r.Node})
			}
		}
		return false // read only
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// nodeRecord is one node's channel counts.
type nodeRecord struct {
	Expires int64          `json:"x"` // ms since the Unix epoch
	Counts  map[string]int `json:"c"`
}

// SetNodeChannels replaces node's counts (see broker.NodeCounter).
func (b *Broker) SetNodeChannels(ctx context.Context, node string, counts map[string]int, ttl time.Duration) error {
	if err := b.usable(); err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	data, err := json.Marshal(nodeRecord{Expires: time.Now().Add(max(ttl, time.Millisecond)).UnixMilli(), Counts: counts})
	if err != nil {
		return fmt.Errorf("nats: set node channels %q: %w", node, err)
	}
	name := b.ns.nodesBucket()
	kv, err := b.kv.bucket(cctx, name, nodesBucketTTL)
	if err == nil {
		_, err = kv.Put(cctx, encodeToken(node), data)
	}
	if err != nil {
		b.kv.drop(name)
		return b.fail(ctx, "set node channels", node, err)
	}
	return nil
}

// ClusterChannels sums every live node's counts (see broker.NodeCounter).
func (b *Broker) ClusterChannels(ctx context.Context) (map[string]int, error) {
	if err := b.usable(); err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	name := b.ns.nodesBucket()
	out, err := b.sumNodes(cctx, name)
	if err != nil {
		b.kv.drop(name)
		return nil, b.fail(ctx, "cluster channels", "", err)
	}
	return out, nil
}

func (b *Broker) sumNodes(ctx context.Context, name string) (map[string]int, error) {
	kv, err := b.kv.bucket(ctx, name, nodesBucketTTL)
	if err != nil {
		return nil, err
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	var names []string
	for k := range keys.Keys() {
		names = append(names, k)
	}
	_ = keys.Stop()
	out := make(map[string]int)
	now := time.Now().UnixMilli()
	for _, key := range names {
		e, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var r nodeRecord
		if json.Unmarshal(e.Value(), &r) != nil || r.Expires <= now {
			continue
		}
		for ch, n := range r.Counts {
			out[ch] += n
		}
	}
	return out, nil
}
