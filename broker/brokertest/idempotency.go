package brokertest

import (
	"testing"

	"github.com/switchboard-rt/switchboard/broker"
)

// testIdempotentPublish: a repeated publish with the same key publishes
// nothing more; another key publishes.
func testIdempotentPublish(t *testing.T, s *suite) {
	n := s.node(t)
	ch := channel(t, "i")
	subscribe(t, n, ch)
	opts := broker.PublishOptions{IdempotencyKey: "k1"}
	publish(t, n, ch, `1`, opts)
	publish(t, n, ch, `1`, opts)
	publish(t, n, ch, `2`, broker.PublishOptions{IdempotencyKey: "k2"})
	// A second "1" would arrive before "2": a channel keeps its order.
	got := s.waitCount(t, n, ch, 2)
	if string(got[0].Data) != "1" || string(got[1].Data) != "2" {
		t.Fatalf("delivered %d messages, want 1 then 2: %+v", len(got), got)
	}
}

// testIdempotentPublishHistory: the repeat returns the first publish's
// position and adds nothing to history.
func testIdempotentPublishHistory(t *testing.T, s *suite) {
	n := s.node(t)
	ch := channel(t, "ih")
	subscribe(t, n, ch)
	opts := broker.PublishOptions{HistorySize: 10, IdempotencyKey: "same"}
	first := publish(t, n, ch, `"a"`, opts)
	again := publish(t, n, ch, `"a"`, opts)
	if first != again || first.Offset != 1 {
		t.Fatalf("positions %+v then %+v, want the same, offset 1", first, again)
	}
	next := publish(t, n, ch, `"b"`, broker.PublishOptions{HistorySize: 10, IdempotencyKey: "other"})
	if next.Offset != 2 || next.Epoch != first.Epoch {
		t.Fatalf("next position %+v, want offset 2 in %s", next, first.Epoch)
	}
	res := history(t, n, ch, broker.HistoryRequest{Limit: 10}, broker.PublishOptions{HistorySize: 10})
	if len(res.Messages) != 2 || string(res.Messages[0].Data) != `"a"` || res.Messages[1].Pos != next {
		t.Fatalf("history %+v, want a@1 and b@2", res.Messages)
	}
	s.waitCount(t, n, ch, 2)
}
