package redis

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/broker/brokertest"
	"github.com/switchboard-rt/switchboard/internal/redistest"
)

// newClusterBroker returns a broker of cluster c, not started, closed when
// t ends.
func newClusterBroker(t *testing.T, c *redistest.Cluster, cfg Config) *Broker {
	t.Helper()
	cfg.URL = c.URL()
	return newBrokerAt(t, cfg)
}

// The conformance suite, unchanged, on a cluster of 3 primaries.
func TestClusterConformance(t *testing.T) {
	c := redistest.StartCluster(t, 3, 0)
	brokertest.Run(t, brokertest.Factory{
		New: func(t *testing.T) broker.Broker {
			return newClusterBroker(t, c, Config{})
		},
		Shared:   true,
		History:  true,
		Presence: true,
	})
}

// slot agrees with CLUSTER KEYSLOT.
func TestSlot(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, &redistest.Options{Cluster: true})
	for _, key := range []string{"foo", "bar", "{user1000}.following", "foo{}{bar}", "foo{{bar}}zap", "sb:{chat:lobby}", "sb:{a{b}}:s", "", "{}"} {
		v, err := srv.Do("CLUSTER", "KEYSLOT", key)
		if err != nil {
			t.Fatal(err)
		}
		if got := slot(key); int64(got) != v.(int64) {
			t.Errorf("slot(%q) = %d, want %d", key, got, v)
		}
	}
}

// seqSink delivers each channel's messages in offset order, once, the way
// the hub does: a jump in offsets, or ChannelsRestored, fills the gap from
// history. Its worker goroutine owns the state; HandleMessage only queues.
type seqSink struct {
	b      *Broker
	events chan seqEvent
	done   chan struct{}

	mu        sync.Mutex
	last      map[string]uint64   // guarded by mu
	epochs    map[string]string   // guarded by mu
	got       map[string][]string // guarded by mu: the data delivered, in order
	dups      int                 // guarded by mu: dropped as already delivered
	lost      atomic.Int64        // ChannelsLost calls
	restored  atomic.Int64        // ChannelsRestored calls
	fillFails atomic.Int64
}

type seqEvent struct {
	m        broker.Message
	restored []string
}

func newSeqSink() *seqSink {
	return &seqSink{events: make(chan seqEvent, 1<<16), done: make(chan struct{}), last: map[string]uint64{}, epochs: map[string]string{}, got: map[string][]string{}}
}

func (s *seqSink) HandleMessage(m broker.Message)       { s.events <- seqEvent{m: m} }
func (s *seqSink) ChannelsLost(chs []string, err error) { s.lost.Add(1) }
func (s *seqSink) ChannelsRestored(chs []string) {
	s.restored.Add(1)
	s.events <- seqEvent{restored: chs}
}

// run is the worker; it ends when events is closed.
func (s *seqSink) run() {
	defer close(s.done)
	for e := range s.events {
		if e.restored != nil {
			for _, ch := range e.restored {
				s.fill(ch)
			}
			continue
		}
		m := e.m
		s.mu.Lock()
		last, epoch := s.last[m.Channel], s.epochs[m.Channel]
		s.mu.Unlock()
		if m.Pos.Offset > last+1 && m.Pos.Epoch == epoch {
			s.fill(m.Channel)
		}
		s.deliver(m)
	}
}

func (s *seqSink) deliver(m broker.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m.Pos.Epoch != s.epochs[m.Channel] {
		// A new life of the channel (its primary restarted empty).
		s.epochs[m.Channel], s.last[m.Channel] = m.Pos.Epoch, 0
	}
	if m.Pos.Offset <= s.last[m.Channel] {
		s.dups++
		return
	}
	if m.Pos.Offset != s.last[m.Channel]+1 {
		return // a gap fill failed: the next one catches up
	}
	s.last[m.Channel] = m.Pos.Offset
	s.got[m.Channel] = append(s.got[m.Channel], string(m.Data))
}

