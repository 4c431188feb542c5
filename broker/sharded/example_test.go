package sharded_test

import (
	"context"
	"log/slog"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/broker/redis"
	"github.com/switchboard-rt/switchboard/broker/sharded"
)

func ExampleNewRedis() {
	// Every node lists the same servers in the same order.
	b, err := sharded.NewRedis([]string{"redis://10.0.0.1:6379/0", "redis://10.0.0.2:6379/0"},
		redis.Config{Prefix: "chat", Logger: slog.Default()})
	if err != nil {
		panic(err) // a malformed URL, or one server listed twice
	}
	ctx := context.Background()
	if err := b.Start(ctx, broker.HandlerFunc(func(m broker.Message) { /* queue m for local clients */ })); err != nil {
		panic(err)
	}
	defer b.Close(ctx)
	for _, s := range b.Shards() {
		if s.Err != nil {
			// This shard's channels fail with broker.ErrUnavailable until
			// it is back; the others work.
			slog.Warn("shard down", "shard", s.Name, "addr", s.Addr, "err", s.Err)
		}
	}
	if err := b.ReadyFor("chat:lobby"); err == nil {
		_, _ = b.Publish(ctx, "chat:lobby", []byte(`"hello"`), broker.PublishOptions{HistorySize: 100})
	}
}
