package brokers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/broker/memory"
	"github.com/switchboard-rt/switchboard/broker/nats"
	"github.com/switchboard-rt/switchboard/broker/redis"
	"github.com/switchboard-rt/switchboard/internal/redistest"
)

func TestOpenChoosesByScheme(t *testing.T) {
	for _, tc := range []struct {
		url, want string
	}{
		{"", "memory"},
		{"memory:", "memory"},
		{"redis://127.0.0.1:1/0", "redis"},
		{"rediss://127.0.0.1:1/0", "redis"},
		{"REDIS://127.0.0.1:1/0", "redis"},
		{"nats://127.0.0.1:1", "nats"},
		{"tls://127.0.0.1:1", "nats"},
		{"nats://a:1,nats://b:2", "nats"},
	} {
		b, err := Open(tc.url, nil)
		if err != nil {
			t.Fatalf("Open(%q): %v", tc.url, err)
		}
		switch b.(type) {
		case *memory.Broker:
			if tc.want != "memory" {
				t.Errorf("Open(%q) is a memory broker", tc.url)
			}
		case *redis.Broker:
			if tc.want != "redis" {
				t.Errorf("Open(%q) is a Redis broker", tc.url)
			}
		case *nats.Broker:
			if tc.want != "nats" {
				t.Errorf("Open(%q) is a NATS broker", tc.url)
			}
		}
		if got := Name(tc.url); got != tc.want {
			t.Errorf("Name(%q) = %q, want %q", tc.url, got, tc.want)
		}
		_ = b.Close(context.Background())
	}
	if _, err := Open("kafka://x", nil); err == nil || !strings.Contains(err.Error(), `unknown broker "kafka:"`) {
		t.Errorf("Open(kafka://x): %v", err)
	}
}

func TestOpenWith(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		want string // the error, or the broker's type
	}{
		{"memory", Options{}, "*memory.Broker"},
		{"redis", Options{URL: "redis://127.0.0.1:1/0", Prefix: "app-1"}, "*redis.Broker"},
		{"shards", Options{Shards: []string{"redis://127.0.0.1:1", "redis://127.0.0.1:2"}}, "*sharded.Broker"},
		{"both", Options{URL: "redis://127.0.0.1:1", Shards: []string{"redis://127.0.0.1:2"}}, "not both"},
		{"shard not redis", Options{Shards: []string{"memory:"}}, `shard "memory:"`},
		{"same shard twice", Options{Shards: []string{"redis://127.0.0.1:1", "redis://127.0.0.1:1/2"}}, "both 127.0.0.1:1"},
		{"prefix with a colon", Options{URL: "redis://127.0.0.1:1", Prefix: "a:b"}, `bad Redis prefix "a:b"`},
		{"prefix with a glob", Options{Shards: []string{"redis://127.0.0.1:1"}, Prefix: "a*"}, `bad Redis prefix "a*"`},
		{"nats", Options{URL: "nats://127.0.0.1:1", Prefix: "app-1"}, "*nats.Broker"},
		{"nats prefix with a dot", Options{URL: "nats://127.0.0.1:1", Prefix: "has.dot"}, "has.dot"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, err := OpenWith(tc.o)
			if err != nil {
				if !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("OpenWith(%+v): %v, want %q", tc.o, err, tc.want)
				}
				return
			}
			defer b.Close(context.Background())
			if got := fmt.Sprintf("%T", b); got != tc.want {
				t.Fatalf("OpenWith(%+v) = %s, want %s", tc.o, got, tc.want)
			}
		})
	}
	if got := (Options{Shards: []string{"redis://x"}}).Name(); got != "sharded redis" {
		t.Errorf("Name of shards: %q", got)
	}
}

