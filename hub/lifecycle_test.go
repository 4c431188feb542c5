package hub_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/broker/memory"
	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/internal/wait"
	"github.com/switchboard-rt/switchboard/protocol"
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

// lateBroker is a memory broker whose backend is not up until up is set:
// it starts, but is not ready, and refuses every call with
// broker.ErrUnavailable, as the Redis broker does before its first
// connection.
type lateBroker struct {
	*memory.Broker
	up atomic.Bool
}

var errNotYet = fmt.Errorf("late: %w: not up yet", broker.ErrUnavailable)

func (b *lateBroker) Ready() error {
	if !b.up.Load() {
		return errNotYet
	}
	return nil
}

func (b *lateBroker) Subscribe(ctx context.Context, chs ...string) error {
	if !b.up.Load() {
		return errNotYet
	}
	return b.Broker.Subscribe(ctx, chs...)
}

func (b *lateBroker) Publish(ctx context.Context, ch string, data []byte, opts broker.PublishOptions) (broker.Position, error) {
	if !b.up.Load() {
		return broker.Position{}, errNotYet
	}
	return b.Broker.Publish(ctx, ch, data, opts)
}

// A hub whose broker is not up at Start starts, is not ready and answers
// unavailable; once the broker is up it is ready with its control channel
// subscribed (an order from the HTTP API reaches its clients), and serves
// subscriptions.
func TestStartBeforeBroker(t *testing.T) {
	b := &lateBroker{Broker: memory.New(memory.Config{})}
	h, err := hub.New(hub.Config{Broker: b, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(context.Background()); err != nil {
		t.Fatalf("Start with the broker down: %v", err)
	}
	t.Cleanup(func() { _ = h.Shutdown(context.Background()) })
	if err := h.Ready(); !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("Ready with the broker down: %v, want ErrUnavailable", err)
	}
	c, err := h.NewClient(nativeDialect, hub.Identity{User: "u"})
	if err != nil {
		t.Fatal(err)
	}
	ft := newFake()
	c.Attach(ft)
	t.Cleanup(func() {
		c.Close(1000, "")
		c.Finish()
	})
	ctx := context.Background()
	if err := c.Subscribe(ctx, "a", hub.SubscribeOptions{}); hub.ErrorOf(err).Code != protocol.CodeUnavailable {
		t.Errorf("subscribe with the broker down: %v, want unavailable", err)
	}
	if _, err := c.Publish(ctx, "a", []byte(`1`)); hub.ErrorOf(err).Code != protocol.CodeUnavailable {
		t.Errorf("publish with the broker down: %v, want unavailable", err)
	}

	// Once the broker is up, the hub subscribes its control channel by
	// itself, and is ready.
	b.up.Store(true)
	wait.For(t, 5*time.Second, func() error { return h.Ready() })
	if err := c.Subscribe(ctx, "a", hub.SubscribeOptions{}); err != nil {
		t.Fatalf("subscribe once the broker is up: %v", err)
	}
	if err := h.DisconnectUser(ctx, "u"); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 5*time.Second, func() error {
		if !c.Closed() {
			return errors.New("the disconnect order did not reach the client: is the control channel subscribed?")
		}
		return nil
	})
}

// Shutdown ends the wait for a broker that never comes up (TestMain's
// goroutine check shows it).
func TestShutdownBeforeBrokerIsUp(t *testing.T) {
	b := &lateBroker{Broker: memory.New(memory.Config{})}
	h, err := hub.New(hub.Config{Broker: b, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := h.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}
