//go:build unix

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/internal/wait"
)

// SIGHUP reloads the namespace options from the file; the server keeps
// running, and a file with a mistake changes nothing.
func TestReloadOnSIGHUP(t *testing.T) {
	file := writeFile(t, "ns.yaml", "namespaces:\n  chat: {history_size: 0}\n")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan int)
	go func() { done <- run(ctx, []string{"--addr", "127.0.0.1:0", "--config", file}, &stdout, &stderr) }()
	defer func() { cancel(); <-done }()
	var base string
	wait.For(t, 10*time.Second, func() error {
		m := regexp.MustCompile(`listening on (\S+)`).FindStringSubmatch(stdout.String())
		if m == nil {
			return fmt.Errorf("not listening; stderr:\n%s", stderr.String())
		}
		base = "http://" + m[1]
		return nil
	})
	history := func() int {
		resp, err := http.Get(base + "/api/history?channel=chat:x")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v any
		_ = json.NewDecoder(resp.Body).Decode(&v)
		return resp.StatusCode
	}
	if code := history(); code != http.StatusForbidden {
		t.Fatalf("history of chat:x before the reload: %d, want 403 (no history)", code)
	}
	hup := func() {
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	// A mistake: refused, logged, nothing changed.
	if err := os.WriteFile(file, []byte("namespaces:\n  chat: {history_size: many}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hup()
	wait.For(t, 5*time.Second, func() error {
		if !strings.Contains(stderr.String(), "reload refused") {
			return fmt.Errorf("no refusal logged:\n%s", stderr.String())
		}
		return nil
	})
	if code := history(); code != http.StatusForbidden {
		t.Fatalf("history after a refused reload: %d, want 403", code)
	}
	if err := os.WriteFile(file, []byte("max_subscriptions: 7\nnamespaces:\n  chat: {history_size: 10}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hup()
	wait.For(t, 5*time.Second, func() error {
		if code := history(); code != http.StatusOK {
			return fmt.Errorf("history of chat:x after the reload: %d, want 200", code)
		}
		return nil
	})
	wait.For(t, 5*time.Second, func() error {
		if logs := stderr.String(); !strings.Contains(logs, "changed options that only a restart applies") || !strings.Contains(logs, "max_subscriptions") {
			return fmt.Errorf("the restart-only change is not named:\n%s", logs)
		}
		return nil
	})
}
