package brokertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/broker"
)

// Factory makes the brokers the suite tests.
type Factory struct {
	// New returns a new broker, not yet started. Run starts it with its own
	// Handler and closes it when the test ends. With Shared, every broker New
	// returns uses the same backend.
	New func(t *testing.T) broker.Broker

	// Shared reports that the brokers New returns are nodes of one
	// backend, so that the suite can test what several nodes share.
	Shared bool

	// History and Presence declare what the brokers can do: keep history
	// (broker.Historian), and presence with channel counts
	// (broker.Presencer, broker.NodeCounter). The suite fails when a broker
	// lacks what its factory declares; the tests of what it neither
	// declares nor implements are skipped.
	History, Presence bool

	// Timeout bounds every wait of the suite for a delivery. Zero means
	// 5 seconds.
	Timeout time.Duration
}

// Run runs the conformance suite against the brokers f makes.
func Run(t *testing.T, f Factory) {
	t.Helper()
	if f.New == nil {
		t.Fatal("brokertest: Factory.New is nil")
	}
	if f.Timeout <= 0 {
		f.Timeout = 5 * time.Second
	}
	s := &suite{f: f}
	tests := []struct {
		name   string
		run    func(t *testing.T, s *suite)
		shared bool // needs Factory.Shared
		hist   bool // needs broker.Historian
		pres   bool // needs broker.Presencer and broker.NodeCounter
	}{
		{name: "DeliveryAfterSubscribe", run: testDeliveryAfterSubscribe},
		{name: "DataRoundTrip", run: testDataRoundTrip},
		{name: "BinaryRoundTrip", run: testBinaryRoundTrip},
		{name: "BinaryHistory", run: testBinaryHistory, hist: true},
		{name: "PublishWithoutSubscribers", run: testPublishWithoutSubscribers},
		{name: "OrderUnderConcurrentPublishers", run: testOrder},
		{name: "Unsubscribe", run: testUnsubscribe},
		{name: "IdempotentSubscribe", run: testIdempotent},
		{name: "ManyChannels", run: testManyChannels},
		{name: "Close", run: testClose},
		{name: "HistoryOffsets", run: testHistoryOffsets, hist: true},
		{name: "HistoryLimit", run: testHistoryLimit, hist: true},
		{name: "HistorySince", run: testHistorySince, hist: true},
		{name: "HistoryFreshChannel", run: testHistoryFresh, hist: true},
		{name: "HistoryDeliveredPosition", run: testHistoryDeliveredPos, hist: true},
		{name: "HistoryExpires", run: testHistoryExpires, hist: true},
		{name: "HistoryOrderUnderConcurrentPublishers", run: testHistoryOrder, hist: true},
		{name: "SharedDelivery", run: testSharedDelivery, shared: true},
		{name: "SharedOrder", run: testSharedOrder, shared: true},
		{name: "SharedHistory", run: testSharedHistory, shared: true, hist: true},
		{name: "IdempotentPublish", run: testIdempotentPublish},
		{name: "IdempotentPublishHistory", run: testIdempotentPublishHistory, hist: true},
		{name: "Presence", run: testPresence, pres: true},
		{name: "PresenceExpires", run: testPresenceExpires, pres: true},
		{name: "SharedPresence", run: testSharedPresence, pres: true, shared: true},
		{name: "NodeCounts", run: testNodeCounts, pres: true},
		{name: "Members", run: testMembers, pres: true},
		{name: "Skip", run: testSkip},
	}
	probe := f.New(t)
	_, historian := probe.(broker.Historian)
	_, presencer := probe.(broker.Presencer)
	_, counter := probe.(broker.NodeCounter)
	ctx, cancel := context.WithTimeout(context.Background(), f.Timeout)
	err := probe.Close(ctx)
	cancel()
	if err != nil && !errors.Is(err, broker.ErrClosed) {
		t.Fatalf("Close of a broker never started: %v", err)
	}
	if f.History && !historian {
		t.Fatalf("brokertest: the factory declares History, but %T does not implement broker.Historian", probe)
	}
	if f.Presence && !(presencer && counter) {
		t.Fatalf("brokertest: the factory declares Presence, but %T does not implement broker.Presencer and broker.NodeCounter", probe)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.shared && !f.Shared {
				t.Skip("brokertest: the Factory's brokers do not share a backend")
			}
			if tc.hist && !historian {
				t.Skip("brokertest: the broker does not implement broker.Historian")
			}
			if tc.pres && !(presencer && counter) {
				t.Skip("brokertest: the broker does not implement broker.Presencer and broker.NodeCounter")
			}
			tc.run(t, s)
		})
	}
}

// suite is what the tests share.
type suite struct {
	f Factory
}

// node is one started broker with the Handler that records its deliveries.
type node struct {
	broker.Broker
	rec *recorder
}

// node starts a new broker and closes it when t ends.
func (s *suite) node(t *testing.T) *node {
	t.Helper()
	b := s.f.New(t)
	rec := newRecorder()
	if err := b.Start(context.Background(), rec); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := b.Close(ctx); err != nil && !errors.Is(err, broker.ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return &node{Broker: b, rec: rec}
}

// historian returns n's broker as a Historian.
func (n *node) historian(t *testing.T) broker.Historian {
	t.Helper()
	h, ok := n.Broker.(broker.Historian)
	if !ok {
		t.Fatal("broker does not implement broker.Historian")
	}
	return h
}

// channel returns a channel name unique to this run of t.
func channel(t *testing.T, suffix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := strings.NewReplacer("/", ".", " ", "_").Replace(t.Name())
	return fmt.Sprintf("bt:%s:%s:%s", name, hex.EncodeToString(b[:]), suffix)
}

// waitFor polls cond until it holds, failing t after the suite's timeout.
func (s *suite) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(s.f.Timeout)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", s.f.Timeout, what)
		}
		<-tick.C
	}
}

