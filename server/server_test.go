package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/server"
	"github.com/switchboard-rt/switchboard/transport"
)

func TestMain(m *testing.M) {
	if testIOURing {
		r, err := transport.NewURing(1)
		if err != nil {
			fmt.Fprintln(os.Stderr, "SWITCHBOARD_TEST_IO_URING=1, but io_uring is unavailable:", err)
			os.Exit(1)
		}
		r.Close()
	}
	goleak.VerifyTestMain(m)
}

// testIOURing, set by SWITCHBOARD_TEST_IO_URING=1, runs every server of
// the tests with hub.Config.IOURing, to show that the io_uring write path
// behaves as the writev one. TestMain fails at once where io_uring is
// unavailable, rather than let the servers fall back to writev.
var testIOURing = os.Getenv("SWITCHBOARD_TEST_IO_URING") == "1"

// node is a server under test, listening on a loopback port.
type node struct {
	srv  *server.Server
	addr string // host:port
	done chan error
	once sync.Once
}

func (n *node) url(path string) string { return "http://" + n.addr + path }
func (n *node) ws(path string) string  { return "ws://" + n.addr + path }

// shutdown stops the node (once) and returns Shutdown's error.
func (n *node) shutdown(timeout time.Duration) error {
	var err error
	n.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		err = n.srv.Shutdown(ctx)
		if serr := <-n.done; serr != nil && err == nil {
			err = serr
		}
	})
	return err
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// start runs a server with cfg on a free loopback port until the test ends.
func start(t testing.TB, cfg server.Config) *node {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	if testIOURing {
		cfg.Hub.IOURing = true
	}
	srv, err := server.New(cfg)
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
	n := &node{srv: srv, addr: ln.Addr().String(), done: make(chan error, 1)}
	go func() { n.done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		if err := n.shutdown(5 * time.Second); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return n
}

// client is a real WebSocket client (coder/websocket, an implementation
// independent of the server's).
type client struct {
	t    testing.TB
	conn *websocket.Conn
}

func dial(t testing.TB, url string, header http.Header) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: header})
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (HTTP %d)", url, err, status)
	}
	conn.SetReadLimit(-1)
	c := &client{t: t, conn: conn}
	t.Cleanup(func() { _ = conn.CloseNow() })
	return c
}

// dialNative connects to /ws and reads the welcome frame.
func dialNative(t testing.TB, n *node) (*client, map[string]any) {
	t.Helper()
	c := dial(t, n.ws("/ws"), nil)
	w := c.readJSON()
	if w["op"] != "welcome" {
		t.Fatalf("first frame %v, want welcome", w)
	}
	return c, w
}

func (c *client) send(s string) {
	c.t.Helper()
	c.sendType(websocket.MessageText, []byte(s))
}

func (c *client) sendType(typ websocket.MessageType, b []byte) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.conn.Write(ctx, typ, b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *client) read() string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	typ, b, err := c.conn.Read(ctx)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	if typ != websocket.MessageText {
		c.t.Fatalf("got a %v frame, want text", typ)
	}
	return string(b)
}

func (c *client) readJSON() map[string]any {
	c.t.Helper()
	s := c.read()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		c.t.Fatalf("frame %q is not a JSON object: %v", s, err)
	}
	return m
}

// request sends a native request and returns its reply.
func (c *client) request(s string) map[string]any {
	c.t.Helper()
	c.send(s)
	return c.readJSON()
}

// expectClose reads until the server closes the connection and checks the
// close code.
func (c *client) expectClose(code websocket.StatusCode) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		_, _, err := c.conn.Read(ctx)
		if err == nil {
			continue
		}
		if got := websocket.CloseStatus(err); got != code {
			c.t.Fatalf("connection ended with %v (status %d), want close %d", err, got, code)
		}
		return
	}
}

