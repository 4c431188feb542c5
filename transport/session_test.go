package transport_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/switchboard-rt/switchboard/broker/memory"
	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/native"
	"github.com/switchboard-rt/switchboard/raw"
	"github.com/switchboard-rt/switchboard/transport"
)

// testNode is a hub and a transport behind a real HTTP server.
type testNode struct {
	hub  *hub.Hub
	ws   *transport.Server
	srv  *httptest.Server
	addr string
}

func startNode(t *testing.T, cfg hub.Config) *testNode {
	t.Helper()
	return startNodeWith(t, cfg, transport.Config{})
}

// startNodeWith is startNode with the transport configured as tcfg (its
// Hub and Logger are set here).
func startNodeWith(t *testing.T, cfg hub.Config, tcfg transport.Config) *testNode {
	t.Helper()
	cfg.Broker = memory.New(memory.Config{})
	h, err := hub.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	tcfg.Hub, tcfg.Logger = h, slog.New(slog.NewTextHandler(io.Discard, nil))
	s := transport.New(tcfg)
	nat, rw := native.New(), raw.New("", nil)
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) { s.Serve(w, r, nat) })
	mux.HandleFunc("/raw/{channel}", func(w http.ResponseWriter, r *http.Request) { s.Serve(w, r, rw) })
	n := &testNode{hub: h, ws: s, srv: httptest.NewServer(mux)}
	n.addr = strings.TrimPrefix(n.srv.URL, "http://")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := h.Shutdown(ctx); err != nil {
			t.Errorf("hub shutdown: %v", err)
		}
		n.srv.Close()
	})
	return n
}

// wsClient is a hand-driven WebSocket client: it writes frames byte by
// byte if asked, and answers nothing by itself.
type wsClient struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

func (n *testNode) dial(t *testing.T, path string) *wsClient {
	t.Helper()
	conn, br, _, err := ws.Dial(context.Background(), "ws://"+n.addr+path)
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if br == nil {
		br = bufio.NewReader(conn)
	}
	return &wsClient{t: t, conn: conn, br: br}
}

