package hub_test

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/broker/memory"
	"github.com/switchboard-rt/switchboard/hub"
)

// A hub that was never started shuts down cleanly (it once panicked on the
// writer pool's timer).
func TestShutdownBeforeStart(t *testing.T) {
	h, err := hub.New(hub.Config{Broker: memory.New(memory.Config{}), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown before Start: %v", err)
	}
	if err := h.Shutdown(context.Background()); err != nil {
		t.Fatalf("a second Shutdown: %v", err)
	}
}

// closeWatch counts the broker calls made after Close.
type closeWatch struct {
	*memory.Broker
	closed     atomic.Bool
	afterClose atomic.Int64
}

func (b *closeWatch) Unsubscribe(ctx context.Context, chs ...string) error {
	if b.closed.Load() {
		b.afterClose.Add(1)
	}
	return b.Broker.Unsubscribe(ctx, chs...)
}

func (b *closeWatch) Close(ctx context.Context) error {
	b.closed.Store(true)
	return b.Broker.Close(ctx)
}

// The delayed release of a channel once outlived Shutdown and called the
// closed broker. Releases belong to the hub now: Shutdown ends them, and
// the goroutine check of TestMain shows nothing is left to call later.
func TestNoReleaseAfterShutdown(t *testing.T) {
	b := &closeWatch{Broker: memory.New(memory.Config{})}
	h, err := hub.New(hub.Config{Broker: b, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), UnsubscribeDelay: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	c, err := h.NewClient(nativeDialect, hub.Identity{})
	if err != nil {
		t.Fatal(err)
	}
	c.Attach(newFake())
	if err := c.Subscribe(context.Background(), "c", hub.SubscribeOptions{}); err != nil {
		t.Fatal(err)
	}
	c.Finish() // the channel's release is due in 50 ms
	if err := h.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := b.afterClose.Load(); n != 0 {
		t.Fatalf("%d broker calls after Close", n)
	}
}