func mustJSON(t testing.TB, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return v
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

func TestNativePublishSubscribe(t *testing.T) {
	n := start(t, server.Config{Hub: hub.Config{NodeID: "node-a"}})
	alice, welcome := dialNative(t, n)
	if welcome["node"] != "node-a" || welcome["version"] != 1.0 || welcome["ping_interval_ms"] != 25000.0 {
		t.Errorf("welcome = %v", welcome)
	}
	bob, _ := dialNative(t, n)
	for i, c := range []*client{alice, bob} {
		if r := c.request(`{"id":1,"op":"subscribe","channel":"chat:lobby"}`); r["ok"] != true || r["id"] != 1.0 {
			t.Fatalf("client %d subscribe reply %v", i, r)
		}
	}
	if r := alice.request(`{"id":2,"op":"publish","channel":"chat:lobby","data":{"text":"hi"}}`); r["ok"] != true {
		// The reply and alice's own message may come in either order.
		if r["op"] != "message" {
			t.Fatalf("publish reply %v", r)
		}
	}
	got := bob.readJSON()
	// ts is the publish time, in ms since the epoch.
	if ts, ok := got["ts"].(float64); !ok || math.Abs(ts-float64(time.Now().UnixMilli())) > 60_000 {
		t.Errorf("bob got ts %v, want the publish time", got["ts"])
	}
	delete(got, "ts")
	want := map[string]any{"op": "message", "channel": "chat:lobby", "data": map[string]any{"text": "hi"}}
	if !equalJSON(got, want) {
		t.Errorf("bob got %v, want %v", got, want)
	}
	// Ordering: 50 messages from alice arrive in order at bob.
	for i := range 50 {
		alice.send(fmt.Sprintf(`{"id":%d,"op":"publish","channel":"chat:lobby","data":%d}`, 10+i, i))
	}
	for i := range 50 {
		m := bob.readJSON()
		if m["data"] != float64(i) {
			t.Fatalf("message %d: got %v", i, m)
		}
	}
	// Replies to alice come in request order, interleaved with her own
	// messages.
	next := 2
	for seen := 0; seen < 50; {
		m := alice.readJSON()
		if id, ok := m["id"].(float64); ok {
			if int(id) != next && !(next == 2 && int(id) == 10) {
				t.Fatalf("reply id %v out of order, want %d", id, next)
			}
			if next == 2 {
				next = 10
			}
			if int(id) >= 10 {
				seen++
				next = int(id) + 1
			}
		}
	}
	if r := bob.request(`{"id":9,"op":"unsubscribe","channel":"chat:lobby"}`); r["ok"] != true {
		t.Fatalf("unsubscribe reply %v", r)
	}
	alice.send(`{"id":100,"op":"publish","channel":"chat:lobby","data":"after"}`)
	if r := bob.request(`{"id":10,"op":"ping"}`); r["id"] != 10.0 || r["ok"] != true {
		t.Fatalf("bob got %v after unsubscribing, want only the ping reply", r)
	}
}

func TestNativeErrors(t *testing.T) {
	n := start(t, server.Config{Hub: hub.Config{MaxSubscriptions: 2}})
	c, _ := dialNative(t, n)
	tests := []struct {
		frame, code string
		id          float64
	}{
		{`not json`, "bad_request", 0},
		{`{"op":"ping"}`, "bad_request", 0},
		{`{"id":1,"op":"fly"}`, "bad_request", 1},
		{`{"id":2,"op":"subscribe"}`, "bad_request", 2},
		{`{"id":3,"op":"subscribe","channel":"no spaces"}`, "bad_request", 3},
		{`{"id":4,"op":"publish","channel":"c"}`, "bad_request", 4},
		{`{"id":5,"op":"unsubscribe","channel":"c"}`, "not_found", 5},
		{`{"id":6,"op":"subscribe","channel":"a"}`, "", 6},
		{`{"id":7,"op":"subscribe","channel":"a"}`, "bad_request", 7},
		{`{"id":8,"op":"subscribe","channel":"b"}`, "", 8},
		{`{"id":9,"op":"subscribe","channel":"c"}`, "limit_exceeded", 9},
	}
	for _, tc := range tests {
		r := c.request(tc.frame)
		if r["id"] != tc.id {
			t.Errorf("%s: reply id %v, want %v", tc.frame, r["id"], tc.id)
		}
		if tc.code == "" {
			if r["ok"] != true {
				t.Errorf("%s: %v, want ok", tc.frame, r)
			}
			continue
		}
		e, _ := r["error"].(map[string]any)
		if r["ok"] != false || e == nil || e["code"] != tc.code || e["message"] == "" {
			t.Errorf("%s: %v, want error %s", tc.frame, r, tc.code)
		}
	}
	// A binary frame gets bad_request and the connection stays usable.
	c.sendType(websocket.MessageBinary, []byte(`{"id":20,"op":"ping"}`))
	if r := c.readJSON(); r["id"] != 0.0 || r["ok"] != false {
		t.Errorf("binary frame: %v", r)
	}
	if r := c.request(`{"id":21,"op":"ping"}`); r["ok"] != true {
		t.Errorf("ping after errors: %v", r)
	}
}

func TestRawSeedCompatible(t *testing.T) {
	n := start(t, server.Config{})
	// Two seed-style clients on "/": each sees its own and the other's text.
	a := dial(t, n.ws("/"), nil)
	b := dial(t, n.ws("/"), nil)
	a.send("hello from a")
	for _, c := range []*client{a, b} {
		if got := c.read(); got != "hello from a" {
			t.Errorf("got %q", got)
		}
	}
	// Text that looks like JSON is still passed byte for byte.
	b.send(` {"not":"parsed"} `)
	for _, c := range []*client{a, b} {
		if got := c.read(); got != ` {"not":"parsed"} ` {
			t.Errorf("got %q", got)
		}
	}
}

func TestCrossDialect(t *testing.T) {
	n := start(t, server.Config{RawChannel: "lobby"})
	raw := dial(t, n.ws("/"), nil)
	rawNamed := dial(t, n.ws("/raw/lobby"), nil)
	nat, _ := dialNative(t, n)
	if r := nat.request(`{"id":1,"op":"subscribe","channel":"lobby"}`); r["ok"] != true {
		t.Fatal(r)
	}
	raw.send(`{"a":1}`)
	for _, c := range []*client{raw, rawNamed} {
		if got := c.read(); got != `{"a":1}` {
			t.Errorf("raw got %q", got)
		}
	}
	if m := nat.readJSON(); m["op"] != "message" || m["data"] != `{"a":1}` {
		t.Errorf("native got %v; raw text must arrive as a JSON string", m)
	}
	nat.send(`{"id":2,"op":"publish","channel":"lobby","data":"plain text"}`)
	nat.send(`{"id":3,"op":"publish","channel":"lobby","data":{"text":"obj"}}`)
	for _, c := range []*client{raw, rawNamed} {
		if got := c.read(); got != "plain text" {
			t.Errorf("raw got %q, want the string's text", got)
		}
		if got := c.read(); got != `{"text":"obj"}` {
			t.Errorf("raw got %q, want the JSON text", got)
		}
	}
}

func TestRawBadInput(t *testing.T) {
	n := start(t, server.Config{MaxMessageBytes: 1024})
	tests := []struct {
		name string
		path string
		send func(c *client)
		code websocket.StatusCode
	}{
		{"bad channel", "/raw/bad%20name", func(c *client) {}, 1008},
		{"binary too large", "/", func(c *client) { c.sendType(websocket.MessageBinary, make([]byte, 2000)) }, 1009},
		{"too large", "/", func(c *client) { c.send(strings.Repeat("x", 2000)) }, 1009},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, n.ws(tc.path), nil)
			tc.send(c)
			c.expectClose(tc.code)
		})
	}
	// The server still serves everyone else.
	c := dial(t, n.ws("/"), nil)
	c.send("still here")
	if got := c.read(); got != "still here" {
		t.Errorf("got %q", got)
	}
}

