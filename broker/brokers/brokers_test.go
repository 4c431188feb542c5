package brokers

import (
	"context"
	"strings"
	"testing"

	"github.com/switchboard-rt/switchboard/broker/memory"
	"github.com/switchboard-rt/switchboard/broker/nats"
	"github.com/switchboard-rt/switchboard/broker/redis"
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

func TestOpenWithPrefix(t *testing.T) {
	if _, err := OpenWith("nats://127.0.0.1:1", Options{Prefix: "has.dot"}); err == nil {
		t.Error("OpenWith accepted a NATS prefix with a dot")
	}
	b, err := OpenWith("nats://127.0.0.1:1", Options{Prefix: "app-1"})
	if err != nil {
		t.Fatalf("OpenWith: %v", err)
	}
	_ = b.Close(context.Background())
}
