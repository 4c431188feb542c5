package server_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"time"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/server"
)

// Example embeds a switchboard node in a Go program: one node with the
// in-process broker, 100 messages of history per channel, serving on a
// loopback port until it is shut down.
func Example() {
	srv, err := server.New(server.Config{
		Hub:    hub.Config{Default: hub.NamespaceOptions{HistorySize: 100, HistoryTTL: time.Hour}},
		Logger: quietLogger(),
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()

	// A back end publishes without a WebSocket.
	pos, err := srv.Hub().Publish(context.Background(), "news", []byte(`{"headline":"hello"}`))
	fmt.Println(pos.Offset, err)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fmt.Println(srv.Shutdown(ctx), <-done)
	// Output:
	// 1 <nil>
	// <nil> <nil>
}
