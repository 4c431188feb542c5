package transport_test

import (
	"bufio"
	"bytes"
	"compress/flate"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/transport"
)

// dialOffering opens a connection to path with a handshake written by
// hand, offering the given Sec-WebSocket-Extensions (none when empty), and
// returns the client and the extensions the server answered, as it wrote
// them.
func (n *testNode) dialOffering(t *testing.T, path, offer string) (*wsClient, string) {
	t.Helper()
	conn, err := net.Dial("tcp", n.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	req := "GET " + path + " HTTP/1.1\r\nHost: switchboard.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
	if offer != "" {
		req += "Sec-WebSocket-Extensions: " + offer + "\r\n"
	}
	if _, err := conn.Write([]byte(req + "\r\n")); err != nil {
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
	return &wsClient{t: t, conn: conn, br: br}, strings.Join(resp.Header.Values("Sec-WebSocket-Extensions"), ", ")
}

// compress deflates a message as a permessage-deflate client does without
// context takeover.
func compress(t testing.TB, r io.Reader) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := flate.NewWriter(&buf, flate.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(w, r); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{0, 0, 0xff, 0xff})
}

// compressedFrames cuts a compressed message into n masked frames, RSV1 on
// the first.
func compressedFrames(op ws.OpCode, payload []byte, n int) []byte {
	var out []byte
	size := (len(payload) + n - 1) / n
	for i := range n {
		part := payload[min(i*size, len(payload)):min((i+1)*size, len(payload))]
		fop := byte(ws.OpContinuation)
		if i == 0 {
			fop = byte(op)
		}
		f := maskedFrame(fop, i == n-1, part)
		if i == 0 {
			f[0] |= 0x40
		}
		out = append(out, f...)
	}
	return out
}

// nextMessage returns the next data frame (skipping pings), inflated when
// its RSV1 is set, and whether it was.
func (c *wsClient) nextMessage() (op ws.OpCode, payload []byte, compressed bool) {
	c.t.Helper()
	for {
		_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		h, err := ws.ReadHeader(c.br)
		if err != nil {
			c.t.Fatalf("read header: %v", err)
		}
		p := make([]byte, h.Length)
		if _, err := io.ReadFull(c.br, p); err != nil {
			c.t.Fatalf("read payload: %v", err)
		}
		if h.OpCode == ws.OpPing || h.OpCode == ws.OpPong {
			continue
		}
		if !h.Fin {
			c.t.Fatal("the server fragmented a message")
		}
		if h.Rsv == 0 {
			return h.OpCode, p, false
		}
		if h.Rsv != ws.Rsv(true, false, false) || h.OpCode.IsControl() {
			c.t.Fatalf("frame %v with RSV bits %03b", h.OpCode, h.Rsv)
		}
		r := flate.NewReader(io.MultiReader(bytes.NewReader(p), strings.NewReader("\x00\x00\xff\xff\x01\x00\x00\xff\xff")))
		out, err := io.ReadAll(r)
		if err != nil {
			c.t.Fatalf("inflate the server's frame: %v", err)
		}
		return h.OpCode, out, true
	}
}

// The upgrade accepts permessage-deflate when the node has compression on
// and the client offers it, always without context takeover; otherwise the
// answer names no extension.
func TestCompressionNegotiation(t *testing.T) {
	on := startNodeWith(t, hub.Config{}, transport.Config{Compression: true})
	off := startNode(t, hub.Config{})
	const accepted = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
	for _, tc := range []struct {
		name   string
		node   *testNode
		offer  string
		answer string
	}{
		{"browser offer", on, "permessage-deflate; client_max_window_bits", accepted},
		{"small server window", on, "permessage-deflate; server_max_window_bits=9", accepted + "; server_max_window_bits=9"},
		{"no offer", on, "", ""},
		{"invalid offer", on, "permessage-deflate; colour=blue", ""},
		{"compression off", off, "permessage-deflate; client_max_window_bits", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, answer := tc.node.dialOffering(t, "/raw/negotiation", tc.offer)
			if answer != tc.answer {
				t.Fatalf("Sec-WebSocket-Extensions %q, want %q", answer, tc.answer)
			}
		})
	}
}

