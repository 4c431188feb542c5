package hub_test

import (
	"context"
	"fmt"
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
			h, _ := newHub(b, hub.Config{SendQueueBytes: 64 << 20})
			ts := make([]*discardTransport, n)
			for i := range n {
				c, err := h.NewClient(nativeDialect, hub.Identity{})
				if err != nil {
					b.Fatal(err)
				}
				ts[i] = &discardTransport{}
				c.Attach(ts[i])
				if err := c.Subscribe(context.Background(), "bench", hub.SubscribeOptions{}); err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { c.Close(1000, ""); c.Finish() })
			}
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