// Two applications with different prefixes on one Redis (and on the same
// shards) see neither each other's messages, nor history, presence or
// channel counts.
func TestPrefixesDoNotMix(t *testing.T) {
	srv, srv2 := redistest.Start(t, nil), redistest.Start(t, nil)
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"redis", Options{URL: srv.URL()}},
		{"shards", Options{Shards: []string{srv.URL(), srv2.URL()}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			type app struct {
				b   broker.Broker
				mu  sync.Mutex
				got []string
			}
			apps := make([]*app, 2)
			for i, prefix := range []string{"", "other"} { // "" is the default, sb
				o := tc.o
				o.Prefix = prefix
				b, err := OpenWith(o)
				if err != nil {
					t.Fatal(err)
				}
				a := &app{b: b}
				t.Cleanup(func() { _ = b.Close(context.Background()) })
				if err := b.Start(ctx, broker.HandlerFunc(func(m broker.Message) {
					a.mu.Lock()
					defer a.mu.Unlock()
					a.got = append(a.got, string(m.Data))
				})); err != nil {
					t.Fatal(err)
				}
				waitReady(t, b)
				apps[i] = a
			}
			ch := "chat:lobby-" + tc.name // the subtests share srv
			opts := broker.PublishOptions{HistorySize: 10}
			for i, a := range apps {
				if err := a.b.Subscribe(ctx, ch); err != nil {
					t.Fatal(err)
				}
				if _, err := a.b.(broker.Presencer).SetPresence(ctx, ch, []broker.PresenceEntry{{Client: fmt.Sprint("c", i), Node: "n"}}, time.Minute); err != nil {
					t.Fatal(err)
				}
				if err := a.b.(broker.NodeCounter).SetNodeChannels(ctx, "n-"+tc.name, map[string]int{ch: i + 1}, time.Minute); err != nil {
					t.Fatal(err)
				}
			}
			for i, a := range apps {
				for range i + 1 {
					if _, err := a.b.Publish(ctx, ch, []byte(fmt.Sprintf(`"from %d"`, i)), opts); err != nil {
						t.Fatal(err)
					}
				}
			}
			// A last message of each app's own, published after all the
			// others: one Redis delivers in the order it executes, so once
			// it arrives any message of the other app would have too.
			for _, a := range apps {
				if _, err := a.b.Publish(ctx, ch, []byte(`"end"`), broker.PublishOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			for i, a := range apps {
				want := make([]string, i+1)
				for k := range want {
					want[k] = fmt.Sprintf(`"from %d"`, i)
				}
				want = append(want, `"end"`)
				deadline := time.Now().Add(5 * time.Second)
				for {
					a.mu.Lock()
					got := slices.Clone(a.got)
					a.mu.Unlock()
					if slices.Contains(got, `"end"`) || time.Now().After(deadline) {
						if !slices.Equal(got, want) {
							t.Fatalf("app %d received %q, want %q", i, got, want)
						}
						break
					}
					time.Sleep(5 * time.Millisecond)
				}
				res, err := a.b.(broker.Historian).History(ctx, ch, broker.HistoryRequest{Limit: 10}, opts)
				if err != nil || res.Pos.Offset != uint64(i+1) || len(res.Messages) != i+1 {
					t.Errorf("app %d history: %+v, %v; want only its own %d messages", i, res, err, i+1)
				}
				pres, err := a.b.(broker.Presencer).Presence(ctx, ch)
				if err != nil || len(pres) != 1 || pres[0].Client != fmt.Sprint("c", i) {
					t.Errorf("app %d presence: %+v, %v", i, pres, err)
				}
				counts, err := a.b.(broker.NodeCounter).ClusterChannels(ctx)
				if err != nil || counts[ch] != i+1 { // the other subtest's count too
					t.Errorf("app %d channel counts: %v, %v", i, counts, err)
				}
			}
		})
	}
}

// waitReady waits until b is ready.
func waitReady(t *testing.T, b broker.Broker) {
	t.Helper()
	r, ok := b.(broker.Readier)
	if !ok {
		return
	}
	deadline := time.Now().Add(5 * time.Second)
	for r.Ready() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("not ready: %v", r.Ready())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
