package sharded

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/broker/brokertest"
	"github.com/switchboard-rt/switchboard/broker/memory"
	"github.com/switchboard-rt/switchboard/broker/redis"
	"github.com/switchboard-rt/switchboard/internal/redistest"
	"github.com/switchboard-rt/switchboard/internal/testlog"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newBroker returns a sharded broker over srvs, not started, closed when t
// ends. Its commands time out fast, so that a dead shard is noticed fast.
func newBroker(t *testing.T, srvs []*redistest.Server) *Broker {
	t.Helper()
	urls := make([]string, len(srvs))
	for i, s := range srvs {
		urls[i] = s.URL()
	}
	b, err := NewRedis(urls, redis.Config{
		Logger:         testlog.New(t),
		Timeout:        time.Second,
		HealthInterval: 200 * time.Millisecond, // a ping may take 400ms on a loaded machine
		ReconnectDelay: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

func TestConformance(t *testing.T) {
	srvs := []*redistest.Server{redistest.Start(t, nil), redistest.Start(t, nil), redistest.Start(t, nil)}
	brokertest.Run(t, brokertest.Factory{
		New:      func(t *testing.T) broker.Broker { return newBroker(t, srvs) },
		Shared:   true,
		History:  true,
		Presence: true,
	})
}

// A channel's shard depends on its name alone, the broker channels derived
// from a channel go with it, and adding a shard moves channels only to the
// new shard, about 1/n of them.
func TestIndex(t *testing.T) {
	const channels = 20000
	counts := make([]int, 4)
	moved := 0
	for i := range channels {
		ch := fmt.Sprintf("chat:room-%d", i)
		three, four := Index(ch, 3), Index(ch, 4)
		counts[four]++
		if three != four {
			moved++
			if four != 3 {
				t.Fatalf("%s moved from shard %d to %d, not to the new shard", ch, three, four)
			}
		}
		if Index(ch+"#events", 3) != three || Index(ch+"#occupancy", 3) != three {
			t.Fatalf("%s#events is not on its channel's shard", ch)
		}
		if Index(ch, 1) != 0 {
			t.Fatalf("one shard: %s on %d", ch, Index(ch, 1))
		}
	}
	if moved < channels/5 || moved > channels*3/10 {
		t.Errorf("adding a 4th shard moved %d of %d channels, want about a quarter", moved, channels)
	}
	for i, n := range counts {
		if n < channels/5 || n > channels*3/10 {
			t.Errorf("shard %d of 4 has %d of %d channels", i, n, channels)
		}
	}
	// Stable across releases: the hash is part of the deployment's layout.
	for ch, want := range map[string]int{"chat:lobby": Index("chat:lobby", 2), "#control": Index("#control", 2)} {
		if Index(ch, 2) != want {
			t.Errorf("Index(%q) not stable", ch)
		}
	}
	if Index("#control", 7) != jump(fnv1a("#control"), 7) {
		t.Error("a name starting with # is not routed by all of it")
	}
}

func TestNewRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		urls []string
		want string
	}{
		{"none", nil, "no Redis URLs"},
		{"duplicate", []string{"redis://127.0.0.1:7001/0", "redis://:pw@127.0.0.1:7001/1"}, "both 127.0.0.1:7001"},
		{"malformed", []string{"redis://127.0.0.1:7001", "redis://[::1"}, "shard 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := NewRedis(tc.urls, redis.Config{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewRedis(%q): %v, want %q", tc.urls, err, tc.want)
			}
		})
	}
	b, err := NewRedis([]string{"redis://:secret@127.0.0.1:7001/0", "redis://127.0.0.1:7002"}, redis.Config{})
	if err != nil {
		t.Fatal(err)
	}
	got := b.Shards()
	if len(got) != 2 || got[0].Name != "0" || got[0].Addr != "127.0.0.1:7001" || got[1].Name != "1" || got[1].Addr != "127.0.0.1:7002" {
		t.Errorf("Shards() = %+v", got)
	}
	if err := b.Close(context.Background()); err != nil {
		t.Error(err)
	}
}

