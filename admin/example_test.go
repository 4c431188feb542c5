package admin_test

import (
	"context"
	"encoding/json"
	"log"
	"net/http"

	"github.com/switchboard-rt/switchboard/admin"
	"github.com/switchboard-rt/switchboard/broker/memory"
	"github.com/switchboard-rt/switchboard/httpapi"
	"github.com/switchboard-rt/switchboard/hub"
)

// The dashboard is an http.Handler for /admin and /admin/; server.Server
// mounts it by itself when server.Config.AdminPassword is set. Close it as
// the HTTP server's shutdown begins.
func ExampleNew() {
	h, err := hub.New(hub.Config{Broker: memory.New(memory.Config{})})
	if err != nil {
		log.Fatal(err)
	}
	dash, err := admin.New(admin.Config{
		Password: "a long random password",
		NodeID:   h.NodeID(),
		Nodes: func(ctx context.Context) ([]json.RawMessage, error) {
			return []json.RawMessage{json.RawMessage(`{"id":"` + h.NodeID() + `"}`)}, nil
		},
		Channels: h.ClusterChannels,
		API:      httpapi.New(httpapi.Config{Hub: h}),
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/admin", dash)
	mux.Handle("/admin/", dash)
	srv := &http.Server{Addr: ":8080", Handler: mux}
	srv.RegisterOnShutdown(dash.Close)
	_ = srv // srv.ListenAndServe()
}
