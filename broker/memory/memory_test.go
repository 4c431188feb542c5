package memory

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/broker/brokertest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestConformance(t *testing.T) {
	brokertest.Run(t, brokertest.Factory{
		New: func(t *testing.T) broker.Broker {
			return New(Config{JanitorInterval: 10 * time.Millisecond})
		},
		History:  true,
		Presence: true,
	})
}

// started returns a started broker that h handles, closed when t ends.
func started(t *testing.T, cfg Config, h broker.Handler) *Broker {
	t.Helper()
	b := New(cfg)
	if err := b.Start(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return b
}

// channels returns how many channels b holds.
func channels(b *Broker) int {
	n := 0
	for i := range b.shards {
		sh := &b.shards[i]
		sh.mu.Lock()
		n += len(sh.channels)
		sh.mu.Unlock()
	}
	return n
}

// TestBlockedChannelDoesNotBlockOthers checks that a Handler running for one
// channel holds up neither the other channels of its shard nor the channel's
// own subscription bookkeeping for other channels.
func TestBlockedChannelDoesNotBlockOthers(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	entered := make(chan struct{})
	var once sync.Once
	h := broker.HandlerFunc(func(m broker.Message) {
		if m.Channel == "slow" {
			once.Do(func() { close(entered) })
			<-release
		}
	})
	b := started(t, Config{}, h)
	ctx := context.Background()
	// Find channels that share the slow one's shard.
	var same []string
	for i := 0; len(same) < 3; i++ {
		name := fmt.Sprint("c", i)
		if b.shard(name) == b.shard("slow") {
			same = append(same, name)
		}
	}
	if err := b.Subscribe(ctx, append(same, "slow")...); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = b.Publish(ctx, "slow", []byte(`1`), broker.PublishOptions{})
	}()
	<-entered
	for _, name := range same {
		if _, err := b.Publish(ctx, name, []byte(`1`), broker.PublishOptions{HistorySize: 2}); err != nil {
			t.Fatal(err)
		}
		if err := b.Unsubscribe(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	close(release)
	<-done
}

func TestRingResize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		sizes    []int // HistorySize of each publish, in turn
		wantFrom uint64
		wantTo   uint64
	}{
		{name: "Grow", sizes: []int{2, 2, 2, 5, 5, 5}, wantFrom: 2, wantTo: 6},
		{name: "Shrink", sizes: []int{5, 5, 5, 5, 5, 2}, wantFrom: 5, wantTo: 6},
		{name: "ShrinkWrapped", sizes: []int{3, 3, 3, 3, 3, 3, 3, 1}, wantFrom: 8, wantTo: 8},
		{name: "GrowWrapped", sizes: []int{3, 3, 3, 3, 3, 10, 10}, wantFrom: 3, wantTo: 7},
		{name: "Large", sizes: []int{1 << 30, 1 << 30}, wantFrom: 1, wantTo: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := started(t, Config{}, broker.HandlerFunc(func(broker.Message) {}))
			ctx := context.Background()
			for i, size := range tc.sizes {
				if _, err := b.Publish(ctx, "c", []byte(fmt.Sprint(i+1)), broker.PublishOptions{HistorySize: size}); err != nil {
					t.Fatal(err)
				}
			}
			res, err := b.History(ctx, "c", broker.HistoryRequest{Limit: 100}, broker.PublishOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range res.Messages {
				got = append(got, string(m.Data))
			}
			var want []string
			for off := tc.wantFrom; off <= tc.wantTo; off++ {
				want = append(want, fmt.Sprint(off))
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("history %v, want %v", got, want)
			}
		})
	}
}

