package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard-rt/switchboard/internal/redistest"
)

// readiness returns an instance's /readyz status and, when not ready, the
// message that says why.
func readiness(in *instance) (int, string) {
	resp, err := http.Get(in.url("/readyz"))
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var body struct {
		Error struct{ Code, Message string }
	}
	_ = json.Unmarshal(b, &body)
	return resp.StatusCode, body.Error.Message
}

// errorCode returns the code of a native reply's error, "" when it is ok.
func errorCode(r map[string]any) string {
	e, _ := r["error"].(map[string]any)
	code, _ := e["code"].(string)
	return code
}

// TestStartBeforeRedis starts two instances before anything listens on
// their Redis's port, as a compose file or systemd starting both at once
// does. They run: healthy, not ready (and saying why), answering native
// requests with unavailable and raw upgrades with 503, logging their
// retries. Once Redis starts they
// become ready by themselves, the clients that were refused are served on
// the same connections, and a message published on one instance reaches
// the subscribers on the other (native and raw, old and new) within 2 s.
func TestStartBeforeRedis(t *testing.T) {
	redis := redistest.New(t, nil)
	a := startInstance(t, "--redis", redis.URL())
	b := startInstance(t, "--redis", redis.URL())

	for _, in := range []*instance{a, b} {
		status, why := readiness(in)
		if status != 503 || !strings.Contains(why, "connection refused") {
			t.Fatalf("/readyz of %s before Redis: %d %q, want 503 saying the connection was refused", in.addr, status, why)
		}
	}
	sub := native(t, b.ws("/ws"))
	if r, err := sub.request(`{"id":1,"op":"subscribe","channel":"news"}`, 1, nil); err != nil || errorCode(r) != "unavailable" {
		t.Fatalf("subscribe before Redis: %v %v, want unavailable", r, err)
	}
	pub := native(t, a.ws("/ws"))
	if r, err := pub.request(`{"id":1,"op":"publish","channel":"news","data":"early"}`, 1, nil); err != nil || errorCode(r) != "unavailable" {
		t.Fatalf("publish before Redis: %v %v, want unavailable", r, err)
	}
	if code, body, err := httpPost(a.url("/api/publish"), `{"channel":"news","data":"early"}`); err != nil || code != 503 {
		t.Fatalf("HTTP publish before Redis: %d %s %v, want 503", code, body, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if conn, resp, err := websocket.Dial(ctx, b.ws("/raw/news"), nil); err == nil || resp == nil || resp.StatusCode != 503 {
		if conn != nil {
			_ = conn.CloseNow()
		}
		t.Fatalf("raw upgrade before Redis: %v %v, want 503", resp, err)
	}
	waitFor(t, 10*time.Second, func() bool {
		return strings.Count(a.logs.String(), `level=WARN msg="redis: cannot connect yet; retrying"`) >= 2
	}, "two retries logged")

	redis.Restart()
	started := time.Now()
	for _, in := range []*instance{a, b} {
		waitFor(t, 10*time.Second, func() bool { status, _ := readiness(in); return status == 200 }, "/readyz 200 once Redis is up")
	}
	t.Logf("both instances ready %v after Redis started", time.Since(started).Round(time.Millisecond))
	if !strings.Contains(a.logs.String(), `msg="redis: connected"`) {
		t.Error("no log line says the instance connected")
	}

	// The client refused before subscribes again on the same connection;
	// one that connects now is served as usual.
	if r, err := sub.request(`{"id":2,"op":"subscribe","channel":"news"}`, 2, nil); err != nil || r["ok"] != true {
		t.Fatalf("subscribe once Redis is up: %v %v", r, err)
	}
	late := native(t, b.ws("/ws"))
	if r, err := late.request(`{"id":1,"op":"subscribe","channel":"news"}`, 1, nil); err != nil || r["ok"] != true {
		t.Fatalf("subscribe of a new client: %v %v", r, err)
	}
	raw := dialWS(t, b.ws("/raw/news"))
	if r, err := pub.request(`{"id":2,"op":"publish","channel":"news","data":"hello"}`, 2, nil); err != nil || r["ok"] != true {
		t.Fatalf("publish once Redis is up: %v %v", r, err)
	}
	for _, c := range []*wsClient{sub, late} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		m, err := c.readJSON(ctx)
		cancel()
		if err != nil || m["op"] != "message" || m["data"] != "hello" {
			t.Fatalf("message on the other instance: %v %v, want hello within 2s", m, err)
		}
	}
	rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer rcancel()
	if text, err := raw.read(rctx); err != nil || text != "hello" {
		t.Fatalf("raw client on the other instance: %q %v, want hello within 2s", text, err)
	}
}

// TestRedisRefusesIsAnError points instances at a Redis that answers and
// refuses them: a wrong password. Each instance keeps running but is never ready, says why on
// /readyz, logs the reason as an error at every retry (never the
// password), and answers native requests with unavailable rather than
// internal.
func TestRedisRefusesIsAnError(t *testing.T) {
	tests := []struct {
		name string
		opts *redistest.Options
		url  func(*redistest.Server) string
		says string
	}{
		{"wrong password", &redistest.Options{Password: "right"},
			func(s *redistest.Server) string { return "redis://:wrong-s3cret@" + s.Addr() + "/0" },
			"authentication failed (check the user and password in the Redis URL)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			redis := redistest.Start(t, tc.opts)
			in := startInstance(t, "--redis", tc.url(redis))
			line := fmt.Sprintf(`level=ERROR msg="redis: cannot connect: %s; retrying until it is fixed"`, tc.says)
			waitFor(t, 10*time.Second, func() bool { return strings.Count(in.logs.String(), line) >= 3 },
				"three attempts logged as errors")
			status, why := readiness(in)
			if status != 503 || !strings.Contains(why, tc.says) {
				t.Errorf("/readyz: %d %q, want 503 saying %q", status, why, tc.says)
			}
			if resp, err := http.Get(in.url("/healthz")); err != nil || resp.StatusCode != 200 {
				t.Errorf("/healthz: %v %v, want 200", resp, err)
			} else {
				resp.Body.Close()
			}
			c := native(t, in.ws("/ws"))
			if r, err := c.request(`{"id":1,"op":"subscribe","channel":"news"}`, 1, nil); err != nil || errorCode(r) != "unavailable" {
				t.Errorf("subscribe: %v %v, want unavailable", r, err)
			}
			if strings.Contains(in.logs.String(), "wrong-s3cret") {
				t.Error("the logs show the password")
			}
		})
	}
}
