package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/broker/memory"
	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newHandler(t *testing.T, key string) *Handler {
	t.Helper()
	h, err := hub.New(hub.Config{
		Broker:     memory.New(memory.Config{}),
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		Namespaces: map[string]hub.NamespaceOptions{"h": {HistorySize: 5}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Shutdown(context.Background()) })
	return New(Config{Hub: h, APIKey: key, MaxMessageBytes: 100})
}

func TestStatusOfEveryCode(t *testing.T) {
	t.Parallel()
	for code, want := range map[protocol.Code]int{
		protocol.CodeBadRequest: 400, protocol.CodeUnauthorized: 401, protocol.CodeForbidden: 403,
		protocol.CodeNotFound: 404, protocol.CodeTooLarge: 413, protocol.CodeRateLimited: 429,
		protocol.CodeLimitExceeded: 429, protocol.CodeUnavailable: 503, protocol.CodeInternal: 500,
		"unheard_of": 500,
	} {
		rec := httptest.NewRecorder()
		writeError(rec, protocol.Errorf(code, "m"))
		var body struct {
			Error struct{ Code, Message string }
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != want || body.Error.Code != string(code) || body.Error.Message != "m" {
			t.Errorf("%s: %d %s, want %d", code, rec.Code, rec.Body, want)
		}
	}
}

func TestRequests(t *testing.T) {
	t.Parallel()
	h := newHandler(t, "k3y")
	tests := []struct {
		name, method, path, key, body string
		status                        int
		contains                      string
	}{
		{"no key", "POST", "/api/publish", "", `{"channel":"a","data":1}`, 401, `"unauthorized"`},
		{"wrong key", "POST", "/api/publish", "nope", `{"channel":"a","data":1}`, 401, `"unauthorized"`},
		{"publish", "POST", "/api/publish", "k3y", `{"channel":"a","data":1}`, 200, `{}`},
		{"publish with history", "POST", "/api/publish", "k3y", `{"channel":"h:x","data":1}`, 200, `"offset":1`},
		{"not json", "POST", "/api/publish", "k3y", `{`, 400, `"bad_request"`},
		{"no channel", "POST", "/api/publish", "k3y", `{"data":1}`, 400, `channel is missing`},
		{"data too large", "POST", "/api/publish", "k3y", `{"channel":"a","data":"` + strings.Repeat("x", 200) + `"}`, 413, `"too_large"`},
		{"long idempotency key", "POST", "/api/publish", "k3y", `{"channel":"a","data":1,"idempotency_key":"` + strings.Repeat("k", 129) + `"}`, 400, `idempotency_key`},
		{"broadcast", "POST", "/api/broadcast", "k3y", `{"channels":["a","b"],"data":1}`, 200, `"results"`},
		{"broadcast bad channel", "POST", "/api/broadcast", "k3y", `{"channels":["a","b c"],"data":1}`, 200, `{"channel":"b c","error":{"code":"bad_request","message":"channel \"b c\": `},
		{"broadcast only bad channels", "POST", "/api/broadcast", "k3y", `{"channels":["b c"],"data":1}`, 400, `"message":"channel \"b c\": `},
		{"publish bad channel", "POST", "/api/publish", "k3y", `{"channel":"bad name!","data":1}`, 400, `"message":"channel \"bad name!\": `},
		{"body not an object", "POST", "/api/publish", "k3y", `"x"`, 400, `"message":"body must be a JSON object, like {\"channel\":\"news\",\"data\":{\"text\":\"hi\"}}"`},
		{"body not json", "POST", "/api/publish", "k3y", `{"channel":`, 400, `"message":"body is not valid JSON`},
		{"channel not a string", "POST", "/api/publish", "k3y", `{"channel":5,"data":1}`, 400, `"message":"channel must be a string, not a JSON number"`},
		{"wrong method", "GET", "/api/publish", "k3y", ``, 405, `"message":"/api/publish takes POST, not GET"`},
		{"wrong method on a GET", "DELETE", "/api/history", "k3y", ``, 405, `"message":"/api/history takes GET or HEAD, not DELETE"`},
		{"broadcast no channels", "POST", "/api/broadcast", "k3y", `{"data":1}`, 400, `channels is missing`},
		{"history", "GET", "/api/history?channel=h:x&limit=3", "k3y", ``, 200, `"messages":[{"offset":1,"data":1,"ts":1`},
		{"history off", "GET", "/api/history?channel=a", "k3y", ``, 403, `"forbidden"`},
		{"history bad limit", "GET", "/api/history?channel=h:x&limit=-1", "k3y", ``, 400, `limit`},
		{"presence off", "GET", "/api/presence?channel=a", "k3y", ``, 403, `"forbidden"`},
		{"channels", "GET", "/api/channels", "k3y", ``, 200, `"channels":[]`},
		{"unknown", "GET", "/api/nothing", "k3y", ``, 404, `"not_found"`},
		{"healthz without key", "GET", "/healthz", "", ``, 200, `"ok"`},
		{"readyz", "GET", "/readyz", "", ``, 200, `"ready"`},
	}
	for _, tc := range tests {
		req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
		if tc.key != "" {
			req.Header.Set("Authorization", "Bearer "+tc.key)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.status || !strings.Contains(rec.Body.String(), tc.contains) {
			t.Errorf("%s: %d %s, want %d with %s", tc.name, rec.Code, rec.Body, tc.status, tc.contains)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: content type %q", tc.name, ct)
		}
		if rec.Code == http.StatusMethodNotAllowed && rec.Header().Get("Allow") == "" {
			t.Errorf("%s: 405 without Allow", tc.name)
		}
		if strings.Contains(rec.Body.String(), "Go value") || strings.Contains(rec.Body.String(), "::") {
			t.Errorf("%s: the error reads like Go's: %s", tc.name, rec.Body)
		}
	}
}

// Every figure the node has is exported, once, with its help and type,
// and the values are the live ones.
func TestMetrics(t *testing.T) {
	h := newHandler(t, "")
	h.cfg.Metrics = []func() []hub.Metric{func() []hub.Metric {
		return []hub.Metric{{Name: "switchboard_extra_total", Kind: "counter", Help: "A part's own figure.", Value: 7}}
	}}
	if _, err := h.cfg.Hub.Publish(context.Background(), "h:x", []byte("1")); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	text := rec.Body.String()
	all := h.Metrics()
	names := map[string]bool{}
	valid := regexp.MustCompile(`^switchboard_[a-z_]+$`)
	for _, m := range all {
		key := m.Name + fmt.Sprint(m.Labels)
		if names[key] {
			t.Errorf("%s is exported twice", key)
		}
		names[key] = true
		if !valid.MatchString(m.Name) || m.Help == "" || (m.Kind != "counter" && m.Kind != "gauge" && m.Kind != "histogram") ||
			(m.Kind == "histogram") != (m.Histogram != nil) {
			t.Errorf("bad metric %+v", m)
		}
		if m.Kind == "counter" && !strings.HasSuffix(m.Name, "_total") {
			t.Errorf("counter %s does not end in _total", m.Name)
		}
		sample := "\n" + m.Name + " "
		if len(m.Labels) > 0 {
			sample = "\n" + m.Name + "{"
		}
		if m.Kind == "histogram" {
			sample = "\n" + m.Name + "_count "
		}
		for _, want := range []string{"# HELP " + m.Name + " " + m.Help + "\n", "# TYPE " + m.Name + " " + m.Kind + "\n", sample} {
			if !strings.Contains(text, want) {
				t.Errorf("/metrics lacks %q", want)
			}
		}
	}
	if fields, rows := reflect.TypeFor[hub.Stats]().NumField(), len(h.cfg.Hub.Metrics()); fields != rows {
		t.Errorf("hub.Stats has %d figures and the hub exports %d: one is not exported", fields, rows)
	}
	for _, want := range []string{"switchboard_ready 1\n", "switchboard_messages_published_total 1\n", "switchboard_extra_total 7\n", "switchboard_slow_consumers_total 0\n",
		"switchboard_delivery_latency_seconds_bucket{le=\"0.0005\"} 0\n", "switchboard_delivery_latency_seconds_bucket{le=\"+Inf\"} 0\n",
		"switchboard_delivery_latency_seconds_sum 0\n", "switchboard_delivery_latency_seconds_count 0\n", "switchboard_send_queue_bytes 0\n", "switchboard_namespace_messages_published_total{namespace=\"h\"} 1\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, text)
		}
	}
}

// One bad channel in a broadcast fails that channel only: the good ones
// are published.
func TestBroadcastPublishesTheGoodChannels(t *testing.T) {
	h := newHandler(t, "")
	do := func(method, path, body string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
		return rec
	}
	rec := do("POST", "/api/broadcast", `{"channels":["h:one","no good","h:two"],"data":{"text":"hi"}}`)
	var got struct {
		Results []struct {
			Channel string
			Offset  uint64
			Error   *struct{ Code, Message string }
		}
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || rec.Code != 200 || len(got.Results) != 3 {
		t.Fatalf("%d %s (%v)", rec.Code, rec.Body, err)
	}
	if r := got.Results[1]; r.Error == nil || r.Error.Code != "bad_request" || !strings.HasPrefix(r.Error.Message, `channel "no good": `) {
		t.Errorf("bad channel's result %+v", r)
	}
	for _, i := range []int{0, 2} {
		if r := got.Results[i]; r.Error != nil || r.Offset != 1 {
			t.Errorf("result %d: %+v, want published at offset 1", i, r)
		}
		if rec := do("GET", "/api/history?channel="+got.Results[i].Channel, ""); !strings.Contains(rec.Body.String(), `"data":{"text":"hi"}`) {
			t.Errorf("history of %s: %s", got.Results[i].Channel, rec.Body)
		}
	}
	if rec := do("GET", "/api/broadcast", ""); rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "POST" {
		t.Errorf("GET /api/broadcast: %d, Allow %q; want 405, POST", rec.Code, rec.Header().Get("Allow"))
	}
}

// notReady is a memory broker that reports it cannot reach its backend.
type notReady struct{ *memory.Broker }

func (notReady) Ready() error {
	return fmt.Errorf("test: connect to 10.0.0.1:6379: %w: connection refused", broker.ErrUnavailable)
}

// /readyz says why the node is not ready: the broker's own words, or that
// it is shutting down.
func TestReadyzSaysWhy(t *testing.T) {
	t.Parallel()
	hb, err := hub.New(hub.Config{Broker: notReady{memory.New(memory.Config{})}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := hb.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	h := New(Config{Hub: hb})
	get := func() (int, string, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		var body struct {
			Error struct{ Code, Message string }
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("/readyz body %q: %v", rec.Body, err)
		}
		return rec.Code, body.Error.Code, body.Error.Message
	}
	if status, code, msg := get(); status != 503 || code != "unavailable" || msg != "not ready: test: connect to 10.0.0.1:6379: broker: unavailable: connection refused" {
		t.Errorf("/readyz with the broker away: %d %s %q", status, code, msg)
	}
	if err := hb.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if status, code, msg := get(); status != 503 || code != "unavailable" || msg != "not ready: hub: shutting down" {
		t.Errorf("/readyz while shutting down: %d %s %q", status, code, msg)
	}
}

// twoShards is a memory broker that plays a backend of two shards, either
// of which can be down: shard 1 owns the channels whose names start with
// "s1".
type twoShards struct {
	*memory.Broker
	mu   sync.Mutex
	down [2]bool // guarded by mu
}

func (b *twoShards) setDown(i int, down bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.down[i] = down
}

func (b *twoShards) Shards() []broker.Shard {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]broker.Shard, 2)
	for i := range out {
		out[i] = broker.Shard{Name: fmt.Sprint(i), Addr: fmt.Sprintf("10.0.0.%d:6379", i+1)}
		if b.down[i] {
			out[i].Err = fmt.Errorf("test: shard %d: %w: connection refused", i, broker.ErrUnavailable)
		}
	}
	return out
}

func (b *twoShards) ReadyFor(channel string) error {
	i := 0
	if strings.HasPrefix(channel, "s1") {
		i = 1
	}
	return b.Shards()[i].Err
}

func (b *twoShards) Ready() error {
	sh := b.Shards()
	if sh[0].Err != nil && sh[1].Err != nil {
		return fmt.Errorf("test: no shard is ready: %w", errors.Join(sh[0].Err, sh[1].Err))
	}
	return nil
}

// With a sharded broker, /readyz stays 200 while one shard is up, listing
// the shards that are down, and the API refuses only the publishes to a
// down shard's channels; with every shard down it is 503.
func TestReadyzListsUnavailableShards(t *testing.T) {
	t.Parallel()
	b := &twoShards{Broker: memory.New(memory.Config{})}
	hb, err := hub.New(hub.Config{Broker: b, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := hb.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hb.Shutdown(context.Background()) })
	h := New(Config{Hub: hb})
	do := func(method, path, body string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
		return rec
	}
	if rec := do("GET", "/readyz", ""); rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != `{"status":"ready"}` {
		t.Errorf("/readyz with every shard up: %d %s", rec.Code, rec.Body)
	}
	b.setDown(1, true)
	rec := do("GET", "/readyz", "")
	want := `{"status":"ready","unavailable_shards":[{"name":"1","addr":"10.0.0.2:6379","error":"test: shard 1: broker: unavailable: connection refused"}]}`
	if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != want {
		t.Errorf("/readyz with shard 1 down: %d %s\nwant 200 %s", rec.Code, rec.Body, want)
	}
	if rec := do("POST", "/api/publish", `{"channel":"s1-room","data":1}`); rec.Code != 503 || !strings.Contains(rec.Body.String(), `"unavailable"`) {
		t.Errorf("publish to the down shard: %d %s, want 503 unavailable", rec.Code, rec.Body)
	}
	if rec := do("POST", "/api/publish", `{"channel":"s0-room","data":1}`); rec.Code != 200 {
		t.Errorf("publish to the live shard: %d %s, want 200", rec.Code, rec.Body)
	}
	b.setDown(0, true)
	if rec := do("GET", "/readyz", ""); rec.Code != 503 || !strings.Contains(rec.Body.String(), "no shard is ready") {
		t.Errorf("/readyz with every shard down: %d %s, want 503", rec.Code, rec.Body)
	}
}
