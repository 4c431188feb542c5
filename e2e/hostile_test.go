package e2e

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	bin "encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// hostileCount is how many of each hostile input the test sends:
// HOSTILE_N (default 300; the figures in the notes use 10000), and
// HOSTILE_CONNS for the connections that hang (default 200; 1000).
func hostileCount(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// rawFrame is a masked client frame.
func rawFrame(op byte, payload []byte) []byte {
	b := []byte{0x80 | op}
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xFFFF:
		b = append(b, 0x80|126)
		b = bin.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 0x80|127)
		b = bin.BigEndian.AppendUint64(b, uint64(n))
	}
	mask := [4]byte{9, 8, 7, 6}
	b = append(b, mask[:]...)
	for i, c := range payload {
		b = append(b, c^mask[i%4])
	}
	return b
}

// deflateBomb is a compressed text frame (RSV1 set) whose payload
// inflates to size zero bytes while it is itself under 4 KB for 3 MiB: a
// server that inflates without a bound holds size bytes for it.
func deflateBomb(t *testing.T, size int) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := flate.NewWriter(&buf, flate.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(make([]byte, size)); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	// RFC 7692: the sync flush's empty block (00 00 ff ff) is left off.
	p := bytes.TrimSuffix(buf.Bytes(), []byte{0, 0, 0xff, 0xff})
	return rawFrame(0x40|0x1, p)
}

// upgrade opens a TCP connection and sends a handshake for path with the
// extra header lines, then frames; it returns the response status and
// the connection, positioned after the response.
func upgrade(addr, path, extra string, frames []byte) (int, *bufio.Reader, net.Conn, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, nil, nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	req := "GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" + extra + "\r\n"
	if _, err := conn.Write(append([]byte(req), frames...)); err != nil {
		conn.Close()
		return 0, nil, nil, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return 0, nil, nil, err
	}
	resp.Body.Close()
	return resp.StatusCode, br, conn, nil
}