// waitCount waits until n has received want messages on ch and returns
// them; it fails when more arrive.
func (s *suite) waitCount(t *testing.T, n *node, ch string, want int) []broker.Message {
	t.Helper()
	s.waitFor(t, fmt.Sprintf("%d messages on %s", want, ch), func() bool { return len(n.rec.get(ch)) >= want })
	got := n.rec.get(ch)
	if len(got) != want {
		t.Fatalf("got %d messages on %s, want %d: %s", len(got), ch, want, dataOf(got))
	}
	n.rec.checkSerial(t)
	return got
}

// publish publishes data and fails t on error.
func publish(t *testing.T, n *node, ch, data string, opts broker.PublishOptions) broker.Position {
	t.Helper()
	pos, err := n.Publish(context.Background(), ch, []byte(data), opts)
	if err != nil {
		t.Fatalf("Publish(%s, %s): %v", ch, data, err)
	}
	return pos
}

func subscribe(t *testing.T, n *node, chs ...string) {
	t.Helper()
	if err := n.Subscribe(context.Background(), chs...); err != nil {
		t.Fatalf("Subscribe(%d channels): %v", len(chs), err)
	}
}

func unsubscribe(t *testing.T, n *node, chs ...string) {
	t.Helper()
	if err := n.Unsubscribe(context.Background(), chs...); err != nil {
		t.Fatalf("Unsubscribe(%d channels): %v", len(chs), err)
	}
}

// dataOf returns the data of ms, for messages.
func dataOf(ms []broker.Message) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = string(m.Data)
		if !m.Pos.IsZero() {
			parts[i] += fmt.Sprintf("@%s/%d", m.Pos.Epoch, m.Pos.Offset)
		}
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// recorder is a Handler that records every message by channel and checks
// that no channel's messages are handled concurrently.
type recorder struct {
	mu      sync.Mutex
	msgs    map[string][]broker.Message // guarded by mu
	busy    sync.Map                    // channel -> *atomic.Int32, handlers running
	overlap atomic.Int64                // handler calls that overlapped on one channel
}

func newRecorder() *recorder { return &recorder{msgs: make(map[string][]broker.Message)} }

// HandleMessage records m.
func (r *recorder) HandleMessage(m broker.Message) {
	v, _ := r.busy.LoadOrStore(m.Channel, new(atomic.Int32))
	n := v.(*atomic.Int32)
	if n.Add(1) > 1 {
		r.overlap.Add(1)
	}
	m.Data = slices.Clone(m.Data)
	r.mu.Lock()
	r.msgs[m.Channel] = append(r.msgs[m.Channel], m)
	r.mu.Unlock()
	n.Add(-1)
}

// get returns a copy of the messages received on ch.
func (r *recorder) get(ch string) []broker.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.msgs[ch])
}

// checkSerial fails t when a channel's messages were handled concurrently.
func (r *recorder) checkSerial(t *testing.T) {
	t.Helper()
	if n := r.overlap.Load(); n > 0 {
		t.Fatalf("%d Handler calls overlapped with another of the same channel", n)
	}
}

// seqMsg is the data the order tests publish.
type seqMsg struct {
	P int `json:"p"` // publisher
	N int `json:"n"` // publisher's sequence number
}

// checkPublisherOrder fails t unless ms holds, for each of pubs publishers,
// its messages 0..per-1 in order.
func checkPublisherOrder(t *testing.T, ms []broker.Message, pubs, per int) {
	t.Helper()
	next := make([]int, pubs)
	for i, m := range ms {
		var sm seqMsg
		if err := json.Unmarshal(m.Data, &sm); err != nil {
			t.Fatalf("message %d: %q: %v", i, m.Data, err)
		}
		if sm.P < 0 || sm.P >= pubs || sm.N != next[sm.P] {
			t.Fatalf("message %d is %s, want publisher %d's message %d", i, m.Data, sm.P, next[max(0, min(sm.P, pubs-1))])
		}
		next[sm.P]++
	}
	for p, n := range next {
		if n != per {
			t.Fatalf("publisher %d: %d messages delivered, want %d", p, n, per)
		}
	}
}

// publishConcurrently publishes per messages from each of pubs goroutines
// through the nodes in turn, and returns the positions Publish returned.
func publishConcurrently(t *testing.T, nodes []*node, ch string, pubs, per int, opts broker.PublishOptions) []broker.Position {
	t.Helper()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		poss []broker.Position
		errs = make(chan error, pubs)
	)
	for p := range pubs {
		wg.Go(func() {
			n := nodes[p%len(nodes)]
			for i := range per {
				data, _ := json.Marshal(seqMsg{P: p, N: i})
				pos, err := n.Publish(context.Background(), ch, data, opts)
				if err != nil {
					errs <- fmt.Errorf("publisher %d message %d: %w", p, i, err)
					return
				}
				mu.Lock()
				poss = append(poss, pos)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return poss
}