func TestNativeTooLarge(t *testing.T) {
	n := start(t, server.Config{MaxMessageBytes: 1024})
	c, _ := dialNative(t, n)
	c.send(`{"id":1,"op":"publish","channel":"c","data":"` + strings.Repeat("x", 2000) + `"}`)
	c.expectClose(1009)
}

func TestOrigin(t *testing.T) {
	open := start(t, server.Config{})
	strict := start(t, server.Config{AllowedOrigins: []string{"https://app.example.com", "https://*.example.org"}})
	tests := []struct {
		name   string
		n      *node
		origin string
		ok     bool
	}{
		{"no origin", open, "", true},
		{"loopback", open, "http://localhost:3000", true},
		{"loopback ip", open, "http://127.0.0.1:9999", true},
		{"loopback v6", open, "http://[::1]:8080", true},
		{"file page", open, "null", true},
		{"same origin", open, "http://" + open.addr, true},
		{"cross origin", open, "https://evil.example", false},
		{"listed", strict, "https://app.example.com", true},
		{"wildcard", strict, "https://a.example.org", true},
		{"unlisted", strict, "https://other.example.com", false},
		{"loopback not listed", strict, "http://localhost:3000", false},
		{"same origin strict", strict, "http://" + strict.addr, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.origin != "" {
				h.Set("Origin", tc.origin)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			for _, path := range []string{"/ws", "/"} {
				conn, resp, err := websocket.Dial(ctx, tc.n.ws(path), &websocket.DialOptions{HTTPHeader: h})
				if tc.ok {
					if err != nil {
						t.Fatalf("%s: refused: %v", path, err)
					}
					_ = conn.CloseNow()
					continue
				}
				if err == nil {
					_ = conn.CloseNow()
					t.Fatalf("%s: accepted", path)
				}
				if resp == nil || resp.StatusCode != http.StatusForbidden {
					t.Fatalf("%s: %v, want HTTP 403", path, err)
				}
			}
		})
	}
}

