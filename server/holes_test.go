package server_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/internal/wait"
	"github.com/switchboard-rt/switchboard/pusher"
	"github.com/switchboard-rt/switchboard/server"
)

// metric returns the value of one of the node's metrics.
func metric(n *node, name string) float64 {
	for _, m := range n.srv.Metrics() {
		if m.Name == name {
			return m.Value
		}
	}
	panic("no metric " + name)
}

// A read-only namespace once stopped native publishes only: a raw
// connection on the same channel published freely. Its frames must be
// dropped and counted; the HTTP API still publishes.
func TestRawCannotPublishToReadOnly(t *testing.T) {
	n := start(t, server.Config{Hub: hub.Config{Namespaces: map[string]hub.NamespaceOptions{"news": {ReadOnly: true}}}})
	reader, _ := dialNative(t, n)
	if m := reader.request(`{"id":1,"op":"subscribe","channel":"news:headlines"}`); m["ok"] != true {
		t.Fatalf("subscribe: %v", m)
	}
	raw := dial(t, n.ws("/raw/news:headlines"), nil)
	raw.send("from a raw client")
	// The barrier: the API's publish comes after the raw frame was
	// handled, so it is the first message the reader may see.
	wait.For(t, 5*time.Second, func() error {
		if got := metric(n, "switchboard_raw_publish_dropped_total"); got != 1 {
			return fmt.Errorf("raw frames dropped: %v, want 1", got)
		}
		return nil
	})
	if st, body := httpPost(t, n.url("/api/publish"), `{"channel":"news:headlines","data":"from the API"}`); st != 200 {
		t.Fatalf("API publish: %d %s", st, body)
	}
	if m := reader.readJSON(); m["data"] != "from the API" {
		t.Fatalf("the reader got %v, want the API's message first", m)
	}
	if got := raw.read(); got != "from the API" {
		t.Fatalf("the raw client got %q, want the API's message", got)
	}
}

