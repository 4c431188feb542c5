package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"maps"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/hub"
)

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		check   func(t *testing.T, o *options)
		wantErr string
	}{
		{"defaults", nil, nil, func(t *testing.T, o *options) {
			if o.addr != ":8080" || o.rawChannel != "chat_messages" || o.maxMessageBytes != 65536 ||
				o.maxSubscriptions != 128 || o.sendQueueBytes != 1<<20 || o.pingInterval != 25*time.Second ||
				o.shutdownTimeout != 10*time.Second || o.logFormat != "text" || o.redisURL != "" {
				t.Errorf("defaults: %+v", o)
			}
		}, ""},
		{"flags", []string{"--addr", "127.0.0.1:9000", "--raw-channel=lobby", "--ping-interval", "5s"}, nil, func(t *testing.T, o *options) {
			if o.addr != "127.0.0.1:9000" || o.rawChannel != "lobby" || o.pingInterval != 5*time.Second {
				t.Errorf("%+v", o)
			}
		}, ""},
		{"env", nil, map[string]string{"SWITCHBOARD_ADDR": ":7000", "SWITCHBOARD_MAX_SUBSCRIPTIONS": "5", "SWITCHBOARD_REDIS_URL": "redis://x:1/0", "SWITCHBOARD_ALLOWED_ORIGINS": "https://a.example, https://b.example"}, func(t *testing.T, o *options) {
			if o.addr != ":7000" || o.maxSubscriptions != 5 || o.redisURL != "redis://x:1/0" {
				t.Errorf("%+v", o)
			}
			if got := splitList(o.allowedOrigins); len(got) != 2 || got[1] != "https://b.example" {
				t.Errorf("origins %q", got)
			}
		}, ""},
		{"flag beats env", []string{"--addr", ":1"}, map[string]string{"SWITCHBOARD_ADDR": ":2"}, func(t *testing.T, o *options) {
			if o.addr != ":1" {
				t.Errorf("addr %q", o.addr)
			}
		}, ""},
		{"bad env value", nil, map[string]string{"SWITCHBOARD_PING_INTERVAL": "soon"}, nil, "SWITCHBOARD_PING_INTERVAL"},
		{"bad log format", []string{"--log-format", "xml"}, nil, nil, "--log-format must be text or json"},
		{"queue below message", []string{"--send-queue-bytes", "10"}, nil, nil, "--send-queue-bytes must be at least --max-message-bytes"},
		{"stray argument", []string{"serve"}, nil, nil, `unexpected argument "serve"`},
		{"unknown flag", []string{"--nope"}, nil, nil, "flag provided but not defined"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stderr bytes.Buffer
			o, err := parse(tc.args, func(k string) string { return tc.env[k] }, &stderr)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, o)
		})
	}
}

func TestHelpListsEveryOption(t *testing.T) {
	var stderr bytes.Buffer
	_, err := parse([]string{"--help"}, func(string) string { return "" }, &stderr)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{"--addr (SWITCHBOARD_ADDR)", "default :8080", "--allowed-origins", "--api-key", "--raw-channel",
		"--max-message-bytes", "--max-subscriptions", "--send-queue-bytes", "--ping-interval", "--shutdown-timeout",
		"--log-format", "--redis (SWITCHBOARD_REDIS_URL)", "default 1048576", "default 25s"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("--help lacks %q:\n%s", want, stderr.String())
		}
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestRunStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	done := make(chan int)
	go func() { done <- run(ctx, []string{"--addr", "127.0.0.1:0", "--log-level", "error"}, &stdout, &stderr) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(stdout.String(), "listening on") {
		if time.Now().After(deadline) {
			t.Fatalf("not listening; stderr:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit code %d; stderr:\n%s", code, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}

func TestRunBadOptions(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"--max-subscriptions", "0"}, &stdout, &stderr); code != 2 {
		t.Errorf("exit code %d, want 2", code)
	}
	if !strings.Contains(stderr.String(), "--max-subscriptions must be positive") {
		t.Errorf("stderr: %s", stderr.String())
	}
}

func TestNamespacesFromFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := dir + "/" + name
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", "namespaces:\n  default: {history_size: 100, history_ttl: 10m}\n  chat: {history_size: 500, history_ttl: 1h}\n  news: {history_size: 50, read_only: true}\n")
	tests := []struct {
		name    string
		args    []string
		wantDef hub.NamespaceOptions
		wantNS  map[string]hub.NamespaceOptions
		wantErr string
	}{
		{"flags only", []string{"--history-size", "20", "--history-ttl", "5m"}, hub.NamespaceOptions{HistorySize: 20, HistoryTTL: 5 * time.Minute}, map[string]hub.NamespaceOptions{}, ""},
		{"file", []string{"--config", good}, hub.NamespaceOptions{HistorySize: 100, HistoryTTL: 10 * time.Minute},
			map[string]hub.NamespaceOptions{"chat": {HistorySize: 500, HistoryTTL: time.Hour}, "news": {HistorySize: 50, ReadOnly: true}}, ""},
		{"flag overrides file default", []string{"--config", good, "--history-size", "7"}, hub.NamespaceOptions{HistorySize: 7, HistoryTTL: 10 * time.Minute},
			map[string]hub.NamespaceOptions{"chat": {HistorySize: 500, HistoryTTL: time.Hour}, "news": {HistorySize: 50, ReadOnly: true}}, ""},
		{"typo", []string{"--config", write("typo.yaml", "namespaces:\n  chat: {histroy_size: 5}\n")}, hub.NamespaceOptions{}, nil, "field histroy_size not found"},
		{"bad name", []string{"--config", write("bad.yaml", "namespaces:\n  \"a b\": {history_size: 5}\n")}, hub.NamespaceOptions{}, nil, "not a valid namespace name"},
		{"missing file", []string{"--config", dir + "/nope.yaml"}, hub.NamespaceOptions{}, nil, "no such file"},
		{"empty file", []string{"--config", write("empty.yaml", "")}, hub.NamespaceOptions{}, map[string]hub.NamespaceOptions{}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parse(tc.args, func(string) string { return "" }, &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			def, ns, err := o.namespaces()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if def != tc.wantDef || !maps.Equal(ns, tc.wantNS) {
				t.Errorf("got %+v %+v, want %+v %+v", def, ns, tc.wantDef, tc.wantNS)
			}
		})
	}
}