func (s *seqSink) fill(ch string) {
	s.mu.Lock()
	since := broker.Position{Epoch: s.epochs[ch], Offset: s.last[ch]}
	s.mu.Unlock()
	if since.Epoch == "" {
		since.Epoch = s.epoch(ch)
	}
	res, err := s.b.History(context.Background(), ch, broker.HistoryRequest{Since: &since, Limit: 10000}, broker.PublishOptions{HistorySize: 10000})
	if err != nil || !res.Recovered {
		s.fillFails.Add(1)
		return
	}
	for _, m := range res.Messages {
		s.deliver(m)
	}
}

// epoch is the channel's epoch: tests publish to fresh channels, one epoch.
func (s *seqSink) epoch(ch string) string {
	res, err := s.b.History(context.Background(), ch, broker.HistoryRequest{}, broker.PublishOptions{HistorySize: 10000})
	if err != nil {
		return ""
	}
	return res.Pos.Epoch
}

func (s *seqSink) count(ch string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got[ch])
}

// While clients publish to channels with history, a channel's slot moves
// to another primary and then a primary is killed and its replica takes
// over. Every acknowledged publish is delivered once, in order, after gap
// filling; Shards and ReadyFor show the killed primary while it is down.
func TestClusterMoveAndFailover(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 3, 1)
	b := newClusterBroker(t, c, Config{HealthInterval: 100 * time.Millisecond})
	sink := newSeqSink()
	sink.b = b
	go sink.run()
	if err := b.Start(context.Background(), sink); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = b.Close(context.Background())
		close(sink.events)
		<-sink.done
	})
	if n := len(b.Shards()); n != 3 {
		t.Fatalf("%d shards, want 3: %v", n, b.Shards())
	}
	// Channels on every primary.
	var chans []string
	for i := 0; len(chans) < 12; i++ {
		chans = append(chans, fmt.Sprintf("chaos:%d", i))
	}
	ctx := context.Background()
	if err := b.Subscribe(ctx, chans...); err != nil {
		t.Fatal(err)
	}
	opts := broker.PublishOptions{HistorySize: 10000, HistoryTTL: time.Minute}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	acked := make([][]string, len(chans))
	for i, ch := range chans {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				data := fmt.Sprintf(`{"n":%d}`, n)
				o := opts
				o.IdempotencyKey = fmt.Sprintf("%s-%d", ch, n)
				// Retry with the same key until it is taken, up to 10s.
				deadline := time.Now().Add(10 * time.Second)
				for {
					_, err := b.Publish(ctx, ch, []byte(data), o)
					if err == nil {
						acked[i] = append(acked[i], data)
						break
					}
					if !errors.Is(err, broker.ErrUnavailable) || time.Now().After(deadline) {
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
				time.Sleep(3 * time.Millisecond)
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)

	// Move chans[0]'s slot to another primary.
	sl := c.Slot("sb:{" + chans[0] + "}")
	from := c.Owner(sl)
	var to *redistest.Server
	for _, p := range c.Primaries() {
		if p != from {
			to = p
			break
		}
	}
	c.MoveSlot(sl, to)
	waitFor(t, 10*time.Second, "the moved channel restored", func() bool { return sink.restored.Load() > 0 })
	time.Sleep(300 * time.Millisecond)

	// Kill the primary of chans[1]; its replica takes over.
	victim := c.Owner(c.Slot("sb:{" + chans[1] + "}"))
	victim.Kill()
	waitFor(t, 5*time.Second, "Shards showing the killed primary down", func() bool {
		for _, sh := range b.Shards() {
			if sh.Addr == victim.Addr() && errors.Is(sh.Err, broker.ErrUnavailable) {
				return true
			}
		}
		return false
	})
	if err := b.ReadyFor(chans[1]); !errors.Is(err, broker.ErrUnavailable) {
		t.Errorf("ReadyFor(%s on the killed primary) = %v, want ErrUnavailable", chans[1], err)
	}
	if err := b.Ready(); err != nil {
		t.Errorf("Ready with one primary of three down: %v", err)
	}
	c.WaitSettled()
	waitFor(t, 10*time.Second, "the replica taking over as a shard", func() bool {
		return b.ReadyFor(chans[1]) == nil && len(b.Shards()) == 3
	})
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()

	for i, ch := range chans {
		want := len(acked[i])
		if want == 0 {
			t.Fatalf("%s: nothing published", ch)
		}
		waitFor(t, 10*time.Second, ch+" delivered", func() bool { return sink.count(ch) >= want })
		sink.mu.Lock()
		got := slices.Clone(sink.got[ch])
		sink.mu.Unlock()
		// Every acknowledged message delivered, in publish order, once.
		seen := make(map[string]int)
		for _, d := range got {
			seen[d]++
		}
		for _, d := range acked[i] {
			if seen[d] != 1 {
				t.Errorf("%s: %s delivered %d times", ch, d, seen[d])
			}
		}
		if len(got) != len(seen) {
			t.Errorf("%s: %d messages delivered, %d distinct", ch, len(got), len(seen))
		}
	}
	t.Logf("published %d channels; dups dropped %d, lost/restored calls %d/%d, failed fills %d",
		len(chans), sink.dups, sink.lost.Load(), sink.restored.Load(), sink.fillFails.Load())
}

// A primary without a replica goes down: the broker stays ready, refuses
// publishes to that primary's channels with ErrUnavailable at once, keeps
// serving the others, says which shard is down, and once the primary is
// back subscribes its channels again and tells the Handler.
func TestClusterShardDown(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 3, 0)
	log, logs := recordLogs(t)
	b := newClusterBroker(t, c, Config{HealthInterval: 100 * time.Millisecond, Logger: log})
	sink := newSeqSink()
	sink.b = b
	go sink.run()
	if err := b.Start(context.Background(), sink); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = b.Close(context.Background())
		close(sink.events)
		<-sink.done
	})
	ctx := context.Background()
	down, up := "", ""
	victim := c.Owner(c.Slot("sb:{d:0}"))
	for i := 0; up == "" || down == ""; i++ {
		ch := fmt.Sprintf("d:%d", i)
		if c.Owner(c.Slot("sb:{"+ch+"}")) == victim {
			down = cmp.Or(down, ch)
		} else {
			up = cmp.Or(up, ch)
		}
	}
	if err := b.Subscribe(ctx, down, up); err != nil {
		t.Fatal(err)
	}
	opts := broker.PublishOptions{HistorySize: 100, HistoryTTL: time.Minute}
	if _, err := b.Publish(ctx, down, []byte(`1`), opts); err != nil {
		t.Fatal(err)
	}
	// A SIGKILL right after the reply can beat the message to the
	// subscriber's socket, and the restart loses the history.
	waitFor(t, 5*time.Second, "delivery before the kill", func() bool { return sink.count(down) == 1 })
	victim.Kill()
	waitFor(t, 5*time.Second, "the shard reported down", func() bool { return b.ReadyFor(down) != nil })
	n := 0
	for _, sh := range b.Shards() {
		if sh.Err != nil {
			n++
			if sh.Addr != victim.Addr() || !errors.Is(sh.Err, broker.ErrUnavailable) {
				t.Errorf("shard %s down with %v, want %s with ErrUnavailable", sh.Addr, sh.Err, victim.Addr())
			}
		}
	}
	if n != 1 {
		t.Errorf("%d shards down, want 1: %v", n, b.Shards())
	}
	if err := b.Ready(); err != nil {
		t.Errorf("Ready: %v", err)
	}
	start := time.Now()
	if _, err := b.Publish(ctx, down, []byte(`2`), opts); !errors.Is(err, broker.ErrUnavailable) {
		t.Errorf("publish to the down shard: %v, want ErrUnavailable", err)
	}
	if took := time.Since(start); took > 100*time.Millisecond {
		t.Errorf("publish to the down shard took %v", took)
	}
	if _, err := b.Publish(ctx, up, []byte(`1`), opts); err != nil {
		t.Errorf("publish to a live shard: %v", err)
	}
	if err := b.Subscribe(ctx, "d:other-"+down); err == nil && b.ReadyFor("d:other-"+down) != nil {
		t.Error("subscribe on a down shard succeeded")
	}
	waitFor(t, 5*time.Second, "delivery on the live shard", func() bool { return sink.count(up) == 1 })
	if logs.count("level=WARN", "primary unreachable", victim.Addr()) != 1 {
		t.Error("the down primary is not logged once as a warning")
	}

	victim.Restart()
	c.WaitSettled()
	waitFor(t, 10*time.Second, "the shard back", func() bool { return b.ReadyFor(down) == nil })
	waitFor(t, 5*time.Second, "the channel restored", func() bool { return sink.restored.Load() > 0 })
	if _, err := b.Publish(ctx, down, []byte(`3`), opts); err != nil {
		t.Fatalf("publish after the primary came back: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			sink.mu.Lock()
			t.Logf("sink: %s got %q, last %d, epoch %q; fills failed %d, lost/restored %d/%d; shards %v",
				down, sink.got[down], sink.last[down], sink.epochs[down], sink.fillFails.Load(), sink.lost.Load(), sink.restored.Load(), b.Shards())
			sink.mu.Unlock()
		}
	})
	waitFor(t, 5*time.Second, "delivery after the primary came back", func() bool { return sink.count(down) == 2 })
	if logs.count("primary reachable again", victim.Addr()) != 1 {
		t.Error("the primary's return is not logged once")
	}
}

