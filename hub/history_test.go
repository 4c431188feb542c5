package hub_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/hub"
)

// messageOffsets decodes message events and returns their data values,
// checking that their offsets follow each other.
func messageData(t *testing.T, fs []frame) []int {
	t.Helper()
	var out []int
	var last uint64
	for _, f := range fs {
		var m struct {
			Op     string
			Data   int
			Offset uint64
		}
		if err := json.Unmarshal(f.payload, &m); err != nil {
			t.Fatalf("%q: %v", f.payload, err)
		}
		if m.Op != "message" {
			continue
		}
		if last != 0 && m.Offset != last+1 {
			t.Fatalf("offset %d after %d", m.Offset, last)
		}
		last = m.Offset
		out = append(out, m.Data)
	}
	return out
}

func TestHistoryRequest(t *testing.T) {
	h, _ := newHub(t, hub.Config{Default: hub.NamespaceOptions{HistorySize: 3}})
	for i := range 5 {
		if _, err := h.Publish(context.Background(), "h", fmt.Appendf(nil, "%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	c, ft := connect(t, h)
	c.HandleText([]byte(`{"id":1,"op":"history","channel":"h","limit":2}`))
	c.HandleText([]byte(`{"id":2,"op":"history","channel":"h"}`))
	fs := ft.waitFrames(t, 3)
	var r1, r2 struct {
		Epoch    string
		Offset   uint64
		Messages []struct {
			Offset uint64
			Data   int
		}
	}
	if err := json.Unmarshal(fs[1].payload, &r1); err != nil || r1.Offset != 5 || len(r1.Messages) != 2 || r1.Messages[0].Data != 3 || r1.Messages[1].Offset != 5 {
		t.Errorf("history limit 2: %s", fs[1].payload)
	}
	if err := json.Unmarshal(fs[2].payload, &r2); err != nil || len(r2.Messages) != 3 || r2.Messages[0].Offset != 3 || r2.Epoch != r1.Epoch {
		t.Errorf("history: %s", fs[2].payload)
	}
}

// TestRecoveryUnderLoad subscribes with since while a publisher keeps
// publishing: the client gets every message after since exactly once, in
// order, then the live ones.
func TestRecoveryUnderLoad(t *testing.T) {
	h, _ := newHub(t, hub.Config{Default: hub.NamespaceOptions{HistorySize: 10000}})
	var published atomic.Int64
	pub := func() {
		n := published.Add(1)
		if _, err := h.Publish(context.Background(), "r", fmt.Appendf(nil, "%d", n)); err != nil {
			t.Error(err)
		}
	}
	for range 100 {
		pub()
	}
	// Learn the epoch from a first subscription.
	first, ft1 := connect(t, h)
	first.HandleText([]byte(`{"id":1,"op":"subscribe","channel":"r"}`))
	var reply struct {
		Epoch  string
		Offset uint64
	}
	if err := json.Unmarshal(ft1.waitFrames(t, 2)[1].payload, &reply); err != nil || reply.Offset != 100 {
		t.Fatalf("subscribe reply: %+v %v", reply, err)
	}
	// The publisher goes on during the recoveries below, within the
	// history's size.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(stop)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for published.Load() < 5000 {
			select {
			case <-stop:
				return
			default:
				pub()
			}
		}
	}()
	for round := range 10 {
		since := uint64(20 + round*5)
		c, ft := connect(t, h)
		c.HandleText(fmt.Appendf(nil, `{"id":1,"op":"subscribe","channel":"r","since":{"epoch":%q,"offset":%d}}`, reply.Epoch, since))
		fs := ft.waitFrames(t, 3)
		var r struct {
			OK        bool
			Recovered bool
			Offset    uint64
		}
		if err := json.Unmarshal(fs[1].payload, &r); err != nil || !r.OK || !r.Recovered {
			t.Fatalf("round %d: reply %s", round, fs[1].payload)
		}
		// Wait for a few live messages past the reply's position.
		target := min(int(r.Offset)+20, 5000)
		for published.Load() < int64(target) {
			runtime.Gosched()
		}
		fs = ft.waitFrames(t, 2+target-int(since))
		got := messageData(t, fs[2:])
		for i, d := range got[:target-int(since)] {
			if d != int(since)+1+i {
				t.Fatalf("round %d: message %d is %d, want %d", round, i, d, int(since)+1+i)
			}
		}
	}
}

// TestRecoveryImpossible checks recovered:false with the current position
// when the epoch is unknown or the messages left history.
func TestRecoveryImpossible(t *testing.T) {
	h, _ := newHub(t, hub.Config{Default: hub.NamespaceOptions{HistorySize: 5}})
	for i := range 20 {
		if _, err := h.Publish(context.Background(), "x", fmt.Appendf(nil, "%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	res, err := h.History(context.Background(), "x", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, since := range []string{`{"epoch":"gone","offset":3}`, fmt.Sprintf(`{"epoch":%q,"offset":2}`, res.Pos.Epoch)} {
		c, ft := connect(t, h)
		c.HandleText([]byte(`{"id":1,"op":"subscribe","channel":"x","since":` + since + `}`))
		want := fmt.Sprintf(`{"id":1,"ok":true,"epoch":%q,"offset":20,"recovered":false}`, res.Pos.Epoch)
		if got := string(ft.waitFrames(t, 2)[1].payload); got != want {
			t.Errorf("since %s: %s, want %s", since, got, want)
		}
	}
}

// lossyBroker drops the messages handed to the hub while drop is set, as a
// node whose broker subscription broke for a while.
type lossyBroker struct {
	*countingBroker
	drop atomic.Bool
}

func (b *lossyBroker) Start(ctx context.Context, h broker.Handler) error {
	return b.countingBroker.Start(ctx, broker.HandlerFunc(func(m broker.Message) {
		if !b.drop.Load() {
			h.HandleMessage(m)
		}
	}))
}

// newLossyHub returns a hub with history whose broker drops messages while
// told to.
func newLossyHub(t *testing.T) (*hub.Hub, *lossyBroker) {
	t.Helper()
	_, cb := newHub(t, hub.Config{})
	lb := &lossyBroker{countingBroker: cb}
	h, err := hub.New(hub.Config{Broker: lb, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Default: hub.NamespaceOptions{HistorySize: 100}})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Shutdown(context.Background()) })
	return h, lb
}

// TestNodeFillsGap checks that a node that missed messages fills the gap
// from history before delivering newer ones.
func TestNodeFillsGap(t *testing.T) {
	h, lb := newLossyHub(t)
	c, ft := connect(t, h)
	c.HandleText([]byte(`{"id":1,"op":"subscribe","channel":"g"}`))
	ft.waitFrames(t, 2)
	publish := func(from, to int) {
		for i := from; i <= to; i++ {
			if _, err := h.Publish(context.Background(), "g", fmt.Appendf(nil, "%d", i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish(1, 10)
	lb.drop.Store(true)
	publish(11, 20)
	lb.drop.Store(false)
	publish(21, 30)
	got := messageData(t, ft.waitFrames(t, 2+30)[2:])
	for i, d := range got {
		if d != i+1 {
			t.Fatalf("message %d is %d: %v", i, d, got)
		}
	}
	if h.Stats().GapsFilled != 1 {
		t.Errorf("gaps filled = %d, want 1", h.Stats().GapsFilled)
	}
}

// TestRestoreFillsGap: when the broker reports its subscriptions restored,
// the node delivers what it missed without waiting for a newer message.
func TestRestoreFillsGap(t *testing.T) {
	h, lb := newLossyHub(t)
	c, ft := connect(t, h)
	c.HandleText([]byte(`{"id":1,"op":"subscribe","channel":"g"}`))
	ft.waitFrames(t, 2)
	for i := 1; i <= 10; i++ {
		if i == 4 {
			lb.drop.Store(true)
			h.SubscriptionsLost(nil)
		}
		if _, err := h.Publish(context.Background(), "g", fmt.Appendf(nil, "%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	lb.drop.Store(false)
	h.SubscriptionsRestored()
	got := messageData(t, ft.waitFrames(t, 2+10)[2:])
	for i, d := range got {
		if d != i+1 {
			t.Fatalf("message %d is %d: %v", i, d, got)
		}
	}
}

// slowBroker holds back the messages handed to the hub while hold is set,
// as a node whose pub/sub copy of a message is still on its way while the
// message is already in history; release hands them over in order.
type slowBroker struct {
	*countingBroker
	mu   sync.Mutex
	h    broker.Handler
	hold bool
	held []broker.Message
}

func (b *slowBroker) Start(ctx context.Context, h broker.Handler) error {
	b.h = h
	return b.countingBroker.Start(ctx, broker.HandlerFunc(func(m broker.Message) {
		b.mu.Lock()
		if b.hold {
			b.held = append(b.held, m)
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		h.HandleMessage(m)
	}))
}

func (b *slowBroker) setHold(on bool) {
	b.mu.Lock()
	b.hold = on
	held := b.held
	b.held = nil
	b.mu.Unlock()
	for _, m := range held {
		b.h.HandleMessage(m)
	}
}

// TestRecoveryAheadOfNode: a client that resubscribes while history holds
// a message this node has not yet received from the broker gets it once,
// not from history and then again live.
func TestRecoveryAheadOfNode(t *testing.T) {
	_, cb := newHub(t, hub.Config{})
	sb := &slowBroker{countingBroker: cb}
	h, err := hub.New(hub.Config{Broker: sb, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Default: hub.NamespaceOptions{HistorySize: 100}})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Shutdown(context.Background()) })
	publish := func(i int) broker.Position {
		t.Helper()
		pos, err := h.Publish(context.Background(), "d", fmt.Appendf(nil, "%d", i))
		if err != nil {
			t.Fatal(err)
		}
		return pos
	}
	a, fa := connect(t, h)
	a.HandleText([]byte(`{"id":1,"op":"subscribe","channel":"d"}`))
	fa.waitFrames(t, 2)
	var pos broker.Position
	for i := 1; i <= 3; i++ {
		pos = publish(i)
	}
	fa.waitFrames(t, 2+3)

	sb.setHold(true)
	publish(4) // in history; its pub/sub copy not yet at this node
	b, fb := connect(t, h)
	b.HandleText(fmt.Appendf(nil, `{"id":1,"op":"subscribe","channel":"d","since":{"epoch":%q,"offset":%d}}`, pos.Epoch, pos.Offset))
	fb.waitFrames(t, 2)
	sb.setHold(false)
	publish(5)

	if got := messageData(t, fa.waitFrames(t, 2+5)[2:]); fmt.Sprint(got) != "[1 2 3 4 5]" {
		t.Errorf("live client got %v, want [1 2 3 4 5]", got)
	}
	// Once 6 is there every copy of 4 and 5 is too: a duplicate shows.
	publish(6)
	if got := messageData(t, fb.waitFrames(t, 2+3)[2:]); fmt.Sprint(got) != "[4 5 6]" {
		t.Errorf("resubscribed client got %v, want [4 5 6]", got)
	}
}