// A native client that goes on sending far past --client-rate once got a
// rate_limited answer per frame forever; it must be closed with 4029, as
// a raw one is.
func TestNativeFlooderIsClosed(t *testing.T) {
	n := start(t, server.Config{Hub: hub.Config{ClientRate: 100}})
	c, _ := dialNative(t, n)
	closed := make(chan websocket.StatusCode, 1)
	go func() {
		for {
			if _, _, err := c.conn.Read(context.Background()); err != nil {
				closed <- websocket.CloseStatus(err)
				return
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := 0; ; i++ {
		select {
		case code := <-closed:
			if code != 4029 {
				t.Fatalf("closed with %d after %d frames, want 4029", code, i)
			}
			t.Logf("closed with 4029 after %d frames", i)
			return
		default:
		}
		if err := c.conn.Write(ctx, websocket.MessageText, []byte(`{"id":1,"op":"ping"}`)); err != nil {
			if code := <-closed; code != 4029 {
				t.Fatalf("closed with %d after %d frames, want 4029", code, i)
			}
			return
		}
		if i > 100000 {
			t.Fatal("a flooder sent 100,000 frames and was not closed")
		}
	}
}

// A native client that slows down when told rate_limited is not closed.
func TestNativeClientThatSlowsDownStays(t *testing.T) {
	n := start(t, server.Config{Hub: hub.Config{ClientRate: 50}})
	c, _ := dialNative(t, n)
	limited := 0
	for i := range 400 {
		m := c.request(fmt.Sprintf(`{"id":%d,"op":"ping"}`, i+1))
		if m["ok"] != true {
			limited++
			time.Sleep(25 * time.Millisecond) // back off, as told
		}
	}
	if limited == 0 {
		t.Fatal("400 requests at full speed were never rate limited")
	}
	if m := c.request(`{"id":999,"op":"ping"}`); m["id"] != 999.0 {
		t.Fatalf("after backing off: %v", m)
	}
}

// Keep-alive HTTP connections that send nothing more, and request bodies
// trickled a byte at a time, were once held forever; each must be closed.
func TestIdleAndSlowHTTPConnectionsAreClosed(t *testing.T) {
	n := start(t, server.Config{HTTP: server.HTTPLimits{IdleTimeout: 300 * time.Millisecond, ReadTimeout: 500 * time.Millisecond}})
	t.Run("idle keep-alive", func(t *testing.T) {
		conn, err := net.Dial("tcp", n.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := br.ReadByte(); err != io.EOF {
			t.Fatalf("an idle keep-alive connection: %v, want the server to close it", err)
		}
	})
	t.Run("trickled body", func(t *testing.T) {
		conn, err := net.Dial("tcp", n.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		body := `{"channel":"slow","data":"` + strings.Repeat("x", 100) + `"}`
		fmt.Fprintf(conn, "POST /api/publish HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", len(body))
		ended := make(chan struct{})
		go func() {
			defer close(ended)
			_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			_, _ = io.Copy(io.Discard, conn)
		}()
		for i := range len(body) {
			select {
			case <-ended:
				return // the server cut it
			case <-time.After(100 * time.Millisecond):
			}
			if _, err := conn.Write([]byte{body[i]}); err != nil {
				return
			}
		}
		t.Fatal("a body trickled over 10 s was read to its end")
	})
}

// Cross-site pages once could publish into a local server with a simple
// form POST (no API key by default). Requests with a disallowed Origin are
// refused; requests without one (curl) and from allowed origins are not.
func TestAPIOriginPolicy(t *testing.T) {
	open := start(t, server.Config{})
	strict := start(t, server.Config{AllowedOrigins: []string{"https://app.example.com"}})
	for _, tc := range []struct {
		name   string
		n      *node
		origin string
		status int
	}{
		{"curl", open, "", 200},
		{"cross site", open, "https://evil.example", 403},
		{"loopback page", open, "http://localhost:3000", 200},
		{"file page", open, "null", 200},
		{"same origin", open, "http://" + open.addr, 200},
		{"file page, origins set", strict, "null", 403},
		{"listed", strict, "https://app.example.com", 200},
		{"unlisted", strict, "https://evil.example", 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A "simple" cross-site request: text/plain needs no CORS
			// preflight, so a browser sends it as it is.
			req, _ := http.NewRequest("POST", tc.n.url("/api/publish"), strings.NewReader(`{"channel":"c","data":1}`))
			req.Header.Set("Content-Type", "text/plain")
			if tc.origin != "" {
				req.Header.Set("Origin", tc.origin)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
		})
	}
	if got := open.srv.Hub().Stats().MessagesPublished; got != 4 {
		t.Fatalf("%d messages published on the open node, want 4 (the refused ones must not publish)", got)
	}
}

// syncBuffer is a log sink safe for the server's goroutines.
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

// A handler panic that net/http recovers is a bug: it is logged at error
// level, not at debug where nobody sees it.
func TestHandlerPanicIsLoggedAsError(t *testing.T) {
	var logs syncBuffer
	n := start(t, server.Config{
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Page:   http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("page bug") }),
	})
	if resp, err := http.Get(n.url("/boom")); err == nil {
		resp.Body.Close()
	}
	wait.For(t, 5*time.Second, func() error {
		if s := logs.String(); !strings.Contains(s, "level=ERROR") || !strings.Contains(s, "page bug") {
			return fmt.Errorf("logs: %q, want an error with the panic", s)
		}
		return nil
	})
}

// A thousand clients in 128 channels each once released their broker
// subscriptions with a goroutine per channel: 128,000 at once, and 91 MB of
// heap kept after a forced GC. The releases are batched now: the goroutine
// count stays flat while they run, and the heap comes back near where it
// was.
func TestMassDisconnectReleasesEverything(t *testing.T) {
	if testing.Short() {
		t.Skip("128,000 subscriptions")
	}
	const clients, perClient = 1000, 128
	n := start(t, server.Config{Hub: hub.Config{UnsubscribeDelay: 200 * time.Millisecond, MaxSubscriptions: perClient, PresenceTTL: 600 * time.Millisecond}})
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before, goroutines := heap(), runtime.NumGoroutine()

	// The clients are dialled here, not with dial, so that nothing keeps
	// their buffers once they are closed: the heap measured is the server's.
	conns := make([]*websocket.Conn, clients)
	defer func() {
		for _, c := range conns {
			if c != nil {
				_ = c.CloseNow()
			}
		}
	}()
	var wg sync.WaitGroup
	var failed atomic.Value
	sem := make(chan struct{}, 50)
	for i := range conns {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, _, err := websocket.Dial(ctx, n.ws("/ws"), nil)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
		wg.Add(1)
		sem <- struct{}{}
		go func(c *websocket.Conn) {
			defer wg.Done()
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var b bytes.Buffer
			for j := range perClient {
				b.Reset()
				fmt.Fprintf(&b, `{"id":%d,"op":"subscribe","channel":"storm:%d.%d"}`, j+1, i, j)
				if err := c.Write(ctx, websocket.MessageText, b.Bytes()); err != nil {
					failed.Store(err)
					return
				}
			}
			for range perClient + 1 { // the welcome and every reply
				if _, _, err := c.Read(ctx); err != nil {
					failed.Store(err)
					return
				}
			}
		}(c)
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		t.Fatal(err)
	}
	if got := n.srv.Hub().Stats().BrokerChannels; got != clients*perClient {
		t.Fatalf("%d broker channels, want %d", got, clients*perClient)
	}
	for i, c := range conns {
		_ = c.CloseNow()
		conns[i] = nil
	}
	peak := 0
	wait.For(t, time.Minute, func() error {
		peak = max(peak, runtime.NumGoroutine())
		if got := n.srv.Hub().Stats().BrokerChannels; got != 0 {
			return fmt.Errorf("%d broker channels still subscribed", got)
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond) // a presence refresh replaces the node's channel counts
	after := heap()
	t.Logf("live heap: %d MB before, %d MB after the release; goroutines: %d before, peak %d while releasing",
		before>>20, after>>20, goroutines, peak)
	if peak > goroutines+clients+100 {
		t.Errorf("%d goroutines while releasing, from %d: a goroutine per channel?", peak, goroutines)
	}
	if after > before+8<<20 {
		t.Errorf("the live heap went from %d MB to %d MB after every client left", before>>20, after>>20)
	}
}

// dialStatus tries a WebSocket upgrade and returns the HTTP status of a
// refusal (0 when it was accepted) and its Retry-After.
func dialStatus(t *testing.T, url string, h http.Header) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: h})
	if err == nil {
		t.Cleanup(func() { _ = conn.CloseNow() })
		return 0, ""
	}
	if resp == nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	return resp.StatusCode, resp.Header.Get("Retry-After")
}

// --max-connections refuses the upgrade over the limit with 503 and
// Retry-After, before any connection exists, and counts it; a freed place
// is taken again.
func TestMaxConnections(t *testing.T) {
	n := start(t, server.Config{MaxConnections: 3})
	var conns []*client
	for range 3 {
		c, _ := dialNative(t, n)
		conns = append(conns, c)
	}
	if st, retry := dialStatus(t, n.ws("/ws"), nil); st != http.StatusServiceUnavailable || retry == "" {
		t.Fatalf("the fourth connection: status %d, Retry-After %q; want 503 with Retry-After", st, retry)
	}
	if got := metric(n, "switchboard_refused_max_connections_total"); got != 1 {
		t.Fatalf("refusals counted: %v, want 1", got)
	}
	_ = conns[0].conn.CloseNow()
	wait.For(t, 5*time.Second, func() error {
		if st, _ := dialStatus(t, n.ws("/raw/x"), nil); st != 0 {
			return fmt.Errorf("status %d after a connection left", st)
		}
		return nil
	})
}

// --max-connections-per-ip counts by client address; X-Forwarded-For names
// the client only when the peer is a trusted proxy.
func TestMaxConnectionsPerIP(t *testing.T) {
	for _, tc := range []struct {
		name    string
		trusted []netip.Prefix
		// whether a header naming another client opens a place
		fromProxy bool
	}{
		{"no trusted proxy", nil, false},
		{"loopback is the proxy", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := start(t, server.Config{MaxConnectionsPerIP: 2, TrustedProxies: tc.trusted})
			for range 2 {
				if st, _ := dialStatus(t, n.ws("/raw/x"), nil); st != 0 {
					t.Fatalf("within the limit: status %d", st)
				}
			}
			if st, _ := dialStatus(t, n.ws("/raw/x"), nil); st != http.StatusServiceUnavailable {
				t.Fatalf("over the limit: status %d, want 503", st)
			}
			other := http.Header{"X-Forwarded-For": {"203.0.113.9"}}
			st, _ := dialStatus(t, n.ws("/raw/x"), other)
			if got := st == 0; got != tc.fromProxy {
				t.Fatalf("another client behind the proxy: status %d", st)
			}
		})
	}
}

// A Pusher app's private, presence and server-to-user channels open only to
// the app's signatures: native and raw clients are refused, even on a node
// whose other channels are public; its public channels are shared.
func TestPusherChannelsClosedToOtherDialects(t *testing.T) {
	n := start(t, server.Config{Pusher: []pusher.App{{ID: "app1", Key: "k", Secret: "s"}}})
	c, _ := dialNative(t, n)
	for i, ch := range []string{"app1:private-x", "app1:presence-x", "app1:private-encrypted-x", "app1:server-to-user-7"} {
		m := c.request(fmt.Sprintf(`{"id":%d,"op":"subscribe","channel":%q}`, i+1, ch))
		if e, _ := m["error"].(map[string]any); e["code"] != "forbidden" {
			t.Errorf("native subscribe to %s: %v, want forbidden", ch, m)
		}
	}
	if m := c.request(`{"id":9,"op":"subscribe","channel":"app1:public-news"}`); m["ok"] != true {
		t.Errorf("native subscribe to the app's public channel: %v", m)
	}
	raw := dial(t, n.ws("/raw/app1:private-x"), nil)
	raw.expectClose(4001)
}
