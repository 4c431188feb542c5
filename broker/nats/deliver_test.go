package nats

import (
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// msgAt is a delivered message of epoch at offset off ("" epoch: without
// history).
func msgAt(epoch string, off uint64) *nats.Msg {
	m := nats.NewMsg("sb.l.c")
	m.Data = []byte(strconv.FormatUint(off, 10))
	if epoch != "" {
		m.Header.Set(hdrEpoch, epoch)
		m.Header.Set(hdrOffset, strconv.FormatUint(off, 10))
	}
	return m
}

// TestDeliveryOrder feeds a channel's subscription messages as a stream
// may republish them and checks what the Handler gets, in order.
func TestDeliveryOrder(t *testing.T) {
	t.Parallel()
	type in struct {
		epoch string
		off   uint64
		pause bool // wait past gapWait before this message
	}
	tests := []struct {
		name string
		in   []in
		want string // epoch and offset of each delivery, "-" for none
	}{
		{"InOrder", []in{{"e", 1, false}, {"e", 2, false}, {"e", 3, false}}, "e1 e2 e3"},
		{"Swapped", []in{{"e", 1, false}, {"e", 3, false}, {"e", 2, false}, {"e", 4, false}}, "e1 e2 e3 e4"},
		{"Duplicate", []in{{"e", 1, false}, {"e", 2, false}, {"e", 2, false}, {"e", 1, false}}, "e1 e2"},
		{"GapGivenUp", []in{{"e", 1, false}, {"e", 3, false}, {"e", 4, false}, {"e", 2, true}, {"e", 5, false}}, "e1 e3 e4 e5"},
		{"MarkerStartsEpoch", []in{{"e", 0, false}, {"e", 2, false}, {"e", 1, false}}, "e1 e2"},
		{"NewEpoch", []in{{"e", 5, false}, {"f", 1, false}, {"f", 2, false}}, "e5 f1 f2"},
		{"FirstTakenAsItComes", []in{{"e", 7, false}, {"e", 8, false}}, "e7 e8"},
		{"WithoutHistory", []in{{"", 0, false}, {"", 0, false}}, "- -"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, err := New(Config{})
			if err != nil {
				t.Fatal(err)
			}
			s := newSink()
			b.handler = s
			cs := &channelSub{b: b, channel: "c"}
			for _, m := range tc.in {
				if m.pause {
					waitFor(t, time.Second, "the held messages", func() bool {
						cs.mu.Lock()
						defer cs.mu.Unlock()
						return len(cs.held) == 0
					})
				}
				cs.receive(msgAt(m.epoch, m.off))
			}
			got := ""
			for i, m := range s.get("c") {
				if i > 0 {
					got += " "
				}
				if m.Pos.IsZero() {
					got += "-" // no position: a channel without history
				} else {
					got += m.Pos.Epoch + strconv.FormatUint(m.Pos.Offset, 10)
				}
			}
			if got != tc.want {
				t.Errorf("delivered %q, want %q", got, tc.want)
			}
			cs.mu.Lock()
			defer cs.mu.Unlock()
			if cs.timer != nil {
				cs.timer.Stop()
			}
		})
	}
}
