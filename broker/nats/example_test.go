package nats_test

import (
	"context"
	"log/slog"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/broker/nats"
)

func ExampleNew() {
	b, err := nats.New(nats.Config{URL: "nats://nats.internal:4222", Prefix: "chat", Logger: slog.Default()})
	if err != nil {
		panic(err) // a malformed URL or prefix
	}
	ctx := context.Background()
	if err := b.Start(ctx, broker.HandlerFunc(func(m broker.Message) { /* queue m for local clients */ })); err != nil {
		panic(err) // called twice, or after Close
	}
	defer b.Close(ctx)
	if err := b.Ready(); err != nil {
		// NATS cannot be reached yet: the broker keeps trying by itself,
		// and calls fail with an error wrapping broker.ErrUnavailable.
		slog.Warn("nats not ready yet", "err", err)
	}
	_ = b.Subscribe(ctx, "room:1")
	_, _ = b.Publish(ctx, "room:1", []byte(`"hello"`), broker.PublishOptions{HistorySize: 100})
}