// recorder is a Handler that keeps every message and the state calls.
type recorder struct {
	mu       sync.Mutex
	msgs     map[string][]broker.Message
	lost     [][]string
	restored [][]string
}

func newRecorder() *recorder { return &recorder{msgs: make(map[string][]broker.Message)} }

func (r *recorder) HandleMessage(m broker.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs[m.Channel] = append(r.msgs[m.Channel], m)
}

func (r *recorder) ChannelsLost(chs []string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	slices.Sort(chs)
	r.lost = append(r.lost, chs)
}

func (r *recorder) ChannelsRestored(chs []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	slices.Sort(chs)
	r.restored = append(r.restored, chs)
}

func (r *recorder) get(ch string) []broker.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.msgs[ch])
}

func (r *recorder) calls() (lost, restored [][]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.lost), slices.Clone(r.restored)
}

// checkFor polls cond every step until it holds, failing t after total.
func checkFor(t *testing.T, total time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(total)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", total, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// channelsOn returns n channel names that live on shard i of shards.
func channelsOn(i, shards, n int, prefix string) []string {
	var out []string
	for k := 0; len(out) < n; k++ {
		ch := fmt.Sprintf("%s-%d", prefix, k)
		if Index(ch, shards) == i {
			out = append(out, ch)
		}
	}
	return out
}

// One Redis of two dies: its channels' publishes fail with ErrUnavailable
// while the other's keep working, Ready stays nil, ReadyFor and Shards say
// which; when it is back its channels are subscribed again, the Handler is
// told which channels were lost and restored, and what it missed is in
// history: nothing lost, nothing delivered twice.
func TestShardsFailIndependently(t *testing.T) {
	srvs := []*redistest.Server{
		redistest.Start(t, &redistest.Options{Persistence: true}),
		redistest.Start(t, &redistest.Options{Persistence: true}),
	}
	ctx := context.Background()
	rec := newRecorder()
	sub := newBroker(t, srvs)
	if err := sub.Start(ctx, rec); err != nil {
		t.Fatal(err)
	}
	pub := newBroker(t, srvs)
	if err := pub.Start(ctx, broker.HandlerFunc(func(broker.Message) {})); err != nil {
		t.Fatal(err)
	}
	up, down := channelsOn(0, 2, 3, "up"), channelsOn(1, 2, 3, "down")
	all := append(slices.Clone(up), down...)
	if err := sub.Subscribe(ctx, all...); err != nil {
		t.Fatal(err)
	}
	opts := broker.PublishOptions{HistorySize: 100}
	acked := make(map[string][]uint64)
	publishAll := func(chs []string) (failed []error) {
		for _, ch := range chs {
			pos, err := pub.Publish(ctx, ch, []byte(`"x"`), opts)
			if err != nil {
				failed = append(failed, err)
				continue
			}
			acked[ch] = append(acked[ch], pos.Offset)
		}
		return failed
	}
	for range 3 {
		if errs := publishAll(all); len(errs) > 0 {
			t.Fatal(errs)
		}
	}
	checkFor(t, 5*time.Second, "3 messages on every channel", func() bool {
		for _, ch := range all {
			if len(rec.get(ch)) < 3 {
				return false
			}
		}
		return true
	})
	lastLive := make(map[string]uint64)
	for _, ch := range down {
		lastLive[ch] = 3
	}

	srvs[1].Kill()
	checkFor(t, 5*time.Second, "shard 1 to be reported down", func() bool {
		sh := pub.Shards()
		return sh[0].Err == nil && sh[1].Err != nil && sub.ReadyFor(down[0]) != nil
	})
	if err := sub.Ready(); err != nil {
		t.Errorf("Ready with one shard of two up: %v", err)
	}
	if err := sub.ReadyFor(up[0]); err != nil {
		t.Errorf("ReadyFor(%s) on the live shard: %v", up[0], err)
	}
	if err := sub.ReadyFor(down[0]); !errors.Is(err, broker.ErrUnavailable) || !strings.Contains(err.Error(), "shard 1") {
		t.Errorf("ReadyFor(%s) on the dead shard: %v, want ErrUnavailable naming shard 1", down[0], err)
	}
	if sh := sub.Shards(); sh[1].Addr != srvs[1].Addr() || !errors.Is(sh[1].Err, broker.ErrUnavailable) {
		t.Errorf("Shards()[1] = %+v", sh[1])
	}
	for _, err := range publishAll(down) {
		if !errors.Is(err, broker.ErrUnavailable) {
			t.Errorf("publish to the dead shard: %v, want ErrUnavailable", err)
		}
	}
	if errs := publishAll(up); len(errs) > 0 {
		t.Fatalf("publish to the live shard: %v", errs)
	}
	checkFor(t, 5*time.Second, "the live shard's messages during the outage", func() bool {
		return len(rec.get(up[0])) == 4
	})
	checkFor(t, 5*time.Second, "ChannelsLost", func() bool {
		lost, _ := rec.calls()
		return len(lost) == 1
	})
	lost, _ := rec.calls()
	if want := slices.Sorted(slices.Values(down)); !slices.Equal(lost[0], want) {
		t.Errorf("ChannelsLost(%q), want %q", lost[0], want)
	}

	srvs[1].Restart()
	// Publish as soon as the shard takes publishes again, before the
	// subscriber may have subscribed again: those messages can miss it
	// live, and must then be in history.
	checkFor(t, 5*time.Second, "a publish to the restarted shard", func() bool {
		return len(publishAll(down[:1])) == 0
	})
	publishAll(down[1:])
	checkFor(t, 5*time.Second, "ChannelsRestored", func() bool {
		_, restored := rec.calls()
		return len(restored) == 1
	})
	_, restored := rec.calls()
	if want := slices.Sorted(slices.Values(down)); !slices.Equal(restored[0], want) {
		t.Errorf("ChannelsRestored(%q), want %q", restored[0], want)
	}
	if errs := publishAll(all); len(errs) > 0 {
		t.Fatalf("after restart: %v", errs)
	}
	if err := sub.Ready(); err != nil {
		t.Errorf("Ready after restart: %v", err)
	}
	for _, ch := range all {
		want := acked[ch]
		checkFor(t, 5*time.Second, "the last message on "+ch, func() bool {
			got := rec.get(ch)
			return len(got) > 0 && got[len(got)-1].Pos.Offset == want[len(want)-1]
		})
		// What the Handler got live, plus what it would fill from history
		// after ChannelsRestored (since the last offset it had), holds
		// every acknowledged message once.
		seen := make(map[uint64]int)
		var prev uint64
		for _, m := range rec.get(ch) {
			if m.Pos.Offset <= prev {
				t.Errorf("%s: offset %d delivered after %d", ch, m.Pos.Offset, prev)
			}
			prev = m.Pos.Offset
			seen[m.Pos.Offset]++
		}
		if since, ok := lastLive[ch]; ok {
			res, err := sub.History(ctx, ch, broker.HistoryRequest{Since: &broker.Position{Epoch: rec.get(ch)[0].Pos.Epoch, Offset: since}, Limit: 100}, opts)
			if err != nil || !res.Recovered {
				t.Fatalf("%s: history since %d: %+v, %v", ch, since, res, err)
			}
			for _, m := range res.Messages {
				if seen[m.Pos.Offset] == 0 {
					seen[m.Pos.Offset]++ // a gap the hub fills
				}
			}
		}
		var got []uint64
		for off, n := range seen {
			if n != 1 {
				t.Errorf("%s: offset %d delivered %d times", ch, off, n)
			}
			got = append(got, off)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s: delivered or recoverable %v, acknowledged %v", ch, got, want)
		}
	}
}

// A Handler that is only a StateHandler hears SubscriptionsLost when the
// first shard goes and SubscriptionsRestored when the last is back.
func TestStateHandlerFallback(t *testing.T) {
	srvs := []*redistest.Server{redistest.Start(t, nil), redistest.Start(t, nil)}
	b := newBroker(t, srvs)
	h := &stateRecorder{}
	if err := b.Start(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	if err := b.Subscribe(context.Background(), channelsOn(0, 2, 1, "a")[0], channelsOn(1, 2, 1, "b")[0]); err != nil {
		t.Fatal(err)
	}
	srvs[0].Kill()
	srvs[1].Kill()
	checkFor(t, 5*time.Second, "both shards down", func() bool { return b.Ready() != nil })
	if err := b.Ready(); !errors.Is(err, broker.ErrUnavailable) {
		t.Errorf("Ready with every shard down: %v", err)
	}
	srvs[0].Restart()
	checkFor(t, 5*time.Second, "shard 0 back", func() bool { return b.Ready() == nil })
	if got := h.get(); got != "lost" {
		t.Errorf("calls with one shard of two back: %q, want lost", got)
	}
	srvs[1].Restart()
	checkFor(t, 5*time.Second, "SubscriptionsRestored", func() bool { return h.get() == "lost,restored" })
}

type stateRecorder struct {
	mu    sync.Mutex
	calls []string
}

func (s *stateRecorder) HandleMessage(broker.Message) {}
func (s *stateRecorder) SubscriptionsLost(error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, "lost")
}
func (s *stateRecorder) SubscriptionsRestored() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, "restored")
}
func (s *stateRecorder) get() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.calls, ",")
}

