package nats

import (
	"context"
	"testing"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/internal/natstest"
)

// TestPublishRoundTrips pins what a publish costs in requests to NATS
// (each one a round trip: the broker waits for its answer), counted by the
// connection's outgoing messages.
func TestPublishRoundTrips(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t, nil)
	a, _ := startBroker(t, srv)
	c, sc := startBroker(t, srv)
	ctx := context.Background()
	// The JetStream check after connecting is one request, not a publish's.
	waitFor(t, 5e9, "the JetStream checks", func() bool { return a.jsChecks.Load() == 1 && c.jsChecks.Load() == 1 })
	hist := broker.PublishOptions{HistorySize: 10}
	cost := func(b *Broker, ch string, opts broker.PublishOptions) uint64 {
		t.Helper()
		before := b.nc.Stats().OutMsgs
		if _, err := b.Publish(ctx, ch, []byte(`1`), opts); err != nil {
			t.Fatal(err)
		}
		return b.nc.Stats().OutMsgs - before
	}
	steps := []struct {
		name string
		b    *Broker
		ch   string
		opts broker.PublishOptions
		want uint64
	}{
		{"live, first: make the stream (2), publish", a, "x", broker.PublishOptions{}, 3},
		{"live", a, "x", broker.PublishOptions{}, 1},
		{"live with an idempotency key", a, "x", broker.PublishOptions{IdempotencyKey: "k"}, 1},
		{"history, first: make the stream (2), read the newest message, publish", a, "h", hist, 4},
		{"history, the newest message known from the last publish", a, "h", hist, 1},
		{"history, first on another node: find the stream, read the newest message, publish", c, "h", hist, 3},
		{"history, back on the first node: refused, read, publish", a, "h", hist, 3},
	}
	for _, s := range steps {
		if got := cost(s.b, s.ch, s.opts); got != s.want {
			t.Errorf("%s: %d requests, want %d", s.name, got, s.want)
		} else {
			t.Logf("%s: %d", s.name, got)
		}
	}
	// A node subscribed to the channel learns its newest message from the
	// deliveries: one request even after another node's publish.
	if err := a.Subscribe(ctx, "h"); err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe(ctx, "h"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, "h", []byte(`2`), hist); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5e9, "the delivery", func() bool { return len(sc.get("h")) == 1 })
	waitFor(t, 5e9, "a to see it", func() bool {
		a.hist.mu.Lock()
		defer a.hist.mu.Unlock()
		return a.hist.last[a.ns.history(groupFor(hist), "h")].off == 5
	})
	if got := cost(a, "h", hist); got != 1 {
		t.Errorf("history, subscribed, after another node's publish: %d requests, want 1", got)
	}
}
