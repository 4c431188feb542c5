package redis

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/internal/redistest"
)

// logLines records a logger's lines (text format) and passes them on to
// the test's log.
type logLines struct {
	t     *testing.T
	mu    sync.Mutex
	lines []string // guarded by mu
}

func (l *logLines) Write(p []byte) (int, error) {
	line := strings.TrimSuffix(string(p), "\n")
	l.t.Log(line)
	l.mu.Lock()
	l.lines = append(l.lines, line)
	l.mu.Unlock()
	return len(p), nil
}

// count returns how many lines hold every one of parts.
func (l *logLines) count(parts ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
next:
	for _, line := range l.lines {
		for _, p := range parts {
			if !strings.Contains(line, p) {
				continue next
			}
		}
		n++
	}
	return n
}

// recordLogs returns a logger whose lines l keeps.
func recordLogs(t *testing.T) (*slog.Logger, *logLines) {
	l := &logLines{t: t}
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug})), l
}

// A broker started before its Redis does not fail: it is not ready and
// says why, refuses every call with ErrUnavailable at once, logs each
// retry, and once Redis is up connects by itself and works, with
// subscriptions made from then on.
func TestStartBeforeRedis(t *testing.T) {
	t.Parallel()
	srv := redistest.New(t, nil)
	log, logs := recordLogs(t)
	b := newBroker(t, srv, Config{Logger: log, ConnectDelay: 200 * time.Millisecond})
	h := newSink()
	start := time.Now()
	if err := b.Start(context.Background(), h); err != nil {
		t.Fatalf("Start before Redis: %v", err)
	}
	if took := time.Since(start); took > 1500*time.Millisecond {
		t.Errorf("Start took %v without Redis", took)
	}
	err := b.Ready()
	if !errors.Is(err, broker.ErrUnavailable) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("Ready before Redis: %v, want ErrUnavailable saying the connection was refused", err)
	}
	ctx := context.Background()
	if _, err := b.Publish(ctx, "c", []byte(`1`), broker.PublishOptions{}); !errors.Is(err, broker.ErrUnavailable) {
		t.Errorf("Publish before Redis: %v, want ErrUnavailable", err)
	}
	if err := b.Subscribe(ctx, "c"); !errors.Is(err, broker.ErrUnavailable) {
		t.Errorf("Subscribe before Redis: %v, want ErrUnavailable", err)
	}
	if _, err := b.History(ctx, "c", broker.HistoryRequest{}, broker.PublishOptions{HistorySize: 1}); !errors.Is(err, broker.ErrUnavailable) {
		t.Errorf("History before Redis: %v, want ErrUnavailable", err)
	}
	waitFor(t, 5*time.Second, "three attempts logged", func() bool {
		return logs.count("level=WARN", "cannot connect yet; retrying", "attempt=3", "retry_in=") == 1
	})
	if n := logs.count("level=ERROR"); n != 0 {
		t.Errorf("%d error lines for a Redis that is not up yet", n)
	}

	srv.Restart()
	waitFor(t, 5*time.Second, "ready once Redis is up", func() bool { return b.Ready() == nil })
	// The line is written by the goroutine that connected, around the
	// moment the broker becomes ready: wait for it rather than race it.
	waitFor(t, 5*time.Second, "an info line that says the broker connected", func() bool {
		return logs.count("level=INFO", "redis: connected") == 1
	})
	if err := b.Subscribe(ctx, "c"); err != nil {
		t.Fatalf("Subscribe once Redis is up: %v", err)
	}
	if _, err := b.Publish(ctx, "c", []byte(`"hi"`), broker.PublishOptions{}); err != nil {
		t.Fatalf("Publish once Redis is up: %v", err)
	}
	waitFor(t, 2*time.Second, "the message", func() bool { return len(h.get("c")) == 1 })
	if h.lost.Load() != 0 || h.restored.Load() != 0 {
		t.Errorf("the first connection told the StateHandler: lost %d, restored %d", h.lost.Load(), h.restored.Load())
	}
}

// Close ends the retries of a broker that never connected, at once.
func TestCloseWhileConnecting(t *testing.T) {
	t.Parallel()
	srv := redistest.New(t, nil)
	b := newBroker(t, srv, Config{})
	if err := b.Start(context.Background(), newSink()); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := b.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("Close took %v", took)
	}
	if err := b.Ready(); !errors.Is(err, broker.ErrClosed) {
		t.Errorf("Ready after Close: %v", err)
	}
	// TestMain's goroutine check shows that the connect goroutine ended.
}

// What retrying alone cannot fix is an error at every attempt, and Ready
// says what it is: the wrong password or none, a TLS client against a
// plain port.
func TestConnectRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts *redistest.Options
		url  func(srv *redistest.Server) string
		want error
		says string
	}{
		{"wrong password", &redistest.Options{Password: "right"},
			func(srv *redistest.Server) string { return "redis://:wrong@" + srv.Addr() + "/0" }, ErrAuth, "WRONGPASS"},
		{"no password", &redistest.Options{Password: "right"},
			func(srv *redistest.Server) string { return "redis://" + srv.Addr() + "/0" }, ErrAuth, "NOAUTH"},
		{"TLS against a plain port", nil,
			func(srv *redistest.Server) string { return "rediss://" + srv.Addr() }, ErrTLSHandshake, "TLS handshake failed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := redistest.Start(t, tc.opts)
			log, logs := recordLogs(t)
			b, err := New(Config{URL: tc.url(srv), Logger: log, Timeout: 300 * time.Millisecond, ConnectDelay: 200 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = b.Close(context.Background()) })
			if err := b.Start(context.Background(), newSink()); err != nil {
				t.Fatalf("Start: %v", err)
			}
			err = b.Ready()
			if !errors.Is(err, tc.want) || !errors.Is(err, broker.ErrUnavailable) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("Ready = %v, want %v and ErrUnavailable, saying %q", err, tc.want, tc.says)
			}
			hint := strings.TrimPrefix(tc.want.Error(), "redis: ")
			waitFor(t, 5*time.Second, "three attempts logged as errors", func() bool {
				return logs.count("level=ERROR", hint, "attempt=3") == 1
			})
			if n := logs.count("level=WARN"); n != 0 {
				t.Errorf("%d warning lines: a refusal is an error", n)
			}
			if !errors.Is(b.Ready(), tc.want) {
				t.Errorf("Ready after the retries: %v", b.Ready())
			}
		})
	}
}