// TestSlowConsumer checks that a client that never reads is closed with
// 4008 and counted, while the clients that read get everything.
func TestSlowConsumer(t *testing.T) {
	// The slow client reads only after the whole firehose, seconds after
	// it was closed; its socket is full, so its close frame waits for
	// that read. The grace must outlast the firehose on a slow machine,
	// or the socket is cut first (which is right, but not what this test
	// checks).
	n := start(t, server.Config{Hub: hub.Config{SendQueueBytes: 256 << 10, CloseGrace: time.Minute}})
	slow := dial(t, n.ws("/raw/firehose"), nil)
	fast := dial(t, n.ws("/raw/firehose"), nil)
	pub := dial(t, n.ws("/raw/firehose"), nil) // raw senders get their own messages too
	const total = 3000
	msg := strings.Repeat("x", 8000)
	var fastGot, pubGot atomic.Int64
	var wg sync.WaitGroup
	for _, rc := range []struct {
		c   *client
		got *atomic.Int64
	}{{fast, &fastGot}, {pub, &pubGot}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			for rc.got.Load() < total {
				if _, _, err := rc.c.conn.Read(ctx); err != nil {
					return
				}
				rc.got.Add(1)
			}
		}()
	}
	for i := range total {
		// Stay within the readers' queues: they read, they must not lag.
		for int64(i)-min(fastGot.Load(), pubGot.Load()) > 16 {
			time.Sleep(100 * time.Microsecond)
		}
		pub.send(msg)
	}
	wg.Wait()
	if fastGot.Load() != total || pubGot.Load() != total {
		t.Errorf("the reading clients got %d and %d of %d", fastGot.Load(), pubGot.Load(), total)
	}
	if got := n.srv.Hub().Stats().SlowConsumers; got != 1 {
		t.Errorf("slow consumers = %d, want 1", got)
	}
	// The slow client now reads: what was queued, then close 4008.
	slow.expectClose(4008)
}

