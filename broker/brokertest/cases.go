package brokertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/broker"
)

// noHistory publishes without history.
var noHistory = broker.PublishOptions{}

func testDeliveryAfterSubscribe(t *testing.T, s *suite) {
	n := s.node(t)
	ch := channel(t, "a")
	subscribe(t, n, ch)
	pos := publish(t, n, ch, `{"hello":1}`, noHistory)
	if !pos.IsZero() {
		t.Errorf("Publish without history returned position %+v, want zero", pos)
	}
	got := s.waitCount(t, n, ch, 1)
	if m := got[0]; m.Channel != ch || string(m.Data) != `{"hello":1}` || !m.Pos.IsZero() {
		t.Errorf("delivered %+v, want {%s {\"hello\":1} zero position}", m, ch)
	}
}

func testDataRoundTrip(t *testing.T, s *suite) {
	n := s.node(t)
	ch := channel(t, "data")
	subscribe(t, n, ch)
	big := `"` + strings.Repeat("0123456789abcdef", 8<<10) + `"`
	datas := []string{`1`, `"x"`, `{"text":"ünï\u0000cødé\n\t"}`, `[1,2,{"a":null}]`, `""`, big}
	for _, d := range datas {
		publish(t, n, ch, d, noHistory)
	}
	got := s.waitCount(t, n, ch, len(datas))
	for i, m := range got {
		if string(m.Data) != datas[i] {
			t.Errorf("message %d: data %.40q (%d bytes), want %.40q (%d bytes)", i, m.Data, len(m.Data), datas[i], len(datas[i]))
		}
	}
}

// binaryDatas are binary messages that JSON could not carry: every byte
// value, the payload marks a broker might use, commas, and nothing at all.
func binaryDatas() [][]byte {
	every := make([]byte, 256)
	for i := range every {
		every[i] = byte(i)
	}
	return [][]byte{every, {0x01, '1', ',', 'e', ','}, {0x02}, {0}, {}, []byte(`{"looks":"like JSON"}`), bytes.Repeat([]byte{0xff, 0x00, ','}, 40<<10)}
}

// checkBinary fails t unless got holds want's data, each marked binary
// when binary is set and not otherwise.
func checkBinary(t *testing.T, what string, got []broker.Message, want [][]byte, binary bool) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d messages, want %d", what, len(got), len(want))
	}
	for i, m := range got {
		if !bytes.Equal(m.Data, want[i]) || m.Binary != binary {
			t.Errorf("%s: message %d is %.40q (%d bytes, binary %v), want %.40q (%d bytes, binary %v)",
				what, i, m.Data, len(m.Data), m.Binary, want[i], len(want[i]), binary)
		}
	}
}

// Binary data is delivered byte for byte and marked binary; JSON published
// after it is not marked.
func testBinaryRoundTrip(t *testing.T, s *suite) {
	n := s.node(t)
	ch := channel(t, "bin")
	subscribe(t, n, ch)
	datas := binaryDatas()
	for _, d := range datas {
		if _, err := n.Publish(context.Background(), ch, d, broker.PublishOptions{Binary: true}); err != nil {
			t.Fatalf("Publish binary: %v", err)
		}
	}
	checkBinary(t, "delivered", s.waitCount(t, n, ch, len(datas)), datas, true)
	publish(t, n, ch, `"\u0001text"`, noHistory)
	got := s.waitCount(t, n, ch, len(datas)+1)
	if m := got[len(datas)]; m.Binary || string(m.Data) != `"\u0001text"` {
		t.Errorf("JSON after binary delivered as %q (binary %v)", m.Data, m.Binary)
	}
}