// closeCodeFrom reads server frames until the close frame and returns its
// code (0 when the connection ended without one).
func closeCodeFrom(br *bufio.Reader) int {
	for {
		var h [2]byte
		if _, err := io.ReadFull(br, h[:]); err != nil {
			return 0
		}
		n := int(h[1] & 0x7F)
		switch n {
		case 126:
			var e [2]byte
			if _, err := io.ReadFull(br, e[:]); err != nil {
				return 0
			}
			n = int(bin.BigEndian.Uint16(e[:]))
		case 127:
			var e [8]byte
			if _, err := io.ReadFull(br, e[:]); err != nil {
				return 0
			}
			n = int(bin.BigEndian.Uint64(e[:]))
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(br, p); err != nil {
			return 0
		}
		if h[0]&0x0F == 0x8 {
			if len(p) < 2 {
				return 1005
			}
			return int(bin.BigEndian.Uint16(p))
		}
	}
}

// outcomes counts what each kind of hostile input got.
type outcomes struct {
	mu  sync.Mutex
	got map[string]map[string]int // kind -> outcome -> count
}

func (o *outcomes) add(kind, outcome string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.got[kind] == nil {
		o.got[kind] = map[string]int{}
	}
	o.got[kind][outcome]++
}

// TestHostileInput sends every kind of hostile input at once, many times,
// while normal clients connect, subscribe and publish: each bad input must
// get its documented answer, nothing may panic, the normal clients keep
// working, and the server's goroutines and heap come back to where they
// were. The note of the auth issue reports its figures at HOSTILE_N=10000,
// HOSTILE_CONNS=1000.
func TestHostileInput(t *testing.T) {
	if testing.Short() {
		t.Skip("a long attack")
	}
	n, hang := hostileCount("HOSTILE_N", 300), hostileCount("HOSTILE_CONNS", 200)
	in := startInstance(t, "--jwt-hmac-secret", secret, "--max-message-bytes", "4096", "--auth-timeout", "2s", "--compression",
		"--http-header-timeout", "2s", "--allowed-origins", "https://app.example.com", "--subscribe", "authenticated",
		"--debug-addr", "127.0.0.1:0", "--log-level", "info")
	debug := debugAddr(t, in)
	baseG, baseHeap := settled(t, in, debug)
	good := hs(t, nil)
	res := &outcomes{got: map[string]map[string]int{}}

	// Each attack: n attempts over a few workers.
	attack := func(kind string, count, workers int, one func() string) *sync.WaitGroup {
		var wg sync.WaitGroup
		var next atomic.Int64
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= int64(count) {
					res.add(kind, one())
				}
			}()
		}
		return &wg
	}
	closeAfter := func(path, extra string, frames []byte) string {
		st, br, conn, err := upgrade(in.addr, path, extra, frames)
		if err != nil {
			return "error: " + err.Error()
		}
		defer conn.Close()
		if st != http.StatusSwitchingProtocols {
			return "HTTP " + strconv.Itoa(st)
		}
		return "close " + strconv.Itoa(closeCodeFrom(br))
	}
	auth := "Authorization: Bearer " + good + "\r\n"
	bomb := deflateBomb(t, 3<<20)
	var attacks []*sync.WaitGroup
	attacks = append(attacks,
		attack("oversized frame", n, 4, func() string {
			return closeAfter("/ws", auth, rawFrame(0x1, make([]byte, 5000)))
		}),
		attack("deflate bomb", n, 4, func() string {
			return closeAfter("/ws", auth+"Sec-WebSocket-Extensions: permessage-deflate\r\n", bomb)
		}),
		attack("invalid UTF-8", n, 4, func() string {
			return closeAfter("/raw/room", auth, rawFrame(0x1, []byte{'a', 0xff, 0xfe}))
		}),
		attack("bad token", n, 4, func() string {
			return closeAfter("/ws?token=not.a.token", "", nil)
		}),
		attack("disallowed origin", n, 4, func() string {
			return closeAfter("/ws", auth+"Origin: https://evil.example\r\n", nil)
		}),
	)
	// Malformed JSON: n frames over a few authenticated connections, each
	// answered bad_request with id 0.
	attacks = append(attacks, attack("malformed JSON", 4, 4, func() string {
		st, br, conn, err := upgrade(in.addr, "/ws", auth, nil)
		if err != nil || st != http.StatusSwitchingProtocols {
			return fmt.Sprintf("no connection: %d %v", st, err)
		}
		defer conn.Close()
		per := n / 4
		go func() {
			for range per {
				if _, err := conn.Write(rawFrame(0x1, []byte(`{"id":1,"op":`))); err != nil {
					return
				}
			}
		}()
		answered := 0
		for answered < per {
			var h [2]byte
			if _, err := io.ReadFull(br, h[:]); err != nil {
				break
			}
			p := make([]byte, h[1]&0x7F)
			if _, err := io.ReadFull(br, p); err != nil {
				break
			}
			if strings.Contains(string(p), `"id":0,"ok":false,"error":{"code":"bad_request"`) {
				answered++
			}
		}
		res.add("malformed JSON frames answered bad_request", strconv.Itoa(answered))
		return "connection done"
	}))
	// Slowloris: handshakes that never finish their headers.
	attacks = append(attacks, attack("slowloris", hang, 50, func() string {
		conn, err := net.DialTimeout("tcp", in.addr, 5*time.Second)
		if err != nil {
			return "error: " + err.Error()
		}
		defer conn.Close()
		_, _ = conn.Write([]byte("GET /ws HTTP/1.1\r\nHost: x\r\n"))
		start := time.Now()
		for {
			_ = conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			if _, err := conn.Read(make([]byte, 1)); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				return "cut after " + time.Since(start).Round(time.Second).String()
			}
			if time.Since(start) > 20*time.Second {
				return "still open after 20s"
			}
			if _, err := conn.Write([]byte("X-Slow: 1\r\n")); err != nil {
				return "cut after " + time.Since(start).Round(time.Second).String()
			}
		}
	}))
	// Connections that never authenticate.
	attacks = append(attacks, attack("never authenticates", hang, 50, func() string {
		return closeAfter("/ws", "", nil)
	}))

	// Meanwhile, normal clients: handshakes timed, and a subscriber that
	// must get every message a publisher sends.
	stop := make(chan struct{})
	var normal sync.WaitGroup
	var handshakes []time.Duration
	var hsMu sync.Mutex
	normal.Add(1)
	go func() {
		defer normal.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			conn, _, err := websocket.Dial(ctx, wsURL(in.ws("/ws"), good), nil)
			if err == nil {
				_, _, err = conn.Read(ctx) // the welcome
				_ = conn.Close(websocket.StatusNormalClosure, "")
			}
			cancel()
			took := time.Since(start)
			if err != nil {
				t.Errorf("a normal handshake during the attack: %v", err)
				return
			}
			hsMu.Lock()
			handshakes = append(handshakes, took)
			hsMu.Unlock()
		}
	}()
	sub := native(t, wsURL(in.ws("/ws"), good))
	if r, err := sub.request(`{"id":1,"op":"subscribe","channel":"calm"}`, 1, nil); err != nil || r["ok"] != true {
		t.Fatalf("subscribe: %v %v", r, err)
	}
	// The subscriber reads all along, as a live client does (one that
	// stopped reading for the whole attack would miss the server's pings
	// and be closed, rightly).
	got := make(chan float64, 1<<16)
	readCtx, stopReading := context.WithCancel(context.Background())
	defer stopReading()
	go func() {
		defer close(got)
		for {
			m, err := sub.readJSON(readCtx)
			if err != nil {
				return
			}
			if d, ok := m["data"].(float64); ok {
				got <- d
			}
		}
	}()
	pub := native(t, wsURL(in.ws("/ws"), good))
	published := 0
	normal.Add(1)
	go func() {
		defer normal.Done()
		for i := 1; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if r, err := pub.request(fmt.Sprintf(`{"id":%d,"op":"publish","channel":"calm","data":%d}`, i, i), float64(i), nil); err != nil || r["ok"] != true {
				t.Errorf("a normal publish during the attack: %v %v", r, err)
				return
			}
			published = i
		}
	}()
	for _, wg := range attacks {
		wg.Wait()
	}
	close(stop)
	normal.Wait()
	timeout := time.After(30 * time.Second)
	for want := 1; want <= published; want++ {
		select {
		case d, ok := <-got:
			if !ok || d != float64(want) {
				t.Fatalf("the normal subscriber: got %v (open %v), want message %d", d, ok, want)
			}
		case <-timeout:
			t.Fatalf("the normal subscriber: message %d of %d not received", want, published)
		}
	}
	stopReading()

	want := map[string]string{
		"oversized frame":     "close 1009",
		"deflate bomb":        "close 1009",
		"invalid UTF-8":       "close 1007",
		"bad token":           "close 4001",
		"disallowed origin":   "HTTP 403",
		"never authenticates": "close 4001",
	}
	for kind, outcome := range want {
		if got := res.got[kind]; len(got) != 1 || got[outcome] == 0 {
			t.Errorf("%s: %v, want every one %s", kind, got, outcome)
		}
	}
	for outcome := range res.got["slowloris"] {
		if !strings.HasPrefix(outcome, "cut after") {
			t.Errorf("slowloris: %v, want every one cut", res.got["slowloris"])
		}
	}
	if got := res.got["malformed JSON frames answered bad_request"]; len(got) != 1 || got[strconv.Itoa(n/4)] != 4 {
		t.Errorf("malformed JSON: %v, want %d answers on each of 4 connections", got, n/4)
	}
	if p := metric(t, in, "switchboard_read_panics_total"); p != 0 || strings.Contains(in.logs.String(), "panic") {
		t.Errorf("%v reads panicked", p)
	}
	g, heap := settled(t, in, debug)
	hsMu.Lock()
	slices.Sort(handshakes)
	p99 := handshakes[len(handshakes)*99/100]
	hsMu.Unlock()
	t.Logf("outcomes: %v", res.got)
	t.Logf("normal handshakes during the attack: %d, p50 %v, p99 %v; %d messages delivered in order",
		len(handshakes), handshakes[len(handshakes)/2], p99, published)
	t.Logf("goroutines %v -> %v, heap in use after GC %.1f MB -> %.1f MB", baseG, g, baseHeap/(1<<20), heap/(1<<20))
	if g > baseG+10 {
		t.Errorf("goroutines %v after the attack, %v before", g, baseG)
	}
	if heap > baseHeap+16<<20 {
		t.Errorf("heap %.1f MB after the attack, %.1f MB before", heap/(1<<20), baseHeap/(1<<20))
	}
}

// debugAddr returns the address of the instance's profiler listener, from
// its log.
func debugAddr(t *testing.T, in *instance) string {
	t.Helper()
	var addr string
	waitFor(t, 10*time.Second, func() bool {
		for line := range strings.SplitSeq(in.logs.String(), "\n") {
			if strings.Contains(line, "profiler listening") {
				if _, a, ok := strings.Cut(line, "addr="); ok {
					addr = strings.Fields(a)[0]
					return true
				}
			}
		}
		return false
	}, "the profiler's address in the log")
	return addr
}

// settled forces a GC in the instance (through its profiler) and returns
// its goroutines and heap in use once the goroutine count stops falling.
func settled(t *testing.T, in *instance, debug string) (goroutines, heap float64) {
	t.Helper()
	prev := -1.0
	waitFor(t, 30*time.Second, func() bool {
		resp, err := http.Get("http://" + debug + "/debug/pprof/heap?gc=1")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		g := metric(t, in, "switchboard_goroutines")
		done := g == prev
		prev = g
		time.Sleep(200 * time.Millisecond)
		return done
	}, "the goroutine count to settle")
	return metric(t, in, "switchboard_goroutines"), metric(t, in, "switchboard_heap_inuse_bytes")
}
