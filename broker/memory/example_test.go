package memory_test

import (
	"context"
	"fmt"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/broker/memory"
)

func ExampleNew() {
	b := memory.New(memory.Config{})
	ctx := context.Background()
	_ = b.Start(ctx, broker.HandlerFunc(func(m broker.Message) {
		fmt.Printf("%s: %s at offset %d\n", m.Channel, m.Data, m.Pos.Offset)
	}))
	defer b.Close(ctx)

	_ = b.Subscribe(ctx, "chat")
	opts := broker.PublishOptions{HistorySize: 100}
	_, _ = b.Publish(ctx, "chat", []byte(`"hello"`), opts)
	_, _ = b.Publish(ctx, "chat", []byte(`"world"`), opts)

	res, _ := b.History(ctx, "chat", broker.HistoryRequest{Limit: 1}, opts)
	fmt.Printf("history: %d message(s), newest %s\n", len(res.Messages), res.Messages[0].Data)
	// Output:
	// chat: "hello" at offset 1
	// chat: "world" at offset 2
	// history: 1 message(s), newest "world"
}