// TestJanitor checks that expired histories and empty channels are dropped
// by the janitor, with no publish to trigger it.
func TestJanitor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := New(Config{JanitorInterval: time.Second})
		if err := b.Start(context.Background(), broker.HandlerFunc(func(broker.Message) {})); err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		opts := broker.PublishOptions{HistorySize: 10, HistoryTTL: 5 * time.Second}
		for i := range 100 {
			if _, err := b.Publish(ctx, fmt.Sprint("h", i), []byte(`1`), opts); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Subscribe(ctx, "sub"); err != nil {
			t.Fatal(err)
		}
		// A History read of a channel without history keeps nothing.
		if _, err := b.History(ctx, "none", broker.HistoryRequest{Limit: 1}, broker.PublishOptions{}); err != nil {
			t.Fatal(err)
		}
		if n := channels(b); n != 101 {
			t.Fatalf("%d channels, want 101", n)
		}
		time.Sleep(4 * time.Second)
		synctest.Wait()
		if n := channels(b); n != 101 {
			t.Fatalf("%d channels before expiry, want 101", n)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if n := channels(b); n != 1 {
			t.Fatalf("%d channels after expiry, want 1 (the subscribed one)", n)
		}
		if err := b.Unsubscribe(ctx, "sub"); err != nil {
			t.Fatal(err)
		}
		if n := channels(b); n != 0 {
			t.Fatalf("%d channels after Unsubscribe, want 0", n)
		}
		if err := b.Close(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

// TestExpiryIsLazy checks that an expired history is replaced on the next
// publish even before the janitor runs.
func TestExpiryIsLazy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := New(Config{JanitorInterval: time.Hour})
		if err := b.Start(context.Background(), broker.HandlerFunc(func(broker.Message) {})); err != nil {
			t.Fatal(err)
		}
		defer b.Close(context.Background())
		ctx := context.Background()
		opts := broker.PublishOptions{HistorySize: 10, HistoryTTL: time.Minute}
		p1, _ := b.Publish(ctx, "c", []byte(`1`), opts)
		time.Sleep(59 * time.Second)
		p2, _ := b.Publish(ctx, "c", []byte(`2`), opts) // refreshes the TTL
		time.Sleep(59 * time.Second)
		p3, _ := b.Publish(ctx, "c", []byte(`3`), opts)
		time.Sleep(time.Minute)
		p4, _ := b.Publish(ctx, "c", []byte(`4`), opts)
		if p2.Epoch != p1.Epoch || p3 != (broker.Position{Epoch: p1.Epoch, Offset: 3}) {
			t.Errorf("positions %+v %+v %+v, want one epoch", p1, p2, p3)
		}
		if p4.Epoch == p1.Epoch || p4.Offset != 1 {
			t.Errorf("after expiry: %+v, want offset 1 of a new epoch", p4)
		}
		// The default TTL is a day.
		p5, _ := b.Publish(ctx, "d", []byte(`1`), broker.PublishOptions{HistorySize: 1})
		time.Sleep(23 * time.Hour)
		p6, _ := b.Publish(ctx, "d", []byte(`2`), broker.PublishOptions{HistorySize: 1})
		time.Sleep(24*time.Hour + time.Second)
		p7, _ := b.Publish(ctx, "d", []byte(`3`), broker.PublishOptions{HistorySize: 1})
		if p6.Epoch != p5.Epoch || p7.Epoch == p5.Epoch {
			t.Errorf("default TTL: positions %+v %+v %+v", p5, p6, p7)
		}
	})
}

func TestCloseBeforeStart(t *testing.T) {
	t.Parallel()
	b := New(Config{})
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background(), broker.HandlerFunc(func(broker.Message) {})); err != broker.ErrClosed {
		t.Fatalf("Start after Close: %v, want ErrClosed", err)
	}
}

func BenchmarkPublish(b *testing.B) {
	tests := []struct {
		name string
		opts broker.PublishOptions
	}{
		{"NoHistory", broker.PublishOptions{}},
		{"History", broker.PublishOptions{HistorySize: 100}},
	}
	for _, tc := range tests {
		b.Run(tc.name, func(b *testing.B) {
			br := New(Config{})
			_ = br.Start(context.Background(), broker.HandlerFunc(func(broker.Message) {}))
			defer br.Close(context.Background())
			_ = br.Subscribe(context.Background(), "c")
			data := []byte(`{"text":"hello"}`)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					_, _ = br.Publish(context.Background(), "c", data, tc.opts)
				}
			})
		})
	}
}
