package transport

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestOriginPolicy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		allowed []string
		host    string
		origin  string
		want    bool
	}{
		{"no origin", nil, "chat.example.com", "", true},
		{"same origin", nil, "chat.example.com", "https://chat.example.com", true},
		{"same origin other case", nil, "Chat.Example.com", "https://chat.example.COM", true},
		{"localhost", nil, "x", "http://localhost:5173", true},
		{"127.0.0.1", nil, "x", "http://127.0.0.1", true},
		{"127.8.8.8", nil, "x", "http://127.8.8.8:1", true},
		{"ipv6 loopback", nil, "x", "http://[::1]:8080", true},
		{"file page", nil, "x", "null", true},
		{"foreign", nil, "chat.example.com", "https://evil.example", false},
		{"localhost lookalike", nil, "x", "http://localhost.evil.example", false},
		{"garbage", nil, "x", "::::", false},
		{"star", []string{"*"}, "x", "https://anything.example", true},
		{"listed", []string{"https://app.example.com"}, "x", "https://app.example.com", true},
		{"listed other scheme", []string{"https://app.example.com"}, "x", "http://app.example.com", false},
		{"subdomain wildcard", []string{"https://*.example.org"}, "x", "https://a.b.example.org", true},
		{"wildcard needs a subdomain", []string{"https://*.example.org"}, "x", "https://example.org", false},
		{"wildcard suffix trick", []string{"https://*.example.org"}, "x", "https://evilexample.org", false},
		{"listed excludes loopback", []string{"https://app.example.com"}, "x", "http://localhost:3000", false},
		{"listed excludes null", []string{"https://app.example.com"}, "x", "null", false},
		{"listed keeps same origin", []string{"https://app.example.com"}, "chat.example.com", "https://chat.example.com", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest("GET", "/ws", nil)
			r.Host = tc.host
			if tc.origin != "" {
				r.Header.Set("Origin", tc.origin)
			}
			if got := (OriginPolicy{Allowed: tc.allowed}).Check(r); got != tc.want {
				t.Errorf("Check(origin %q, host %q, allowed %q) = %v, want %v", tc.origin, tc.host, tc.allowed, got, tc.want)
			}
		})
	}
}

func TestIsUpgrade(t *testing.T) {
	t.Parallel()
	tests := []struct {
		method, conn, upgrade string
		want                  bool
	}{
		{"GET", "Upgrade", "websocket", true},
		{"GET", "keep-alive, Upgrade", "WebSocket", true},
		{"GET", "keep-alive", "websocket", false},
		{"GET", "Upgrade", "h2c", false},
		{"POST", "Upgrade", "websocket", false},
	}
	for _, tc := range tests {
		r := httptest.NewRequest(tc.method, "/", nil)
		r.Header.Set("Connection", tc.conn)
		r.Header.Set("Upgrade", tc.upgrade)
		if got := IsUpgrade(r); got != tc.want {
			t.Errorf("%s Connection=%q Upgrade=%q: %v, want %v", tc.method, tc.conn, tc.upgrade, got, tc.want)
		}
	}
	if IsUpgrade(httptest.NewRequest(http.MethodGet, "/", nil)) {
		t.Error("a plain GET is not an upgrade")
	}
}

// tcpPair returns two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// TestTryWritev checks the non-blocking writev: everything in order while
// the socket has room, then a short count and no error when it is full,
// never a block.
func TestTryWritev(t *testing.T) {
	client, server := tcpPair(t)
	rc := rawConn(server)
	if rc == nil {
		t.Fatal("a TCP connection has a raw socket")
	}
	frames := [][]byte{[]byte("alpha,"), []byte("beta,"), {}, []byte("gamma")}
	n, err := tryWritev(rc, frames)
	if err != nil || n != 16 {
		t.Fatalf("tryWritev = %d, %v; want 16, nil", n, err)
	}
	got := make([]byte, 16)
	if _, err := io.ReadFull(client, got); err != nil || string(got) != "alpha,beta,gamma" {
		t.Fatalf("read %q, %v", got, err)
	}
	// The peer stops reading: fill the socket until a write comes up short.
	big := bytes.Repeat([]byte("x"), 1<<20)
	done := make(chan int, 1)
	go func() {
		total := 0
		for range 200 {
			n, err := tryWritev(rc, [][]byte{big})
			if err != nil {
				t.Error(err)
				break
			}
			total += n
			if n < len(big) {
				break
			}
		}
		done <- total
	}()
	select {
	case total := <-done:
		if total == 0 || total >= 200<<20 {
			t.Fatalf("wrote %d bytes before the socket was full", total)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("tryWritev blocked on a full socket")
	}
	if rawConn(nopConn{}) != nil {
		t.Error("a connection without a raw socket must give nil")
	}
}

// TestTryWritevManyFrames checks batches longer than one writev's limit.
func TestTryWritevManyFrames(t *testing.T) {
	client, server := tcpPair(t)
	var frames [][]byte
	var want bytes.Buffer
	for i := range 3000 {
		f := []byte{byte('a' + i%26)}
		frames = append(frames, f)
		want.Write(f)
	}
	n, err := tryWritev(rawConn(server), frames)
	if err != nil || n != 3000 {
		t.Fatalf("tryWritev = %d, %v", n, err)
	}
	got := make([]byte, 3000)
	if _, err := io.ReadFull(client, got); err != nil || !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("bytes out of order: %v", err)
	}
}

// nopConn is a net.Conn without a raw socket.
type nopConn struct{ net.Conn }

func TestClientAddr(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.1/32")}
	for _, tc := range []struct {
		remote, xff string
		trusted     []netip.Prefix
		want        string
	}{
		{"192.0.2.1:5000", "", trusted, "192.0.2.1"},
		{"192.0.2.1:5000", "198.51.100.7", trusted, "192.0.2.1"},             // untrusted peer: header ignored
		{"10.1.2.3:5000", "198.51.100.7", trusted, "198.51.100.7"},           // one trusted hop
		{"10.1.2.3:5000", "198.51.100.7, 10.9.9.9", trusted, "198.51.100.7"}, // two trusted hops
		{"10.1.2.3:5000", "6.6.6.6, 198.51.100.7", trusted, "198.51.100.7"},  // a client cannot forge past the last hop
		{"10.1.2.3:5000", "garbage", trusted, "10.1.2.3"},                    // unreadable: stop at the proxy
		{"127.0.0.1:5000", "198.51.100.7", nil, "127.0.0.1"},                 // no trusted proxies at all
		{"[::ffff:10.0.0.1]:5000", "198.51.100.7", trusted, "198.51.100.7"},  // IPv4-mapped peer
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = tc.remote
		if tc.xff != "" {
			r.Header.Set("X-Forwarded-For", tc.xff)
		}
		if got := ClientAddr(r, tc.trusted); got.String() != tc.want {
			t.Errorf("%s with X-Forwarded-For %q: %s, want %s", tc.remote, tc.xff, got, tc.want)
		}
	}
}
