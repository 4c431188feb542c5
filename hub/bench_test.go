package hub_test

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/hub"
)

// discardTransport accepts every write at once.
type discardTransport struct{ frames atomic.Int64 }

func (d *discardTransport) WriteFrames(f [][]byte) error { d.frames.Add(int64(len(f))); return nil }
func (d *discardTransport) Close() error                 { return nil }

// TryWriteFrames takes everything, so the writer pool serves the client.
func (d *discardTransport) TryWriteFrames(f [][]byte) (int, error) {
	n := 0
	for _, b := range f {
		n += len(b)
	}
	d.frames.Add(int64(len(f)))
	return n, nil
}

// BenchmarkFanout measures HandleMessage, the hub's fan-out of one broker
// message to N local subscribers: one frame encoding, then one queue append
// (and writer wake-up) per subscriber. allocs/op must not grow with N.
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{1, 100, 10000} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			h, _ := fanoutHub(b, n)
			m := broker.Message{Channel: "bench", Data: []byte(`{"seq":1,"text":"a hundred bytes of chat text, more or less, which is what a typical message carries"}`)}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				h.HandleMessage(m)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/delivery")
		})
	}
}

// fanoutHub returns a hub with n native subscribers of "bench" on
// transports that take every write at once, and the transports.
func fanoutHub(tb testing.TB, n int) (*hub.Hub, []*discardTransport) {
	h, _ := newHub(tb, hub.Config{SendQueueBytes: 64 << 20})
	ts := make([]*discardTransport, n)
	for i := range n {
		c, err := h.NewClient(nativeDialect, hub.Identity{})
		if err != nil {
			tb.Fatal(err)
		}
		ts[i] = &discardTransport{}
		c.Attach(ts[i])
		if err := c.Subscribe(context.Background(), "bench", hub.SubscribeOptions{}); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { c.Close(1000, ""); c.Finish() })
	}
	return h, ts
}

// The fan-out's promise, checked: a message is encoded once per dialect and
// queued to each subscriber without an allocation of its own, so that the
// allocations of one delivery to many do not grow with their number. Each
// message is counted from HandleMessage until every subscriber's transport
// has it, the writer pool's work included; the next one comes after, as
// when the writers keep up. (A producer that outruns the writers grows the
// queues, which allocates: BenchmarkFanout shows that.)
func TestFanoutAllocationsDoNotGrowWithSubscribers(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts")
	}
	m := broker.Message{Channel: "bench", Data: []byte(`{"text":"hi"}`)}
	perMessage := map[int]float64{}
	for _, n := range []int{10, 1000, 5000} {
		h, ts := fanoutHub(t, n)
		delivered := func(want int64) {
			for _, tr := range ts {
				for tr.frames.Load() < want {
					runtime.Gosched()
				}
			}
		}
		const warm, runs = 3, 20
		for i := range warm {
			h.HandleMessage(m)
			delivered(int64(i + 1))
		}
		var ms runtime.MemStats
		var total uint64
		for i := range runs {
			runtime.ReadMemStats(&ms)
			before := ms.Mallocs
			h.HandleMessage(m)
			delivered(int64(warm + i + 1))
			runtime.ReadMemStats(&ms)
			total += ms.Mallocs - before
		}
		perMessage[n] = float64(total) / runs
	}
	t.Logf("allocations per message: %v", perMessage)
	if perMessage[5000] > perMessage[10]+16 {
		t.Fatalf("allocations per message grow with the subscribers: %v", perMessage)
	}
}