// refusing is an in-process backend whose Subscribe fails while refuse is
// set.
type refusing struct {
	*memory.Broker
	refuse atomic.Bool
}

func (r *refusing) Subscribe(ctx context.Context, channels ...string) error {
	if r.refuse.Load() {
		return fmt.Errorf("test: %w", broker.ErrUnavailable)
	}
	return r.Broker.Subscribe(ctx, channels...)
}

// A Subscribe over two shards, one of which fails, fails and leaves no
// channel it added subscribed on the other; channels subscribed before
// stay.
func TestSubscribeUndoesPartialFailure(t *testing.T) {
	ctx := context.Background()
	good, bad := memory.New(memory.Config{}), &refusing{Broker: memory.New(memory.Config{})}
	b, err := New(Config{Shards: []Shard{{Broker: good, Addr: "m0"}, {Broker: bad, Addr: "m1"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	rec := newRecorder()
	if err := b.Start(ctx, rec); err != nil {
		t.Fatal(err)
	}
	on0, on1 := channelsOn(0, 2, 2, "c"), channelsOn(1, 2, 1, "c")
	if err := b.Subscribe(ctx, on0[0]); err != nil {
		t.Fatal(err)
	}
	bad.refuse.Store(true)
	err = b.Subscribe(ctx, on0[0], on0[1], on1[0])
	if !errors.Is(err, broker.ErrUnavailable) || !strings.Contains(err.Error(), "shard 1 (m1)") {
		t.Fatalf("Subscribe with shard 1 refusing: %v", err)
	}
	for _, ch := range []string{on0[0], on0[1], on1[0]} {
		if _, err := b.Publish(ctx, ch, []byte(`"x"`), broker.PublishOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// The memory broker delivers synchronously within Publish.
	if got := len(rec.get(on0[0])); got != 1 {
		t.Errorf("%s, subscribed before: %d messages, want 1", on0[0], got)
	}
	if got := len(rec.get(on0[1])) + len(rec.get(on1[0])); got != 0 {
		t.Errorf("channels of the failed Subscribe got %d messages, want 0", got)
	}
	if got := b.Shards(); got[0].Err != nil || got[1].Addr != "m1" {
		t.Errorf("Shards() = %+v", got)
	}
}