// A compressed message, in one frame or in fragments, reaches the channel
// as it was before compression; subscribers that negotiated deflate get it
// compressed, the others as it is.
func TestCompressedRoundTrip(t *testing.T) {
	n := startNodeWith(t, hub.Config{}, transport.Config{Compression: true})
	deflating, _ := n.dialOffering(t, "/raw/round", "permessage-deflate")
	huffman, _ := n.dialOffering(t, "/raw/round", "permessage-deflate; server_max_window_bits=8")
	plain := n.dial(t, "/raw/round")
	text := []byte(strings.Repeat("Über alles: the same words, again and again. ", 40))
	binary := bytes.Repeat([]byte{0, 1, 2, 3, 0xff, 0xfe}, 500)
	for _, tc := range []struct {
		name      string
		op        ws.OpCode
		payload   []byte
		fragments int
	}{
		{"text", ws.OpText, text, 1},
		{"text in fragments", ws.OpText, text, 7},
		{"binary", ws.OpBinary, binary, 1},
		{"binary in fragments", ws.OpBinary, binary, 3},
		{"short", ws.OpText, []byte("hi"), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			deflating.write(compressedFrames(tc.op, compress(t, bytes.NewReader(tc.payload)), tc.fragments))
			for name, c := range map[string]*wsClient{"deflate": deflating, "huffman only": huffman, "plain": plain} {
				op, got, compressed := c.nextMessage()
				if op != tc.op || !bytes.Equal(got, tc.payload) {
					t.Fatalf("%s subscriber got %v %.60q, want %v %.60q", name, op, got, tc.op, tc.payload)
				}
				if want := name != "plain" && len(tc.payload) > 100; compressed != want {
					t.Fatalf("%s subscriber: compressed %v, want %v", name, compressed, want)
				}
			}
		})
	}
	// An uncompressed message on a connection that negotiated deflate is
	// still a message.
	deflating.write(maskedFrame(byte(ws.OpText), true, []byte("not compressed")))
	if _, got, _ := plain.nextMessage(); string(got) != "not compressed" {
		t.Fatalf("got %q", got)
	}
}

// RSV1 means a compressed message only where permessage-deflate was
// negotiated, and only on a message's first frame; a compressed message
// that is not deflate, or whose text is not UTF-8, fails the connection.
func TestCompressedFramesRefused(t *testing.T) {
	on := startNodeWith(t, hub.Config{CloseGrace: time.Minute}, transport.Config{Compression: true})
	off := startNode(t, hub.Config{CloseGrace: time.Minute})
	good := compress(t, strings.NewReader(strings.Repeat("abc", 100)))
	withRSV1 := func(f []byte) []byte { f[0] |= 0x40; return f }
	for _, tc := range []struct {
		name   string
		node   *testNode
		offer  string
		frames []byte
		code   int
	}{
		{"compression off", off, "permessage-deflate", compressedFrames(ws.OpText, good, 1), 1002},
		{"not offered", on, "", compressedFrames(ws.OpText, good, 1), 1002},
		{"RSV1 on a continuation", on, "permessage-deflate",
			append(maskedFrame(byte(ws.OpText), false, []byte("ab")), withRSV1(maskedFrame(byte(ws.OpContinuation), true, good))...), 1002},
		{"RSV1 on a ping", on, "permessage-deflate", withRSV1(maskedFrame(byte(ws.OpPing), true, nil)), 1002},
		{"not deflate", on, "permessage-deflate", compressedFrames(ws.OpBinary, []byte("not a deflate stream at all"), 1), 1007},
		{"text not UTF-8", on, "permessage-deflate", compressedFrames(ws.OpText, compress(t, strings.NewReader("ab\xffcd")), 2), 1007},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, _ := tc.node.dialOffering(t, "/raw/refused", tc.offer)
			c.write(tc.frames)
			if code := c.closeCode(); code != tc.code {
				t.Fatalf("close code %d, want %d", code, tc.code)
			}
		})
	}
}

// A compression bomb (32 MiB of zeros in some 32 KB) closes with 1009, in
// one frame or in fragments, and the server never holds what it would
// inflate to: it stops at the message limit (64 KiB by default).
func TestCompressionBombClosesWith1009(t *testing.T) {
	n := startNodeWith(t, hub.Config{CloseGrace: time.Minute}, transport.Config{Compression: true})
	bomb := compress(t, io.LimitReader(zeroReader{}, 32<<20))
	for _, fragments := range []int{1, 16} {
		c, _ := n.dialOffering(t, "/raw/bomb", "permessage-deflate")
		frames := compressedFrames(ws.OpBinary, bomb, fragments)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		c.write(frames)
		code := c.closeCode()
		runtime.ReadMemStats(&after)
		if code != 1009 {
			t.Fatalf("%d fragments: close code %d, want 1009", fragments, code)
		}
		// Everything the process allocated meanwhile, the test's client
		// included: the compressed message (at most twice its 32 KB as
		// it arrives), the inflated one up to the limit, an inflater.
		alloc := after.TotalAlloc - before.TotalAlloc
		t.Logf("32 MiB bomb, %d bytes compressed, %d fragments: %d bytes allocated", len(bomb), fragments, alloc)
		if alloc > 1<<20 {
			t.Fatalf("%d fragments: the bomb cost %d bytes of allocations, want under 1 MiB", fragments, alloc)
		}
	}
}

// zeroReader reads zeros, endlessly.
type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
