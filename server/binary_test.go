package server_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard-rt/switchboard/broker/nats"
	"github.com/switchboard-rt/switchboard/broker/redis"
	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/internal/natstest"
	"github.com/switchboard-rt/switchboard/internal/redistest"
	"github.com/switchboard-rt/switchboard/server"
)

// readBinary reads the next message and fails unless it is a binary frame.
func (c *client) readBinary() []byte {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	typ, b, err := c.conn.Read(ctx)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	if typ != websocket.MessageBinary {
		c.t.Fatalf("got a %v frame (%q), want binary", typ, b)
	}
	return b
}

// A raw client's binary frame is relayed as binary data (PROTOCOL.md, raw
// dialect): raw subscribers receive a binary frame byte for byte, native
// ones "data":"<base64>","encoding":"base64", and so do the native history
// reply and GET /api/history. A raw text frame is still a JSON string.
// Native clients may still not send binary. The same through a Redis
// broker (a redis-server the test starts), where the data crosses pub/sub
// and a stream, and through a NATS broker (a nats-server), where it
// crosses JetStream streams and their republish.
func TestBinaryRelay(t *testing.T) {
	for _, tc := range []struct {
		name   string
		broker string
	}{{"Memory", ""}, {"Redis", "redis"}, {"NATS", "nats"}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := server.Config{Hub: hub.Config{Default: hub.NamespaceOptions{HistorySize: 10}}}
			switch tc.broker {
			case "redis":
				srv := redistest.Start(t, nil)
				b, err := redis.New(redis.Config{URL: srv.URL(), Logger: slog.New(slog.DiscardHandler)})
				if err != nil {
					t.Fatal(err)
				}
				cfg.Hub.Broker = b
			case "nats":
				srv := natstest.Start(t, nil)
				b, err := nats.New(nats.Config{URL: srv.URL(), Logger: slog.New(slog.DiscardHandler)})
				if err != nil {
					t.Fatal(err)
				}
				cfg.Hub.Broker = b
			}
			testBinaryRelay(t, start(t, cfg))
		})
	}
}

func testBinaryRelay(t *testing.T, n *node) {
	sender := dial(t, n.ws("/raw/blobs"), nil)
	other := dial(t, n.ws("/raw/blobs"), nil)
	nat, _ := dialNative(t, n)
	if r := nat.request(`{"id":1,"op":"subscribe","channel":"blobs"}`); r["ok"] != true {
		t.Fatalf("subscribe: %v", r)
	}
	blob := make([]byte, 300)
	for i := range blob {
		blob[i] = byte(i)
	}
	sender.sendType(websocket.MessageBinary, blob)
	sender.send("text after")
	for _, c := range []*client{sender, other} {
		if got := c.readBinary(); !bytes.Equal(got, blob) {
			t.Fatalf("raw subscriber got %d bytes %x..., want the 300 bytes sent", len(got), got[:min(len(got), 8)])
		}
		if got := c.read(); got != "text after" {
			t.Fatalf("raw subscriber got %q after the binary frame", got)
		}
	}
	wantB64 := base64.StdEncoding.EncodeToString(blob)
	m := nat.readJSON()
	if m["op"] != "message" || m["data"] != wantB64 || m["encoding"] != "base64" {
		t.Fatalf("native got %v, want the data in base64 with encoding base64", m)
	}
	if m := nat.readJSON(); m["data"] != "text after" || m["encoding"] != nil {
		t.Fatalf("native got %v for the text frame, want a JSON string and no encoding", m)
	}

	h := nat.request(`{"id":2,"op":"history","channel":"blobs"}`)
	msgs, _ := h["messages"].([]any)
	if len(msgs) != 2 {
		t.Fatalf("history reply %v, want 2 messages", h)
	}
	if first, _ := msgs[0].(map[string]any); first["data"] != wantB64 || first["encoding"] != "base64" {
		t.Errorf("history's binary message is %v", first)
	}
	if second, _ := msgs[1].(map[string]any); second["data"] != "text after" || second["encoding"] != nil {
		t.Errorf("history's text message is %v", second)
	}

	resp, err := http.Get(n.url("/api/history?channel=blobs"))
	if err != nil {
		t.Fatal(err)
	}
	var api struct {
		Messages []struct {
			Data     json.RawMessage
			Encoding string
		}
	}
	err = json.NewDecoder(resp.Body).Decode(&api)
	resp.Body.Close()
	if err != nil || len(api.Messages) != 2 {
		t.Fatalf("GET /api/history: %+v, %v", api, err)
	}
	if got := api.Messages[0]; string(got.Data) != `"`+wantB64+`"` || got.Encoding != "base64" {
		t.Errorf("GET /api/history's binary message: data %s encoding %q", got.Data, got.Encoding)
	}
	if got := api.Messages[1]; string(got.Data) != `"text after"` || got.Encoding != "" {
		t.Errorf("GET /api/history's text message: data %s encoding %q", got.Data, got.Encoding)
	}

	nat.sendType(websocket.MessageBinary, []byte{1, 2, 3})
	if r := nat.readJSON(); r["ok"] != false || r["id"] != 0.0 {
		t.Fatalf("a native binary frame was answered %v, want bad_request with id 0", r)
	}
}
