package nats

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/internal/natstest"
)

// sink is a Handler that records messages by channel and counts the state
// changes a StateHandler hears.
type sink struct {
	mu       sync.Mutex
	msgs     map[string][]broker.Message // guarded by mu
	lost     atomic.Int64
	restored atomic.Int64
}

func newSink() *sink { return &sink{msgs: make(map[string][]broker.Message)} }

func (s *sink) HandleMessage(m broker.Message) {
	s.mu.Lock()
	s.msgs[m.Channel] = append(s.msgs[m.Channel], m)
	s.mu.Unlock()
}

func (s *sink) SubscriptionsLost(error) { s.lost.Add(1) }
func (s *sink) SubscriptionsRestored()  { s.restored.Add(1) }
func (s *sink) get(ch string) []broker.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]broker.Message(nil), s.msgs[ch]...)
}

// waitFor polls cond for at most d; it fails t on timeout.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// startBroker starts a broker of srv with a sink.
func startBroker(t *testing.T, srv *natstest.Server) (*Broker, *sink) {
	t.Helper()
	b := newBroker(t, srv, Config{Timeout: time.Second, ReconnectDelay: 50 * time.Millisecond})
	s := newSink()
	if err := b.Start(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	return b, s
}

// TestStartBeforeNATS: Start succeeds without NATS; calls fail with
// ErrUnavailable until it comes, then work, and the first connection is
// no "restore".
func TestStartBeforeNATS(t *testing.T) {
	t.Parallel()
	srv := natstest.New(t, nil)
	b, s := startBroker(t, srv)
	ctx := context.Background()
	if err := b.Ready(); !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("Ready before NATS: %v, want ErrUnavailable", err)
	}
	if _, err := b.Publish(ctx, "c", []byte(`1`), broker.PublishOptions{}); !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("Publish before NATS: %v, want ErrUnavailable", err)
	}
	if err := b.Subscribe(ctx, "c"); !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("Subscribe before NATS: %v, want ErrUnavailable", err)
	}
	srv.Restart()
	waitFor(t, 10*time.Second, "Ready", func() bool { return b.Ready() == nil })
	if err := b.Subscribe(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Publish(ctx, "c", []byte(`1`), broker.PublishOptions{HistorySize: 5}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the message", func() bool { return len(s.get("c")) == 1 })
	if s.lost.Load() != 0 || s.restored.Load() != 0 {
		t.Errorf("first connection: %d lost, %d restored, want none", s.lost.Load(), s.restored.Load())
	}
}

// TestNATSRestart: NATS restarted (gracefully, its store on disk) while a
// publisher keeps publishing with idempotency keys and retrying what
// failed. The broker reports the loss and the recovery once each, its
// subscriptions come back, the history keeps every message exactly once
// with contiguous offsets in one epoch, and what the node missed live is
// exactly what history fills.
func TestNATSRestart(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t, nil)
	b, s := startBroker(t, srv)
	ctx := context.Background()
	const ch, total = "restart:ch", 300
	opts := broker.PublishOptions{HistorySize: 1000}
	if err := b.Subscribe(ctx, ch, "live"); err != nil {
		t.Fatal(err)
	}
	var published atomic.Int64
	done := make(chan error, 1)
	go func() {
		for i := range total {
			o := opts
			o.IdempotencyKey = "k" + strconv.Itoa(i)
			for {
				_, err := b.Publish(ctx, ch, []byte(strconv.Itoa(i)), o)
				if err == nil {
					break
				}
				if !errors.Is(err, broker.ErrUnavailable) {
					done <- fmt.Errorf("publish %d: %w", i, err)
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
			published.Add(1)
			time.Sleep(2 * time.Millisecond)
		}
		done <- nil
	}()
	waitFor(t, 10*time.Second, "100 published", func() bool { return published.Load() >= 100 })
	srv.Stop()
	waitFor(t, 5*time.Second, "the loss to be reported", func() bool { return s.lost.Load() == 1 })
	if err := b.Ready(); !errors.Is(err, broker.ErrUnavailable) {
		t.Errorf("Ready with NATS down: %v, want ErrUnavailable", err)
	}
	srv.Restart()
	waitFor(t, 10*time.Second, "the recovery to be reported", func() bool { return s.restored.Load() == 1 })
	if err := b.Ready(); err != nil {
		t.Errorf("Ready after the restart: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Live subscriptions are back.
	if _, err := b.Publish(ctx, "live", []byte(`"back"`), broker.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "a live message after the restart", func() bool { return len(s.get("live")) == 1 })

	res, err := b.History(ctx, ch, broker.HistoryRequest{Limit: 2 * total}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Messages) != total || res.Pos.Offset != total {
		t.Fatalf("history: %d messages up to offset %d, want %d", len(res.Messages), res.Pos.Offset, total)
	}
	for i, m := range res.Messages {
		if string(m.Data) != strconv.Itoa(i) || m.Pos != (broker.Position{Epoch: res.Pos.Epoch, Offset: uint64(i + 1)}) {
			t.Fatalf("history message %d: %s at %+v, want %d at offset %d of %s", i, m.Data, m.Pos, i, i+1, res.Pos.Epoch)
		}
	}
	// Deliveries: in order, no duplicate, and what is missing is in
	// history (the hub fills it from there).
	got := s.get(ch)
	seen := make(map[uint64]bool)
	var prev uint64
	for _, m := range got {
		if m.Pos.Epoch != res.Pos.Epoch || m.Pos.Offset <= prev {
			t.Fatalf("delivered %s at %+v after offset %d", m.Data, m.Pos, prev)
		}
		prev = m.Pos.Offset
		seen[m.Pos.Offset] = true
	}
	t.Logf("%d of %d delivered live; the rest is for the hub to fill from history", len(seen), total)
	if len(seen) < total/2 {
		t.Errorf("only %d of %d delivered live", len(seen), total)
	}
}

// TestNATSRestartEmpty: NATS comes back without its store (a restart
// without persistence). The channel's history is gone, so the next publish
// starts a new epoch at offset 1 and recovery from the old position fails.
func TestNATSRestartEmpty(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t, nil)
	b, s := startBroker(t, srv)
	ctx := context.Background()
	opts := broker.PublishOptions{HistorySize: 10}
	first, err := b.Publish(ctx, "e", []byte(`1`), opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.SetPresence(ctx, "e", []broker.PresenceEntry{{Client: "c", Node: "n"}}, time.Minute); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	srv.Wipe()
	srv.Restart()
	waitFor(t, 10*time.Second, "the recovery", func() bool { return s.restored.Load() == 1 })
	pos, err := b.Publish(ctx, "e", []byte(`1`), opts)
	if err != nil {
		t.Fatal(err)
	}
	if pos.Offset != 1 || pos.Epoch == first.Epoch {
		t.Fatalf("after a wipe: %+v, want offset 1 of an epoch other than %s", pos, first.Epoch)
	}
	res, err := b.History(ctx, "e", broker.HistoryRequest{Since: &first, Limit: 10}, opts)
	if err != nil || res.Recovered {
		t.Fatalf("recovery from the lost epoch: %+v, %v", res, err)
	}
	// Buckets come back too.
	if _, err := b.SetPresence(ctx, "e", []broker.PresenceEntry{{Client: "c", Node: "n"}}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Publish(ctx, "e2", []byte(`1`), broker.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestPrefixesIsolate: two brokers with different prefixes on one NATS
// see nothing of each other's channels, history or presence.
func TestPrefixesIsolate(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t, nil)
	a := newBroker(t, srv, Config{Prefix: "app1"})
	c := newBroker(t, srv, Config{Prefix: "app2"})
	sa, sc := newSink(), newSink()
	ctx := context.Background()
	if err := a.Start(ctx, sa); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx, sc); err != nil {
		t.Fatal(err)
	}
	for _, x := range []*Broker{a, c} {
		if err := x.Subscribe(ctx, "same", "hist"); err != nil {
			t.Fatal(err)
		}
	}
	opts := broker.PublishOptions{HistorySize: 10}
	if _, err := a.Publish(ctx, "same", []byte(`"a"`), broker.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Publish(ctx, "hist", []byte(`"a"`), opts); err != nil {
		t.Fatal(err)
	}
	if _, err := a.SetPresence(ctx, "same", []broker.PresenceEntry{{Client: "x", Node: "a"}}, time.Minute); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "a's messages", func() bool { return len(sa.get("same")) == 1 && len(sa.get("hist")) == 1 })
	// A marker through c's own namespace: once it arrives, a's would have.
	if _, err := c.Publish(ctx, "same", []byte(`"c"`), broker.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "c's message", func() bool { return len(sc.get("same")) == 1 })
	if got := sc.get("same"); string(got[0].Data) != `"c"` || len(sc.get("hist")) != 0 {
		t.Fatalf("prefix app2 received app1's messages: %v %v", got, sc.get("hist"))
	}
	res, err := c.History(ctx, "hist", broker.HistoryRequest{Limit: 10}, opts)
	if err != nil || len(res.Messages) != 0 {
		t.Fatalf("prefix app2 sees app1's history: %+v, %v", res, err)
	}
	if es, err := c.Presence(ctx, "same"); err != nil || len(es) != 0 {
		t.Fatalf("prefix app2 sees app1's presence: %v, %v", es, err)
	}
	// app2's node bucket is empty: no counts, no error.
	if counts, err := c.ClusterChannels(ctx); err != nil || len(counts) != 0 {
		t.Fatalf("ClusterChannels of an empty bucket: %v, %v", counts, err)
	}
}

// TestNoJetStream: a server without JetStream is a mistake the broker
// reports: Ready says why, and a publish fails rather than hangs.
func TestNoJetStream(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t, &natstest.Options{NoJetStream: true})
	b, _ := startBroker(t, srv)
	waitFor(t, 5*time.Second, "Ready to report JetStream", func() bool {
		err := b.Ready()
		return errors.Is(err, broker.ErrUnavailable) && strings.Contains(err.Error(), "JetStream")
	})
	if _, err := b.Publish(context.Background(), "c", []byte(`1`), broker.PublishOptions{}); err == nil {
		t.Fatal("Publish without JetStream succeeded")
	}
}

// TestHistoryWithoutOptions: a node that never used a channel finds its
// history without being told its size and ttl, among its prefix's streams.
func TestHistoryWithoutOptions(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t, nil)
	a, _ := startBroker(t, srv)
	c, _ := startBroker(t, srv)
	ctx := context.Background()
	opts := broker.PublishOptions{HistorySize: 7, HistoryTTL: time.Hour}
	if _, err := a.Publish(ctx, "other", []byte(`0`), broker.PublishOptions{HistorySize: 3}); err != nil {
		t.Fatal(err)
	}
	var last broker.Position
	for i := range 3 {
		pos, err := a.Publish(ctx, "h", []byte(strconv.Itoa(i)), opts)
		if err != nil {
			t.Fatal(err)
		}
		last = pos
	}
	res, err := c.History(ctx, "h", broker.HistoryRequest{Limit: 10}, broker.PublishOptions{})
	if err != nil || res.Pos != last || len(res.Messages) != 3 {
		t.Fatalf("History without options: %+v, %v; want 3 messages up to %+v", res, err, last)
	}
	if res, err := c.History(ctx, "never", broker.HistoryRequest{Limit: 10}, broker.PublishOptions{}); err != nil || !res.Pos.IsZero() {
		t.Fatalf("History without options of a channel without history: %+v, %v", res, err)
	}
}
