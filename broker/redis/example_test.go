package redis_test

import (
	"context"
	"log/slog"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/broker/redis"
)

func ExampleNew() {
	b, err := redis.New(redis.Config{URL: "redis://:password@redis.internal:6379/0", Logger: slog.Default()})
	if err != nil {
		panic(err) // a malformed URL
	}
	ctx := context.Background()
	if err := b.Start(ctx, broker.HandlerFunc(func(m broker.Message) { /* queue m for local clients */ })); err != nil {
		panic(err) // called twice, or after Close
	}
	defer b.Close(ctx)
	if err := b.Ready(); err != nil {
		// Redis cannot be reached yet (err wraps broker.ErrUnavailable and
		// says why): the broker keeps trying by itself, and calls fail
		// with that error until it connects.
		slog.Warn("redis not ready yet", "err", err)
	}
	_ = b.Subscribe(ctx, "chat")
	_, _ = b.Publish(ctx, "chat", []byte(`"hello"`), broker.PublishOptions{HistorySize: 100})
}