// A URL naming one node of a cluster (here a cluster of one node that owns
// every slot) is enough: the broker finds the cluster by itself and serves
// it, where it used to refuse it.
func TestClusterOneNodeURL(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, &redistest.Options{Cluster: true})
	b := newBroker(t, srv, Config{})
	sink := newSink()
	if err := b.Start(context.Background(), sink); err != nil {
		t.Fatal(err)
	}
	if err := b.Ready(); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	if sh := b.Shards(); len(sh) != 1 || sh[0].Addr != srv.Addr() || sh[0].Err != nil {
		t.Fatalf("Shards = %v, want one, %s, up", sh, srv.Addr())
	}
	ctx := context.Background()
	if err := b.Subscribe(ctx, "lobby"); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	if _, err := b.Publish(ctx, "lobby", []byte(`"hi"`), broker.PublishOptions{HistorySize: 10}); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	waitFor(t, 5*time.Second, "delivery", func() bool { return len(sink.get("lobby")) == 1 })
	if v, err := srv.Do("PUBSUB", "SHARDCHANNELS"); err != nil || fmt.Sprint(v) != "[sb:{lobby} sb:{#control}]" && fmt.Sprint(v) != "[sb:{lobby}]" {
		t.Errorf("PUBSUB SHARDCHANNELS = %v %v, want the hash-tagged channel", v, err)
	}
}

// Several addresses are seeds of a cluster: plain Redis servers there are
// an error Redis answered (ErrCluster), at each attempt, not a silent
// failure later.
func TestSeedsNotACluster(t *testing.T) {
	t.Parallel()
	a, b2 := redistest.Start(t, nil), redistest.Start(t, nil)
	log, logs := recordLogs(t)
	b, err := New(Config{URL: "redis://" + a.Addr() + "," + b2.Addr(), Logger: log, Timeout: 300 * time.Millisecond, ConnectDelay: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	if err := b.Start(context.Background(), newSink()); err != nil {
		t.Fatal(err)
	}
	if err := b.Ready(); !errors.Is(err, broker.ErrUnavailable) || !errors.Is(err, ErrCluster) || !strings.Contains(err.Error(), "not cluster nodes") {
		t.Fatalf("Ready = %v, want ErrCluster and ErrUnavailable, saying they are not cluster nodes", err)
	}
	waitFor(t, 5*time.Second, "an attempt logged as an error", func() bool {
		return logs.count("level=ERROR", "cannot connect: Redis Cluster cannot serve") >= 1
	})
}