func (c *wsClient) write(b []byte) {
	c.t.Helper()
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// next returns the next frame's opcode and payload, failing after 5 s.
func (c *wsClient) next() (ws.OpCode, []byte) {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	h, err := ws.ReadHeader(c.br)
	if err != nil {
		c.t.Fatalf("read header: %v", err)
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(c.br, p); err != nil {
		c.t.Fatalf("read payload: %v", err)
	}
	return h.OpCode, p
}

// nextText skips pings and returns the next text frame.
func (c *wsClient) nextText() string {
	c.t.Helper()
	for {
		op, p := c.next()
		switch op {
		case ws.OpText:
			return string(p)
		case ws.OpPing, ws.OpPong:
			continue
		default:
			c.t.Fatalf("got opcode %v (%q), want a text frame", op, p)
		}
	}
}

// An idle connection must not hold a goroutine: that is what keeps it at a
// few KB. Hundreds of idle connections leave the goroutine count where it
// was, and each still answers when it speaks again.
func TestIdleConnectionsHoldNoGoroutine(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("idle connections park in epoll on Linux only")
	}
	n := startNode(t, hub.Config{})
	before := runtime.NumGoroutine()
	const conns = 300
	clients := make([]*wsClient, conns)
	for i := range clients {
		clients[i] = n.dial(t, "/ws")
		if got := clients[i].nextText(); !strings.Contains(got, `"op":"welcome"`) {
			t.Fatalf("first frame %q, want the welcome", got)
		}
	}
	// Parking is immediate, but a handler may still be returning.
	var grew int
	for range 100 {
		if grew = runtime.NumGoroutine() - before; grew < 20 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if grew >= 20 {
		t.Fatalf("%d idle connections added %d goroutines, want a handful", conns, grew)
	}
	for i, c := range clients {
		c.write(maskedFrame(byte(ws.OpText), true, []byte(`{"id":1,"op":"ping"}`)))
		if got := c.nextText(); !strings.Contains(got, `"id":1`) {
			t.Fatalf("client %d: reply %q, want id 1", i, got)
		}
	}
}

// A frame may arrive in pieces, and a message in fragments, with pauses
// between them; the session must not park in the middle of either.
func TestFramesSplitAcrossPauses(t *testing.T) {
	n := startNode(t, hub.Config{})
	c := n.dial(t, "/ws")
	c.nextText() // welcome

	whole := maskedFrame(byte(ws.OpText), true, []byte(`{"id":2,"op":"subscribe","channel":"pieces"}`))
	for _, part := range [][]byte{whole[:1], whole[1:4], whole[4:20], whole[20:]} {
		c.write(part)
		time.Sleep(30 * time.Millisecond)
	}
	if got := c.nextText(); !strings.Contains(got, `"id":2`) || strings.Contains(got, "error") {
		t.Fatalf("subscribe reply %q", got)
	}

	msg := []byte(`{"id":3,"op":"publish","channel":"pieces","data":"in three fragments"}`)
	c.write(maskedFrame(byte(ws.OpText), false, msg[:10]))
	time.Sleep(30 * time.Millisecond)
	c.write(maskedFrame(byte(ws.OpContinuation), false, msg[10:30]))
	time.Sleep(30 * time.Millisecond)
	c.write(maskedFrame(byte(ws.OpContinuation), true, msg[30:]))
	var gotReply, gotMessage bool
	for !gotReply || !gotMessage {
		got := c.nextText()
		switch {
		case strings.Contains(got, `"id":3`):
			gotReply = true
		case strings.Contains(got, `"op":"message"`) && strings.Contains(got, "in three fragments"):
			gotMessage = true
		default:
			t.Fatalf("unexpected frame %q", got)
		}
	}
}

// Frames that arrive together are read together (one read takes several
// from the socket into the session's buffer); every one of them is
// handled before the session parks, and a parked session holds no buffer
// of bytes it has not handled: it answers the last frame too, then parks.
func TestPipelinedFramesAreAllHandled(t *testing.T) {
	n := startNode(t, hub.Config{})
	c := n.dial(t, "/ws")
	c.nextText()     // welcome
	const reqs = 300 // about 9 KB: more than one read buffer
	var burst []byte
	for i := 1; i <= reqs; i++ {
		burst = append(burst, maskedFrame(byte(ws.OpText), true, []byte(`{"id":`+strconv.Itoa(i)+`,"op":"ping"}`))...)
	}
	c.write(burst)
	for i := 1; i <= reqs; i++ {
		if got := c.nextText(); !strings.Contains(got, `"id":`+strconv.Itoa(i)+`,`) {
			t.Fatalf("reply %d: %q", i, got)
		}
	}
	n.waitParked(t, 1)
	c.write(maskedFrame(byte(ws.OpText), true, []byte(`{"id":1000,"op":"ping"}`)))
	if got := c.nextText(); !strings.Contains(got, `"id":1000,`) {
		t.Fatalf("reply after parking: %q", got)
	}
}

// A connection that stays silent (it answers no ping) is closed after the
// read timeout, parked or not; one that answers stays open.
func TestSilentConnectionIsClosed(t *testing.T) {
	n := startNode(t, hub.Config{PingInterval: 100 * time.Millisecond})
	silent := n.dial(t, "/raw/quiet")
	alive := n.dial(t, "/raw/quiet")

	done := make(chan error, 1)
	go func() {
		// Answer every ping until the test ends.
		for {
			_ = alive.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			h, err := ws.ReadHeader(alive.br)
			if err != nil {
				done <- err
				return
			}
			p := make([]byte, h.Length)
			if _, err := io.ReadFull(alive.br, p); err != nil {
				done <- err
				return
			}
			if h.OpCode == ws.OpPing {
				if _, err := alive.conn.Write(maskedFrame(byte(ws.OpPong), true, p)); err != nil {
					done <- err
					return
				}
			}
		}
	}()

	// The silent one sees pings, then the end of the connection, within a
	// few read timeouts (200 ms each).
	_ = silent.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, silent.br)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("a silent connection was still open after 5 s")
	}
	select {
	case err := <-done:
		t.Fatalf("the connection that answers pings ended: %v", err)
	default:
	}
	_ = alive.conn.Close()
	<-done
}

// A parked connection the server closes is finished even if the client
// never answers the close frame: the hub's shutdown does not wait for it
// beyond the close grace.
func TestShutdownFinishesParkedConnections(t *testing.T) {
	n := startNode(t, hub.Config{CloseGrace: 200 * time.Millisecond})
	var clients []*wsClient
	for range 20 {
		c := n.dial(t, "/ws")
		c.nextText()
		clients = append(clients, n.dial(t, "/raw/shutdown"), c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.hub.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with parked connections: %v", err)
	}
	// The transport's own goroutine, the poller's, ends with them.
	if err := n.ws.Shutdown(ctx); err != nil {
		t.Fatalf("transport shutdown: %v", err)
	}
	if p := n.ws.Parked(); p != 0 {
		t.Fatalf("%d sessions still parked after shutdown", p)
	}
	for i, c := range clients {
		op, p := c.next()
		if op != ws.OpClose || len(p) < 2 {
			t.Fatalf("client %d: got opcode %v, want a close frame", i, op)
		}
		if code := binary.BigEndian.Uint16(p); code != 1012 && code != 1001 {
			t.Fatalf("client %d: close code %d, want 1012 or 1001", i, code)
		}
	}
}