func TestHTTPAPI(t *testing.T) {
	n := start(t, server.Config{APIKey: "s3cret", RawChannel: "news"})
	raw := dial(t, n.ws("/"), nil)
	nat, _ := dialNative(t, n)
	nat.request(`{"id":1,"op":"subscribe","channel":"alerts"}`)

	do := func(method, path, key, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, n.url(path), strings.NewReader(body))
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		b, _ := io.ReadAll(resp.Body)
		if len(b) > 0 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatalf("%s %s: body %q: %v", method, path, b, err)
			}
		}
		return resp.StatusCode, m
	}
	errCode := func(m map[string]any) any {
		e, _ := m["error"].(map[string]any)
		return e["code"]
	}
	if st, m := do("POST", "/api/publish", "", `{"channel":"news","data":"nope"}`); st != 401 || errCode(m) != "unauthorized" {
		t.Errorf("no key: %d %v", st, m)
	}
	if st, _ := do("POST", "/api/publish", "wrong", `{"channel":"news","data":"nope"}`); st != 401 {
		t.Errorf("wrong key: %d", st)
	}
	if st, m := do("POST", "/api/publish", "s3cret", `{"channel":"news","data":"flash"}`); st != 200 {
		t.Errorf("publish: %d %v", st, m)
	}
	if got := raw.read(); got != "flash" {
		t.Errorf("raw got %q; unauthorized publishes must not be delivered", got)
	}
	if st, m := do("POST", "/api/broadcast", "s3cret", `{"channels":["news","alerts"],"data":{"level":2}}`); st != 200 || len(m["results"].([]any)) != 2 {
		t.Errorf("broadcast: %d %v", st, m)
	}
	if got := raw.read(); got != `{"level":2}` {
		t.Errorf("raw got %q", got)
	}
	if m := nat.readJSON(); m["channel"] != "alerts" || !equalJSON(m["data"], mustJSON(t, `{"level":2}`)) {
		t.Errorf("native got %v", m)
	}
	for _, tc := range []struct {
		body, code string
		status     int
	}{
		{`nope`, "bad_request", 400},
		{`{"channel":"bad name","data":1}`, "bad_request", 400},
		{`{"channel":"news"}`, "bad_request", 400},
		{`{"channel":"news","data":"` + strings.Repeat("x", 70000) + `"}`, "too_large", 413},
	} {
		if st, m := do("POST", "/api/publish", "s3cret", tc.body); st != tc.status || errCode(m) != tc.code {
			t.Errorf("publish %.40s: %d %v, want %d %s", tc.body, st, m, tc.status, tc.code)
		}
	}
	if st, m := do("GET", "/api/channels", "s3cret", ""); st != 200 || len(m["channels"].([]any)) != 2 {
		t.Errorf("channels: %d %v", st, m)
	}
	if st, _ := do("GET", "/healthz", "", ""); st != 200 {
		t.Errorf("healthz: %d", st)
	}
	if st, _ := do("GET", "/readyz", "", ""); st != 200 {
		t.Errorf("readyz: %d", st)
	}
	resp, err := http.Get(n.url("/metrics"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Contains(b, []byte("switchboard_connections 2")) || !bytes.Contains(b, []byte("switchboard_messages_published_total 3")) {
		t.Errorf("metrics:\n%s", b)
	}
}

// TestShutdownManyClients connects 1,000 clients of both dialects and
// checks that Shutdown ends within its timeout with every client told to
// go: 1012 for native connections, 1001 for raw ones.
func TestShutdownManyClients(t *testing.T) {
	n := start(t, server.Config{})
	const total = 1000
	type result struct {
		native bool
		code   websocket.StatusCode
	}
	results := make(chan result, total)
	var ready sync.WaitGroup
	for i := range total {
		native := i%2 == 0
		path := "/"
		if native {
			path = "/ws"
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		conn, _, err := websocket.Dial(ctx, n.ws(path), nil)
		cancel()
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		ready.Add(1)
		go func() {
			defer conn.CloseNow()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			ready.Done()
			for {
				if _, _, err := conn.Read(ctx); err != nil {
					results <- result{native, websocket.CloseStatus(err)}
					return
				}
			}
		}()
	}
	ready.Wait()
	if got := n.srv.Hub().Stats().Connections; got != total {
		t.Fatalf("%d connections, want %d", got, total)
	}
	const timeout = 3 * time.Second
	began := time.Now()
	if err := n.shutdown(timeout); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if took := time.Since(began); took > timeout {
		t.Errorf("shutdown took %v, over its %v timeout", took, timeout)
	}
	counts := map[string]int{}
	for range total {
		r := <-results
		want := websocket.StatusCode(1001)
		if r.native {
			want = 1012
		}
		if r.code == want {
			counts["ok"]++
		} else {
			counts[fmt.Sprintf("native=%v code=%d", r.native, r.code)]++
		}
	}
	if counts["ok"] != total {
		t.Errorf("close codes: %v", counts)
	}
	if _, _, err := websocket.Dial(context.Background(), n.ws("/ws"), nil); err == nil {
		t.Error("a new connection was accepted after shutdown")
	} else if errors.Is(err, context.DeadlineExceeded) {
		t.Error("dial hung after shutdown")
	}
}

// TestRecoveryAfterReconnect: a native client that reconnects with since
// gets exactly the messages it missed, then live ones; the HTTP history
// agrees.
func TestRecoveryAfterReconnect(t *testing.T) {
	n := start(t, server.Config{Hub: hub.Config{Default: hub.NamespaceOptions{HistorySize: 100}}})
	a, _ := dialNative(t, n)
	r := a.request(`{"id":1,"op":"subscribe","channel":"feed"}`)
	epoch, _ := r["epoch"].(string)
	if r["ok"] != true || epoch == "" || r["offset"] != 0.0 {
		t.Fatalf("subscribe reply %v, want a position at offset 0", r)
	}
	for i := 1; i <= 3; i++ {
		code, body := httpPost(t, n.url("/api/publish"), fmt.Sprintf(`{"channel":"feed","data":%d}`, i))
		if code != 200 || !strings.Contains(body, fmt.Sprintf(`"offset":%d`, i)) {
			t.Fatalf("publish: %d %s", code, body)
		}
	}
	for i := 1; i <= 3; i++ {
		if m := a.readJSON(); m["data"] != float64(i) || m["offset"] != float64(i) || m["epoch"] != epoch {
			t.Fatalf("message %v", m)
		}
	}
	_ = a.conn.CloseNow()
	for i := 4; i <= 6; i++ {
		httpPost(t, n.url("/api/publish"), fmt.Sprintf(`{"channel":"feed","data":%d}`, i))
	}
	b, _ := dialNative(t, n)
	r = b.request(fmt.Sprintf(`{"id":1,"op":"subscribe","channel":"feed","since":{"epoch":%q,"offset":3}}`, epoch))
	if r["recovered"] != true || r["offset"] != 6.0 {
		t.Fatalf("recovery reply %v", r)
	}
	httpPost(t, n.url("/api/publish"), `{"channel":"feed","data":7}`)
	for i := 4; i <= 7; i++ {
		if m := b.readJSON(); m["data"] != float64(i) || m["offset"] != float64(i) {
			t.Fatalf("after recovery got %v, want %d", m, i)
		}
	}
	resp, err := http.Get(n.url("/api/history?channel=feed&limit=2"))
	if err != nil {
		t.Fatal(err)
	}
	var h struct {
		Epoch    string
		Offset   uint64
		Messages []struct {
			Offset uint64
			Data   int
		}
	}
	err = json.NewDecoder(resp.Body).Decode(&h)
	resp.Body.Close()
	if err != nil || h.Epoch != epoch || h.Offset != 7 || len(h.Messages) != 2 || h.Messages[0].Data != 6 {
		t.Errorf("history: %+v %v", h, err)
	}
}

func httpPost(t testing.TB, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestRawRateLimit(t *testing.T) {
	n := start(t, server.Config{Hub: hub.Config{ClientRate: 1}})
	c := dial(t, n.ws("/raw/flood"), nil)
	for range 5 {
		c.send("x")
	}
	c.expectClose(4029)
}

// TestIdempotentPublish: a publish retried with the same idempotency key is
// delivered once and answered with the first publish's position.
func TestIdempotentPublish(t *testing.T) {
	n := start(t, server.Config{Hub: hub.Config{Default: hub.NamespaceOptions{HistorySize: 10}}})
	c, _ := dialNative(t, n)
	c.request(`{"id":1,"op":"subscribe","channel":"once"}`)
	var bodies []string
	for range 2 {
		code, body := httpPost(t, n.url("/api/publish"), `{"channel":"once","data":"x","idempotency_key":"order-17"}`)
		if code != 200 {
			t.Fatalf("publish: %d %s", code, body)
		}
		bodies = append(bodies, body)
	}
	if bodies[0] != bodies[1] || !strings.Contains(bodies[0], `"offset":1`) {
		t.Errorf("answers %q, want the same position twice", bodies)
	}
	c.send(`{"id":2,"op":"publish","channel":"once","data":"y","idempotency_key":"order-18"}`)
	// Until both y's reply and y itself arrived, x must come exactly once.
	var r map[string]any
	xs, sawY := 0, false
	for r == nil || !sawY {
		m := c.readJSON()
		switch {
		case m["id"] == 2.0:
			r = m
		case m["data"] == "x":
			xs++
		case m["data"] == "y":
			sawY = true
		}
	}
	if xs != 1 {
		t.Errorf("x delivered %d times, want once", xs)
	}
	if r["offset"] != 2.0 {
		t.Errorf("next publish reply %v, want offset 2", r)
	}
}

// TestWriteDelayDeliversEverything runs the write delay over real sockets:
// many subscribers, a fast burst of publishes, and every subscriber gets
// every message once, in order, in fewer writes than frames; a shutdown in
// the middle of delayed writes still closes everyone at once.
func TestWriteDelayDeliversEverything(t *testing.T) {
	n := start(t, server.Config{Hub: hub.Config{WriteDelay: 30 * time.Millisecond}})
	const subs, msgs = 50, 40
	clients := make([]*client, subs)
	for i := range clients {
		c, _ := dialNative(t, n)
		if r := c.request(`{"id":1,"op":"subscribe","channel":"burst"}`); r["ok"] != true {
			t.Fatalf("subscribe: %v", r)
		}
		clients[i] = c
	}
	pub, _ := dialNative(t, n)
	for i := range msgs {
		pub.send(fmt.Sprintf(`{"id":%d,"op":"publish","channel":"burst","data":%d}`, i+2, i))
	}
	for i, c := range clients {
		for want := range msgs {
			m := c.readJSON()
			if m["op"] != "message" || m["data"] != float64(want) {
				t.Fatalf("subscriber %d: got %v, want message %d", i, m, want)
			}
		}
	}
	st := n.srv.Hub().Stats()
	if frames, writes := st.FramesWritten, st.Writes; writes*2 > frames {
		t.Errorf("%d frames took %d writes: the delay did not batch", frames, writes)
	}
	// Queue one more message everywhere and shut down within the delay:
	// every subscriber still gets it, then the close.
	codes := make(chan websocket.StatusCode, subs)
	for _, c := range clients {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			got := false
			for {
				_, b, err := c.conn.Read(ctx)
				if err != nil {
					if !got {
						codes <- -1
						return
					}
					codes <- websocket.CloseStatus(err)
					return
				}
				got = got || bytes.Contains(b, []byte(`"last"`))
			}
		}()
	}
	pub.send(`{"id":100,"op":"publish","channel":"burst","data":"last"}`)
	for {
		if r := pub.readJSON(); r["id"] == float64(100) {
			break
		}
	}
	// The publish is accepted: every subscriber has it queued. The
	// publisher reads on, to answer the server's close.
	go func() {
		for {
			if _, _, err := pub.conn.Read(context.Background()); err != nil {
				return
			}
		}
	}()
	if err := n.shutdown(3 * time.Second); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	for range subs {
		if code := <-codes; code != 1012 {
			t.Fatalf("a subscriber ended with %d, want the last message then close 1012", code)
		}
	}
}
