//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/pusher"
	"github.com/switchboard-rt/switchboard/server"
)

// startServer runs an in-process switchboard on a free loopback port until
// the test ends and returns its address.
func startServer(t *testing.T) string {
	t.Helper()
	srv, err := server.New(server.Config{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Pusher: []pusher.App{{ID: "app-id", Key: "app-key", Secret: "app-secret"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		<-done
	})
	return ln.Addr().String()
}

func TestScenarios(t *testing.T) {
	addr := startServer(t)
	ws := "ws://" + addr
	pid := os.Getpid() // the server runs in this process
	base := Config{URLs: []string{ws + "," + ws}, ServerPIDs: []int{pid}, Duration: time.Second, Drain: 3 * time.Second}
	tests := []struct {
		name  string
		cfg   func(c *Config)
		check func(t *testing.T, rs []Result)
	}{
		{"broadcast raw", func(c *Config) {
			c.Scenario, c.Dialect, c.Subscribers, c.Rate = "broadcast", "raw", 20, 50
		}, checkDelivery},
		{"broadcast raw channel", func(c *Config) {
			c.Scenario, c.Dialect, c.Channel, c.Subscribers, c.Rate = "broadcast", "raw", "bench-raw", 10, 50
		}, checkDelivery},
		{"broadcast native", func(c *Config) {
			c.Scenario, c.Dialect, c.Subscribers, c.Rate, c.Size = "broadcast", "native", 20, 50, 300
		}, checkDelivery},
		{"broadcast native http publish", func(c *Config) {
			c.Scenario, c.Dialect, c.Subscribers, c.Rate, c.PublishURL = "broadcast", "native", 10, 30, "http://"+addr
		}, checkDelivery},
		{"broadcast raw http publish", func(c *Config) {
			c.Scenario, c.Dialect, c.Subscribers, c.Rate, c.PublishURL = "broadcast", "raw", 10, 30, "http://"+addr
		}, checkDelivery},
		{"ramp", func(c *Config) {
			c.Scenario, c.Dialect, c.Subscribers, c.Rates, c.StepTime = "ramp", "raw", 10, []float64{50, 100}, 500*time.Millisecond
		}, func(t *testing.T, rs []Result) {
			if len(rs) != 3 {
				t.Fatalf("got %d results, want 2 steps and a summary", len(rs))
			}
			checkDelivery(t, rs[:2])
			for _, r := range rs[:2] {
				if r.Pass == nil || !*r.Pass {
					t.Errorf("step %d did not pass: %+v", r.Step, r)
				}
			}
			if s := rs[2]; s.Scenario != "ramp-summary" || s.SustainedRate != 100 || s.SustainedDeliveriesSec <= 0 {
				t.Errorf("summary = %+v", s)
			}
		}},
		{"broadcast pusher", func(c *Config) {
			c.Scenario, c.Dialect, c.Subscribers, c.Rate = "broadcast", "pusher", 20, 50
		}, checkDelivery},
		{"broadcast pusher http publish", func(c *Config) {
			c.Scenario, c.Dialect, c.Subscribers, c.Rate, c.PublishURL = "broadcast", "pusher", 10, 30, "http://"+addr
		}, checkDelivery},
		{"idle pusher", func(c *Config) {
			c.Scenario, c.Dialect, c.Conns, c.Duration, c.Settle = "idle", "pusher", 30, 200*time.Millisecond, 100*time.Millisecond
		}, func(t *testing.T, rs []Result) {
			r := rs[0]
			if r.Conns != 30 || r.ConnErrors != 0 || r.Disconnects != 0 {
				t.Errorf("idle = %+v", r)
			}
		}},
		{"rooms native", func(c *Config) {
			c.Scenario, c.Dialect, c.Rooms, c.RoomSize, c.Rate = "rooms", "native", 5, 3, 4
		}, checkDelivery},
		{"rooms native several per connection", func(c *Config) {
			c.Scenario, c.Dialect, c.Rooms, c.RoomSize, c.RoomsPerConn, c.Rate = "rooms", "native", 6, 4, 3, 2
		}, func(t *testing.T, rs []Result) {
			checkDelivery(t, rs)
			if r := rs[0]; r.Subscribers != 8 || r.RoomsPerConn != 3 || r.Expected != r.Sent*4 {
				t.Errorf("rooms = %d connections, %d rooms each, %d sent, %d expected; want 8, 3, x4", r.Subscribers, r.RoomsPerConn, r.Sent, r.Expected)
			}
		}},
		{"rooms pusher several per connection", func(c *Config) {
			c.Scenario, c.Dialect, c.Rooms, c.RoomSize, c.RoomsPerConn, c.Rate = "rooms", "pusher", 4, 3, 2, 2
			c.PublishURL = "http://" + addr
		}, checkDelivery},
		{"rooms raw", func(c *Config) {
			c.Scenario, c.Dialect, c.Rooms, c.RoomSize, c.Rate = "rooms", "raw", 4, 3, 4
		}, checkDelivery},
		{"idle", func(c *Config) {
			c.Scenario, c.Dialect, c.Conns, c.Duration, c.Settle = "idle", "native", 50, 200*time.Millisecond, 100*time.Millisecond
		}, func(t *testing.T, rs []Result) {
			r := rs[0]
			if r.Conns != 50 || r.ConnErrors != 0 || r.Disconnects != 0 || len(r.Servers) != 1 || r.Servers[0].RSSKB == 0 {
				t.Errorf("idle = %+v", r)
			}
		}},
		{"connect", func(c *Config) {
			c.Scenario, c.Dialect, c.Conns, c.Concurrency = "connect", "raw", 100, 8
		}, func(t *testing.T, rs []Result) {
			r := rs[0]
			if r.Conns != 100 || r.ConnErrors != 0 || r.HandshakesPerSec <= 0 || r.Handshake == nil || r.Handshake.Count != 100 {
				t.Errorf("connect = %+v", r)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			tt.cfg(&cfg)
			rs, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if len(rs) == 0 {
				t.Fatal("no results")
			}
			tt.check(t, rs)
			checkOutputs(t, rs)
		})
	}
}

// checkDelivery asserts that every delivery result delivered everything,
// once, in order, and has its figures.
func checkDelivery(t *testing.T, rs []Result) {
	t.Helper()
	for _, r := range rs {
		if r.Expected == 0 || r.Delivered != r.Expected || r.Lost != 0 || r.Duplicated != 0 || r.OutOfOrder != 0 {
			t.Errorf("%s: expected %d delivered %d lost %d dup %d ooo %d (first error %q, request errors %d)",
				r.Scenario, r.Expected, r.Delivered, r.Lost, r.Duplicated, r.OutOfOrder, r.FirstError, r.RequestErrors)
		}
		if r.Disconnects != 0 || r.ConnErrors != 0 || r.RequestErrors != 0 {
			t.Errorf("%s: disconnects %d conn errors %d request errors %d", r.Scenario, r.Disconnects, r.ConnErrors, r.RequestErrors)
		}
		if r.Latency == nil || r.Latency.Count != r.Delivered || r.Latency.P50MS <= 0 || r.Latency.MaxMS < r.Latency.P99MS {
			t.Errorf("%s: latency = %+v", r.Scenario, r.Latency)
		}
		if r.DeliveriesPerSec <= 0 || len(r.Servers) != 1 || r.ServerCPUUSPerDeliv <= 0 {
			t.Errorf("%s: deliveries/s %v servers %v cpu/delivery %v", r.Scenario, r.DeliveriesPerSec, r.Servers, r.ServerCPUUSPerDeliv)
		}
	}
}

// checkOutputs renders the table, JSON lines and HTML of rs.
func checkOutputs(t *testing.T, rs []Result) {
	t.Helper()
	var table bytes.Buffer
	writeTable(&table, rs)
	if !strings.Contains(table.String(), rs[0].Scenario) {
		t.Errorf("table lacks the scenario:\n%s", table.String())
	}
	path := filepath.Join(t.TempDir(), "r.jsonl")
	if err := writeJSONLines(path, nil, rs); err != nil {
		t.Fatal(err)
	}
	back, err := readJSONLines(path)
	if err != nil || len(back) != len(rs) {
		t.Fatalf("read back %d results: %v", len(back), err)
	}
	var m map[string]any
	b, _ := json.Marshal(rs[0])
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"scenario", "dialect", "delivered", "lost", "bench_cpu_s", "server_cpu_s"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, b)
		}
	}
	var h bytes.Buffer
	writeHTML(&h, back)
	if !strings.Contains(h.String(), "<svg") && (rs[0].Latency != nil || rs[0].Handshake != nil) {
		t.Errorf("HTML report has no chart")
	}
}