// Binary data keeps its mark in history, between JSON messages that do
// not have it, and the delivered copies carry their positions.
func testBinaryHistory(t *testing.T, s *suite) {
	n := s.node(t)
	ch := channel(t, "binh")
	subscribe(t, n, ch)
	opts := broker.PublishOptions{HistorySize: 20}
	bin := opts
	bin.Binary = true
	datas := binaryDatas()
	var poss []broker.Position
	for _, d := range datas {
		pos, err := n.Publish(context.Background(), ch, d, bin)
		if err != nil {
			t.Fatalf("Publish binary: %v", err)
		}
		poss = append(poss, pos)
		poss = append(poss, publish(t, n, ch, `{"json":true}`, opts))
	}
	var wantData [][]byte
	for _, d := range datas {
		wantData = append(wantData, d, []byte(`{"json":true}`))
	}
	check := func(what string, ms []broker.Message) {
		t.Helper()
		if len(ms) != len(wantData) {
			t.Fatalf("%s: %d messages, want %d", what, len(ms), len(wantData))
		}
		for i, m := range ms {
			binary := i%2 == 0
			if !bytes.Equal(m.Data, wantData[i]) || m.Binary != binary || m.Pos != poss[i] {
				t.Errorf("%s: message %d is %.40q binary %v at %+v, want %.40q binary %v at %+v",
					what, i, m.Data, m.Binary, m.Pos, wantData[i], binary, poss[i])
			}
		}
	}
	check("delivered", s.waitCount(t, n, ch, len(wantData)))
	res := history(t, n, ch, broker.HistoryRequest{Limit: 20}, opts)
	check("history", res.Messages)
	since := history(t, n, ch, broker.HistoryRequest{Since: &poss[0], Limit: 20}, opts)
	check("history since the first", append([]broker.Message{res.Messages[0]}, since.Messages...))
}

func testPublishWithoutSubscribers(t *testing.T, s *suite) {
	n := s.node(t)
	ch := channel(t, "a")
	publish(t, n, ch, `"before"`, noHistory)
	subscribe(t, n, ch)
	publish(t, n, ch, `"after"`, noHistory)
	// The channel's order puts "before" first if it were delivered at all.
	got := s.waitCount(t, n, ch, 1)
	if string(got[0].Data) != `"after"` {
		t.Errorf("delivered %s, want only \"after\"", dataOf(got))
	}
}

func testOrder(t *testing.T, s *suite) {
	const pubs, per = 4, 100
	n := s.node(t)
	ch := channel(t, "order")
	subscribe(t, n, ch)
	publishConcurrently(t, []*node{n}, ch, pubs, per, noHistory)
	got := s.waitCount(t, n, ch, pubs*per)
	checkPublisherOrder(t, got, pubs, per)
}

func testUnsubscribe(t *testing.T, s *suite) {
	n := s.node(t)
	a, b := channel(t, "a"), channel(t, "b")
	subscribe(t, n, a, b)
	publish(t, n, a, `"a1"`, noHistory)
	s.waitCount(t, n, a, 1)
	unsubscribe(t, n, a)
	publish(t, n, a, `"a2"`, noHistory) // lost: nobody subscribed
	publish(t, n, b, `"b1"`, noHistory) // b is still delivered
	s.waitCount(t, n, b, 1)
	subscribe(t, n, a)
	publish(t, n, a, `"a3"`, noHistory)
	// a2, had it been delivered, would come before a3.
	got := s.waitCount(t, n, a, 2)
	if string(got[1].Data) != `"a3"` {
		t.Errorf("delivered on %s: %s, want [\"a1\" \"a3\"]", a, dataOf(got))
	}
}

func testIdempotent(t *testing.T, s *suite) {
	n := s.node(t)
	a, b, never := channel(t, "a"), channel(t, "b"), channel(t, "never")
	subscribe(t, n, a)
	subscribe(t, n, a, b, a)
	subscribe(t, n) // no channels: a no-op
	publish(t, n, a, `"a1"`, noHistory)
	publish(t, n, b, `"b1"`, noHistory)
	s.waitCount(t, n, b, 1)
	// One subscription, one delivery, however often it was asked for.
	if got := s.waitCount(t, n, a, 1); string(got[0].Data) != `"a1"` {
		t.Errorf("delivered on %s: %s", a, dataOf(got))
	}
	unsubscribe(t, n, never)
	unsubscribe(t, n, a) // one Unsubscribe undoes every Subscribe
	unsubscribe(t, n, a, a)
	unsubscribe(t, n)
	publish(t, n, a, `"a2"`, noHistory)
	subscribe(t, n, a)
	publish(t, n, a, `"a3"`, noHistory)
	got := s.waitCount(t, n, a, 2)
	if string(got[1].Data) != `"a3"` {
		t.Errorf("delivered on %s: %s, want [\"a1\" \"a3\"]", a, dataOf(got))
	}
}

