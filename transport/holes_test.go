package transport_test

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/internal/wait"
)

// handshake is a client's upgrade request for path, to be written by hand
// in one write with the frames that follow it.
func handshake(path string) []byte {
	return []byte("GET " + path + " HTTP/1.1\r\nHost: switchboard.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
}

// hugeContinuation is a 1-byte text fragment followed by a continuation
// header that announces 2^63-1 bytes: a length that overflows a naive
// "received + announced > limit" check.
func hugeContinuation() []byte {
	b := maskedFrame(byte(ws.OpText), false, []byte("x"))
	b = append(b, 0x80, 0x80|127)
	b = binary.BigEndian.AppendUint64(b, 1<<63-1)
	return append(b, 1, 2, 3, 4)
}

// rawDial opens a TCP connection to the node and writes b at once: a
// handshake and the frames after it reach the server together.
func (n *testNode) rawDial(t *testing.T, b []byte) *wsClient {
	t.Helper()
	conn, err := net.Dial("tcp", n.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if _, err := conn.Write(b); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: status %d", resp.StatusCode)
	}
	return &wsClient{t: t, conn: conn, br: br}
}

// closeCodeOf reads until the server's close frame and returns its code.
func (c *wsClient) closeCode() int {
	c.t.Helper()
	for {
		op, p := c.next()
		if op == ws.OpClose {
			if len(p) < 2 {
				return 1005
			}
			return int(binary.BigEndian.Uint16(p))
		}
	}
}

// waitParked waits until the node's poller holds n parked sessions.
func (n *testNode) waitParked(t *testing.T, want int) {
	t.Helper()
	if runtime.GOOS != "linux" {
		return
	}
	wait.For(t, 5*time.Second, func() error {
		if got := n.ws.Parked(); got < want {
			return fmt.Errorf("%d sessions parked, want %d", got, want)
		}
		return nil
	})
}

// A continuation announcing 2^63-1 bytes once crashed the process (the
// length check overflowed and the read loop allocated the announced
// length; on a parked connection the panic was on the poller's goroutine).
// Each dialect, with the bytes arriving with the handshake (inline) or on
// a parked connection, must get close 1009 and leave the node serving.
func TestHugeContinuationClosesWith1009(t *testing.T) {
	n := startNode(t, hub.Config{CloseGrace: 500 * time.Millisecond})
	for _, path := range []string{"/ws", "/raw/holes"} {
		t.Run(path+"/inline", func(t *testing.T) {
			c := n.rawDial(t, append(handshake(path), hugeContinuation()...))
			if code := c.closeCode(); code != 1009 {
				t.Fatalf("close code %d, want 1009", code)
			}
		})
		t.Run(path+"/parked", func(t *testing.T) {
			c := n.dial(t, path)
			if path == "/ws" {
				c.nextText() // welcome
			}
			n.waitParked(t, 1)
			c.write(hugeContinuation())
			if code := c.closeCode(); code != 1009 {
				t.Fatalf("close code %d, want 1009", code)
			}
		})
	}
	if p := n.ws.Panics(); p != 0 {
		t.Fatalf("%d reads panicked", p)
	}
	c := n.dial(t, "/ws")
	if got := c.nextText(); !strings.Contains(got, `"op":"welcome"`) {
		t.Fatalf("after the attacks, a new client got %q", got)
	}
}

// openFiles counts this process's open descriptors.
func openFiles(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd here")
	}
	return len(ents)
}

// Each inline attempt once leaked a socket, a hub client and its
// subscription (net/http recovered the panic and nobody finished the
// session); a thousand of them left the server answering nothing. After a
// thousand attempts, descriptors, goroutines and clients are back where
// they were.
func TestInlineAttemptsLeakNothing(t *testing.T) {
	n := startNode(t, hub.Config{CloseGrace: 200 * time.Millisecond})
	n.dial(t, "/ws").nextText() // warm the poller up
	fds, goroutines, clients := openFiles(t), runtime.NumGoroutine(), n.hub.Stats().Connections
	attack := [][]byte{append(handshake("/ws"), hugeContinuation()...), append(handshake("/raw/leak"), hugeContinuation()...)}
	for i := range 1000 {
		conn, err := net.Dial("tcp", n.addr)
		if err != nil {
			t.Fatalf("attempt %d: %v", i, err)
		}
		_, _ = conn.Write(attack[i%2])
		// A client that hangs up once it got the close frame, as a
		// browser does.
		c := &wsClient{t: t, conn: conn, br: bufio.NewReader(conn)}
		if resp, err := http.ReadResponse(c.br, nil); err != nil {
			t.Fatalf("attempt %d: %v", i, err)
		} else {
			resp.Body.Close()
		}
		if code := c.closeCode(); code != 1009 {
			t.Fatalf("attempt %d: close code %d, want 1009", i, code)
		}
		conn.Close()
	}
	wait.For(t, 10*time.Second, func() error {
		nowFDs, nowG, conns := openFiles(t), runtime.NumGoroutine(), n.hub.Stats().Connections
		if nowFDs > fds+5 || nowG > goroutines+5 || conns != clients {
			return fmt.Errorf("after 1000 attempts: %d descriptors (was %d), %d goroutines (was %d), %d clients (was %d)",
				nowFDs, fds, nowG, goroutines, conns, clients)
		}
		return nil
	})
	if p := n.ws.Panics(); p != 0 {
		t.Fatalf("%d reads panicked", p)
	}
}

// A header announcing a frame of the largest allowed size once made the
// server allocate it before a byte arrived (~70 KB per connection at the
// default limit). A thousand such connections must not cost more than a
// few KB each.
func TestAnnouncedFramesPinNoMemory(t *testing.T) {
	n := startNode(t, hub.Config{})
	const conns = 1000
	header := []byte{0x81, 0x80 | 126, 0xFF, 0xFF, 1, 2, 3, 4, 'x'} // 65,535 bytes announced, one sent
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := ms.HeapAlloc
	clients := make([]*wsClient, conns)
	for i := range clients {
		clients[i] = n.rawDial(t, append(handshake("/raw/announce"), header...))
	}
	wait.For(t, 5*time.Second, func() error {
		if got := n.hub.Stats().Connections; got != conns {
			return fmt.Errorf("%d clients, want %d", got, conns)
		}
		return nil
	})
	time.Sleep(100 * time.Millisecond) // let every reader reach the payload
	runtime.GC()
	runtime.ReadMemStats(&ms)
	grew := int64(ms.HeapAlloc) - int64(before)
	t.Logf("%d connections with a 64 KB frame announced: heap +%d KB (%d bytes each)", conns, grew>>10, grew/conns)
	if perConn := grew / conns; perConn > 16<<10 {
		t.Fatalf("each connection holds %d bytes of heap; the announced frame was allocated up front", perConn)
	}
	for _, c := range clients {
		_ = c.conn.Close()
	}
}