func testManyChannels(t *testing.T, s *suite) {
	const batch, batches = 300, 4
	n := s.node(t)
	var chs []string
	var wg sync.WaitGroup
	errs := make(chan error, batches)
	for i := range batches {
		var part []string
		for j := range batch {
			part = append(part, channel(t, fmt.Sprintf("%d.%d", i, j)))
		}
		chs = append(chs, part...)
		// Batches subscribe concurrently, each with many channels at once.
		wg.Go(func() {
			if err := n.Subscribe(context.Background(), part...); err != nil {
				errs <- fmt.Errorf("Subscribe(%d channels): %w", len(part), err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i, ch := range chs {
		publish(t, n, ch, fmt.Sprint(i), noHistory)
	}
	s.waitFor(t, "a message on every channel", func() bool {
		for _, ch := range chs {
			if len(n.rec.get(ch)) == 0 {
				return false
			}
		}
		return true
	})
	for i, ch := range chs {
		if got := n.rec.get(ch); len(got) != 1 || string(got[0].Data) != fmt.Sprint(i) {
			t.Fatalf("channel %d: delivered %s, want [%d]", i, dataOf(got), i)
		}
	}
	unsubscribe(t, n, chs...)
	// After unsubscribing everything, a resubscribed channel gets only what
	// follows.
	last := chs[len(chs)-1]
	publish(t, n, last, `"gone"`, noHistory)
	subscribe(t, n, last)
	publish(t, n, last, `"back"`, noHistory)
	if got := s.waitCount(t, n, last, 2); string(got[1].Data) != `"back"` {
		t.Errorf("delivered on the last channel: %s", dataOf(got))
	}
}

func testClose(t *testing.T, s *suite) {
	n := s.node(t)
	ch := channel(t, "a")
	subscribe(t, n, ch)
	ctx, cancel := context.WithTimeout(context.Background(), s.f.Timeout)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := n.Publish(ctx, ch, []byte(`1`), noHistory); !errors.Is(err, broker.ErrClosed) {
		t.Errorf("Publish after Close: %v, want ErrClosed", err)
	}
	if _, err := n.Publish(ctx, ch, []byte(`1`), broker.PublishOptions{HistorySize: 5}); !errors.Is(err, broker.ErrClosed) {
		t.Errorf("Publish with history after Close: %v, want ErrClosed", err)
	}
	if err := n.Subscribe(ctx, ch); !errors.Is(err, broker.ErrClosed) {
		t.Errorf("Subscribe after Close: %v, want ErrClosed", err)
	}
	if err := n.Unsubscribe(ctx, ch); !errors.Is(err, broker.ErrClosed) {
		t.Errorf("Unsubscribe after Close: %v, want ErrClosed", err)
	}
	if h, ok := n.Broker.(broker.Historian); ok {
		if _, err := h.History(ctx, ch, broker.HistoryRequest{Limit: 1}, broker.PublishOptions{HistorySize: 5}); !errors.Is(err, broker.ErrClosed) {
			t.Errorf("History after Close: %v, want ErrClosed", err)
		}
	}
	if r, ok := n.Broker.(broker.Readier); ok {
		if err := r.Ready(); err == nil {
			t.Error("Ready after Close: nil, want an error")
		}
	}
	if err := n.Close(ctx); err != nil && !errors.Is(err, broker.ErrClosed) {
		t.Errorf("second Close: %v, want nil or ErrClosed", err)
	}
	if got := n.rec.get(ch); len(got) != 0 {
		t.Errorf("delivered after Close: %s", dataOf(got))
	}
}

// history reads ch's history and fails t on error.
func history(t *testing.T, n *node, ch string, req broker.HistoryRequest, opts broker.PublishOptions) broker.HistoryResult {
	t.Helper()
	res, err := n.historian(t).History(context.Background(), ch, req, opts)
	if err != nil {
		t.Fatalf("History(%s, %+v): %v", ch, req, err)
	}
	return res
}

// checkOffsets fails t unless ms are the messages from..to of epoch, in
// order, with data equal to their offset.
func checkOffsets(t *testing.T, what string, ms []broker.Message, epoch string, from, to uint64) {
	t.Helper()
	want := int(to - from + 1)
	if from > to {
		want = 0
	}
	if len(ms) != want {
		t.Fatalf("%s: got %s, want offsets %d..%d", what, dataOf(ms), from, to)
	}
	for i, m := range ms {
		off := from + uint64(i)
		if m.Pos != (broker.Position{Epoch: epoch, Offset: off}) || string(m.Data) != fmt.Sprint(off) {
			t.Fatalf("%s: got %s, want offsets %d..%d of epoch %s", what, dataOf(ms), from, to, epoch)
		}
	}
}

// publishN publishes n messages whose data is their expected offset after
// first-1, and returns the epoch.
func publishN(t *testing.T, nd *node, ch string, first uint64, n int, opts broker.PublishOptions) string {
	t.Helper()
	var epoch string
	for i := range n {
		want := first + uint64(i)
		pos := publish(t, nd, ch, fmt.Sprint(want), opts)
		if pos.Epoch == "" || pos.Offset != want || (epoch != "" && pos.Epoch != epoch) {
			t.Fatalf("publish %d: position %+v, want offset %d in epoch %q", i, pos, want, epoch)
		}
		epoch = pos.Epoch
	}
	return epoch
}

func testHistoryOffsets(t *testing.T, s *suite) {
	n := s.node(t)
	ch := channel(t, "h")
	opts := broker.PublishOptions{HistorySize: 100}
	before := time.Now().UnixMilli()
	epoch := publishN(t, n, ch, 1, 20, opts)
	after := time.Now().UnixMilli()
	res := history(t, n, ch, broker.HistoryRequest{Limit: 100}, opts)
	for _, m := range res.Messages {
		// History keeps each message's publish time.
		if m.Time < before || m.Time > after {
			t.Errorf("offset %d: Time %d, want the publish time, in [%d, %d]", m.Pos.Offset, m.Time, before, after)
			break
		}
	}
	if res.Pos != (broker.Position{Epoch: epoch, Offset: 20}) || res.Recovered {
		t.Errorf("position %+v recovered %v, want %s/20 not recovered", res.Pos, res.Recovered, epoch)
	}
	checkOffsets(t, "whole history", res.Messages, epoch, 1, 20)
	if r := history(t, n, ch, broker.HistoryRequest{Limit: 100}, broker.PublishOptions{}); r.Pos != res.Pos || len(r.Messages) != 20 {
		t.Errorf("History without opts: position %+v and %d messages, want %+v and 20", r.Pos, len(r.Messages), res.Pos)
	}
}

func testHistoryLimit(t *testing.T, s *suite) {
	n := s.node(t)
	ch := channel(t, "h")
	opts := broker.PublishOptions{HistorySize: 5}
	epoch := publishN(t, n, ch, 1, 12, opts)
	cur := broker.Position{Epoch: epoch, Offset: 12}
	tests := []struct {
		name     string
		limit    int
		from, to uint64
	}{
		{"Zero", 0, 1, 0},
		{"Negative", -1, 1, 0},
		{"One", 1, 12, 12},
		{"Three", 3, 10, 12},
		{"Size", 5, 8, 12},
		{"BeyondTrimmed", 100, 8, 12},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := history(t, n, ch, broker.HistoryRequest{Limit: tc.limit}, opts)
			if res.Pos != cur || res.Recovered {
				t.Errorf("position %+v recovered %v, want %+v not recovered", res.Pos, res.Recovered, cur)
			}
			checkOffsets(t, "messages", res.Messages, epoch, tc.from, tc.to)
		})
	}
}

func testHistorySince(t *testing.T, s *suite) {
	n := s.node(t)
	ch := channel(t, "h")
	opts := broker.PublishOptions{HistorySize: 5}
	epoch := publishN(t, n, ch, 1, 12, opts)
	cur := broker.Position{Epoch: epoch, Offset: 12}
	tests := []struct {
		name      string
		since     broker.Position
		limit     int
		recovered bool
		from, to  uint64 // messages returned; none when from > to
	}{
		{"Recent", broker.Position{Epoch: epoch, Offset: 9}, 100, true, 10, 12},
		{"OldestKept", broker.Position{Epoch: epoch, Offset: 7}, 100, true, 8, 12},
		{"Current", cur, 100, true, 1, 0},
		{"CurrentZeroLimit", cur, 0, true, 1, 0},
		{"LimitPages", broker.Position{Epoch: epoch, Offset: 7}, 2, false, 8, 9},
		{"LimitExact", broker.Position{Epoch: epoch, Offset: 9}, 3, true, 10, 12},
		{"ZeroLimit", broker.Position{Epoch: epoch, Offset: 9}, 0, false, 1, 0},
		{"Trimmed", broker.Position{Epoch: epoch, Offset: 6}, 100, false, 1, 0},
		{"FromStartTrimmed", broker.Position{Epoch: epoch, Offset: 0}, 100, false, 1, 0},
		{"OtherEpoch", broker.Position{Epoch: epoch + "x", Offset: 9}, 100, false, 1, 0},
		{"NoEpoch", broker.Position{Offset: 9}, 100, false, 1, 0},
		{"Future", broker.Position{Epoch: epoch, Offset: 13}, 100, false, 1, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			since := tc.since
			res := history(t, n, ch, broker.HistoryRequest{Since: &since, Limit: tc.limit}, opts)
			if res.Pos != cur || res.Recovered != tc.recovered {
				t.Errorf("position %+v recovered %v, want %+v recovered %v", res.Pos, res.Recovered, cur, tc.recovered)
			}
			checkOffsets(t, "messages", res.Messages, epoch, tc.from, tc.to)
		})
	}
	// A short history still recovers from offset 0.
	short := channel(t, "short")
	e2 := publishN(t, n, short, 1, 3, opts)
	res := history(t, n, short, broker.HistoryRequest{Since: &broker.Position{Epoch: e2}, Limit: 10}, opts)
	if !res.Recovered {
		t.Errorf("since offset 0 of a history of 3: not recovered")
	}
	checkOffsets(t, "since offset 0", res.Messages, e2, 1, 3)
}

func testHistoryFresh(t *testing.T, s *suite) {
	n := s.node(t)
	ch := channel(t, "fresh")
	opts := broker.PublishOptions{HistorySize: 10}
	res := history(t, n, ch, broker.HistoryRequest{Limit: 10}, opts)
	if res.Pos.Epoch == "" || res.Pos.Offset != 0 || len(res.Messages) != 0 || res.Recovered {
		t.Fatalf("fresh channel: %+v, want an epoch at offset 0 and no messages", res)
	}
	// The position read before the first publish recovers what follows.
	since := res.Pos
	epoch := publishN(t, n, ch, 1, 2, opts)
	if epoch != since.Epoch {
		t.Errorf("first publish in epoch %q, History said %q", epoch, since.Epoch)
	}
	res = history(t, n, ch, broker.HistoryRequest{Since: &since, Limit: 10}, opts)
	if !res.Recovered {
		t.Errorf("recovery from the fresh position: not recovered: %+v", res)
	}
	checkOffsets(t, "recovered", res.Messages, epoch, 1, 2)
}

func testHistoryDeliveredPos(t *testing.T, s *suite) {
	n := s.node(t)
	ch := channel(t, "h")
	subscribe(t, n, ch)
	opts := broker.PublishOptions{HistorySize: 3}
	var poss []broker.Position
	for i := range 5 {
		poss = append(poss, publish(t, n, ch, fmt.Sprint(i+1), opts))
	}
	got := s.waitCount(t, n, ch, 5)
	for i, m := range got {
		if m.Pos != poss[i] {
			t.Errorf("message %d delivered at %+v, published at %+v", i, m.Pos, poss[i])
		}
	}
	checkOffsets(t, "delivered", got, poss[0].Epoch, 1, 5)
}

func testHistoryExpires(t *testing.T, s *suite) {
	n := s.node(t)
	ch := channel(t, "ttl")
	opts := broker.PublishOptions{HistorySize: 10, HistoryTTL: 200 * time.Millisecond}
	epoch := publishN(t, n, ch, 1, 3, opts)
	var res broker.HistoryResult
	s.waitFor(t, "the history to expire", func() bool {
		res = history(t, n, ch, broker.HistoryRequest{Limit: 10}, opts)
		return res.Pos.Epoch != epoch
	})
	if res.Pos.Epoch == "" || res.Pos.Offset != 0 || len(res.Messages) != 0 {
		t.Fatalf("expired history: %+v, want a new epoch at offset 0", res)
	}
	// The next life starts at offset 1 in the epoch History reported.
	if pos := publish(t, n, ch, `1`, opts); pos != (broker.Position{Epoch: res.Pos.Epoch, Offset: 1}) {
		t.Errorf("first publish after expiry at %+v, want %s/1", pos, res.Pos.Epoch)
	}
	// Without a History read in between, expiry starts a new epoch too.
	ch2 := channel(t, "ttl2")
	e2 := publishN(t, n, ch2, 1, 2, opts)
	since := broker.Position{Epoch: e2, Offset: 2}
	var pos broker.Position
	s.waitFor(t, "a publish to start a new epoch", func() bool {
		r := history(t, n, ch2, broker.HistoryRequest{Since: &since}, broker.PublishOptions{})
		if r.Recovered {
			return false
		}
		pos = publish(t, n, ch2, `1`, opts)
		return true
	})
	if pos.Epoch == e2 || pos.Offset != 1 {
		t.Errorf("publish after expiry at %+v, want offset 1 of an epoch other than %s", pos, e2)
	}
}

func testHistoryOrder(t *testing.T, s *suite) {
	const pubs, per = 4, 50
	n := s.node(t)
	ch := channel(t, "order")
	subscribe(t, n, ch)
	opts := broker.PublishOptions{HistorySize: pubs * per}
	poss := publishConcurrently(t, []*node{n}, ch, pubs, per, opts)
	got := s.waitCount(t, n, ch, pubs*per)
	checkPublisherOrder(t, got, pubs, per)
	checkDeliveredOffsets(t, got, poss)
	res := history(t, n, ch, broker.HistoryRequest{Limit: pubs * per}, opts)
	for i, m := range res.Messages {
		if m.Pos != got[i].Pos || string(m.Data) != string(got[i].Data) {
			t.Fatalf("history message %d is %s at %+v, delivered %s at %+v", i, m.Data, m.Pos, got[i].Data, got[i].Pos)
		}
	}
}

// checkDeliveredOffsets fails t unless the delivered messages have the
// offsets 1, 2, 3… of one epoch, and each publish's position was delivered.
func checkDeliveredOffsets(t *testing.T, got []broker.Message, published []broker.Position) {
	t.Helper()
	seen := make(map[broker.Position]bool)
	for i, m := range got {
		if m.Pos.Offset != uint64(i+1) || m.Pos.Epoch != got[0].Pos.Epoch || m.Pos.Epoch == "" {
			t.Fatalf("message %d delivered at %+v, want offset %d of epoch %q", i, m.Pos, i+1, got[0].Pos.Epoch)
		}
		seen[m.Pos] = true
	}
	for _, p := range published {
		if !seen[p] {
			t.Fatalf("published at %+v, never delivered there", p)
		}
	}
}

func testSharedDelivery(t *testing.T, s *suite) {
	a, b := s.node(t), s.node(t)
	ch := channel(t, "x")
	subscribe(t, b, ch)
	publish(t, a, ch, `"from a"`, noHistory)
	got := s.waitCount(t, b, ch, 1)
	if string(got[0].Data) != `"from a"` {
		t.Errorf("b received %s", dataOf(got))
	}
	if got := a.rec.get(ch); len(got) != 0 {
		t.Errorf("a, not subscribed, received %s", dataOf(got))
	}
	subscribe(t, a, ch)
	publish(t, b, ch, `"from b"`, noHistory)
	s.waitCount(t, a, ch, 1)
	s.waitCount(t, b, ch, 2)
}

func testSharedOrder(t *testing.T, s *suite) {
	const pubs, per = 4, 100
	a, b, c := s.node(t), s.node(t), s.node(t)
	ch := channel(t, "order")
	subscribe(t, a, ch)
	subscribe(t, b, ch)
	publishConcurrently(t, []*node{a, b, c}, ch, pubs, per, noHistory)
	ga := s.waitCount(t, a, ch, pubs*per)
	gb := s.waitCount(t, b, ch, pubs*per)
	checkPublisherOrder(t, ga, pubs, per)
	for i := range ga {
		if string(ga[i].Data) != string(gb[i].Data) {
			t.Fatalf("message %d: node a got %s, node b %s", i, ga[i].Data, gb[i].Data)
		}
	}
}

func testSharedHistory(t *testing.T, s *suite) {
	const pubs, per = 4, 25
	a, b := s.node(t), s.node(t)
	ch := channel(t, "h")
	subscribe(t, a, ch)
	subscribe(t, b, ch)
	opts := broker.PublishOptions{HistorySize: 1000}
	poss := publishConcurrently(t, []*node{a, b}, ch, pubs, per, opts)
	ga := s.waitCount(t, a, ch, pubs*per)
	gb := s.waitCount(t, b, ch, pubs*per)
	checkPublisherOrder(t, ga, pubs, per)
	checkDeliveredOffsets(t, ga, poss)
	for i := range ga {
		if ga[i].Pos != gb[i].Pos || string(ga[i].Data) != string(gb[i].Data) {
			t.Fatalf("message %d: node a got %s at %+v, node b %s at %+v", i, ga[i].Data, ga[i].Pos, gb[i].Data, gb[i].Pos)
		}
	}
	ha := history(t, a, ch, broker.HistoryRequest{Limit: 1000}, opts)
	hb := history(t, b, ch, broker.HistoryRequest{Limit: 1000}, opts)
	if ha.Pos != hb.Pos || len(ha.Messages) != len(hb.Messages) || len(ha.Messages) != pubs*per {
		t.Fatalf("histories differ: a at %+v with %d messages, b at %+v with %d", ha.Pos, len(ha.Messages), hb.Pos, len(hb.Messages))
	}
	for i := range ha.Messages {
		if ha.Messages[i].Pos != ga[i].Pos || string(ha.Messages[i].Data) != string(ga[i].Data) {
			t.Fatalf("history message %d: %s at %+v, delivered %s at %+v", i, ha.Messages[i].Data, ha.Messages[i].Pos, ga[i].Data, ga[i].Pos)
		}
	}
}

// A publish's Skip travels with the message to every node, with history
// and without; history itself does not keep it (everyone reads history).
func testSkip(t *testing.T, s *suite) {
	n := s.node(t)
	ch, hch := channel(t, "skip"), channel(t, "skiph")
	subscribe(t, n, ch)
	subscribe(t, n, hch)
	publish(t, n, ch, `1`, broker.PublishOptions{Skip: "12.34"})
	publish(t, n, ch, `2`, noHistory)
	hist := broker.PublishOptions{HistorySize: 10, Skip: "client-9"}
	publish(t, n, hch, `3`, hist)
	got := s.waitCount(t, n, ch, 2)
	if got[0].Skip != "12.34" || got[1].Skip != "" {
		t.Fatalf("skips delivered: %q, %q; want 12.34 and none", got[0].Skip, got[1].Skip)
	}
	if h := s.waitCount(t, n, hch, 1); h[0].Skip != "client-9" || h[0].Pos.Offset != 1 || string(h[0].Data) != `3` {
		t.Fatalf("with history: %+v", h[0])
	}
	if hs, ok := n.Broker.(broker.Historian); ok {
		res, err := hs.History(context.Background(), hch, broker.HistoryRequest{Limit: 10}, hist)
		if err != nil || len(res.Messages) != 1 || res.Messages[0].Skip != "" {
			t.Fatalf("history: %+v, %v; want the message without its skip", res, err)
		}
	}
}
