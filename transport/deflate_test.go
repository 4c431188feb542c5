package transport

import (
	"bytes"
	"compress/flate"
	"errors"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"

	"github.com/gobwas/ws"

	"github.com/switchboard-rt/switchboard/hub"
)

func TestNegotiateDeflate(t *testing.T) {
	t.Parallel()
	const accepted = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
	tests := []struct {
		name     string
		offers   []string // Sec-WebSocket-Extensions lines
		response string
		comp     hub.Compression
	}{
		{"no offer", nil, "", hub.Uncompressed},
		{"plain offer", []string{"permessage-deflate"}, accepted, hub.Deflate},
		{"browser offer", []string{"permessage-deflate; client_max_window_bits"}, accepted, hub.Deflate},
		{"client window", []string{"permessage-deflate; client_max_window_bits=10"}, accepted, hub.Deflate},
		{"no context takeover asked", []string{"permessage-deflate; server_no_context_takeover; client_no_context_takeover"}, accepted, hub.Deflate},
		{"server window 15", []string{"permessage-deflate; server_max_window_bits=15"}, accepted + "; server_max_window_bits=15", hub.Deflate},
		{"server window 9", []string{"permessage-deflate; server_max_window_bits=9"}, accepted + "; server_max_window_bits=9", hub.DeflateHuffman},
		{"server window 8", []string{"permessage-deflate; server_max_window_bits=8; client_max_window_bits"}, accepted + "; server_max_window_bits=8", hub.DeflateHuffman},
		{"name in capitals", []string{"Permessage-Deflate"}, accepted, hub.Deflate},
		{"quoted value", []string{`permessage-deflate; server_max_window_bits="10"`}, accepted + "; server_max_window_bits=10", hub.DeflateHuffman},
		{"other extension", []string{"x-webkit-deflate-frame"}, "", hub.Uncompressed},
		{"unknown parameter", []string{"permessage-deflate; level=9"}, "", hub.Uncompressed},
		{"window too small", []string{"permessage-deflate; server_max_window_bits=7"}, "", hub.Uncompressed},
		{"window too large", []string{"permessage-deflate; server_max_window_bits=16"}, "", hub.Uncompressed},
		{"window without value", []string{"permessage-deflate; server_max_window_bits"}, "", hub.Uncompressed},
		{"repeated parameter", []string{"permessage-deflate; client_no_context_takeover; client_no_context_takeover"}, "", hub.Uncompressed},
		{"value on a flag", []string{"permessage-deflate; server_no_context_takeover=1"}, "", hub.Uncompressed},
		{"first valid offer wins", []string{"permessage-deflate; server_max_window_bits=7, permessage-deflate; server_max_window_bits=12, permessage-deflate"},
			accepted + "; server_max_window_bits=12", hub.DeflateHuffman},
		{"second header line", []string{"x-foo", "permessage-deflate"}, accepted, hub.Deflate},
		{"malformed header", []string{`permessage-deflate; server_max_window_bits="10`}, "", hub.Uncompressed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{}
			for _, o := range tc.offers {
				h.Add("Sec-WebSocket-Extensions", o)
			}
			response, comp := negotiateDeflate(h)
			if response != tc.response || comp != tc.comp {
				t.Fatalf("negotiateDeflate(%q) = %q, %d; want %q, %d", tc.offers, response, comp, tc.response, tc.comp)
			}
		})
	}
}

// deflateMessage compresses a message as a permessage-deflate client does
// without context takeover: one flushed stream, its last 4 bytes removed.
func deflateMessage(t testing.TB, r io.Reader) []byte {
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

// zeros reads as n zero bytes without holding them.
func zeros(n int64) io.Reader { return io.LimitReader(zeroReader{}, n) }

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestInflate(t *testing.T) {
	t.Parallel()
	text := []byte(strings.Repeat("permessage-deflate, once per message. ", 100))
	tests := []struct {
		name       string
		compressed []byte
		limit      int64
		want       []byte
		err        error
	}{
		{"message", deflateMessage(t, bytes.NewReader(text)), 1 << 20, text, nil},
		{"exactly at the limit", deflateMessage(t, bytes.NewReader(text)), int64(len(text)), text, nil},
		{"one byte over", deflateMessage(t, bytes.NewReader(text)), int64(len(text)) - 1, nil, errTooLarge},
		{"empty message", []byte{0x00}, 100, []byte{}, nil},
		{"empty payload", nil, 100, []byte{}, nil},
		{"final block inside", func() []byte {
			var b bytes.Buffer
			w, _ := flate.NewWriter(&b, flate.BestSpeed)
			_, _ = w.Write(text)
			_ = w.Close()
			return b.Bytes()
		}(), 1 << 20, text, nil},
		{"not deflate", []byte("this is not a deflate stream"), 1 << 20, nil, errBadDeflate},
		{"cut short", deflateMessage(t, bytes.NewReader(text))[:20], 1 << 20, nil, errBadDeflate},
		{"bomb", deflateMessage(t, zeros(32<<20)), 65536, nil, errTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := inflate(tc.compressed, tc.limit)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if err == nil && !bytes.Equal(got, tc.want) {
				t.Fatalf("inflated %d bytes, want the %d compressed", len(got), len(tc.want))
			}
		})
	}
}

// A 32 MiB bomb (some 32 KB compressed) costs what the limit allows, not
// what it inflates to: the size is checked while inflating.
func TestInflateBombAllocatesUpToTheLimit(t *testing.T) {
	bomb := deflateMessage(t, zeros(32<<20))
	const limit = 65536
	// Warm the pool, so that what is counted is the message's own cost.
	if _, err := inflate(bomb, limit); !errors.Is(err, errTooLarge) {
		t.Fatalf("err = %v, want %v", err, errTooLarge)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := inflate(bomb, limit)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, errTooLarge) {
		t.Fatalf("err = %v, want %v", err, errTooLarge)
	}
	// At most twice the limit (the output's growth), and one inflater
	// (some 40 KB) when the pool has none to give: under the race
	// detector sync.Pool drops some of what it is given.
	if got := after.TotalAlloc - before.TotalAlloc; got > 2*limit+64<<10 {
		t.Fatalf("a %d-byte bomb of 32 MiB allocated %d bytes with a %d-byte limit", len(bomb), got, limit)
	}
}

// The assembler inflates a compressed message (RSV1 on its first frame),
// whatever its fragments, and refuses RSV1 where RFC 7692 forbids it.
func TestAssemblerInflates(t *testing.T) {
	t.Parallel()
	text := []byte(strings.Repeat("fragments of one compressed message; ", 50))
	c := deflateMessage(t, bytes.NewReader(text))
	compressedFrame := func(op ws.OpCode, fin bool, payload []byte) []byte {
		f := clientFrame(op, fin, payload)
		f[0] |= 0x40
		return f
	}
	tests := []struct {
		name    string
		deflate bool
		frames  []byte
		op      ws.OpCode
		err     error
	}{
		{"one frame", true, compressedFrame(ws.OpText, true, c), ws.OpText, nil},
		{"binary", true, compressedFrame(ws.OpBinary, true, c), ws.OpBinary, nil},
		{"fragments", true, append(append(compressedFrame(ws.OpText, false, c[:5]), clientFrame(ws.OpContinuation, false, c[5:10])...),
			clientFrame(ws.OpContinuation, true, c[10:])...), ws.OpText, nil},
		{"a ping between fragments", true, append(append(compressedFrame(ws.OpText, false, c[:5]), clientFrame(ws.OpPing, true, nil)...),
			clientFrame(ws.OpContinuation, true, c[5:])...), ws.OpText, nil},
		{"not negotiated", false, compressedFrame(ws.OpText, true, c), 0, errProtocol},
		{"RSV1 on a continuation", true, append(clientFrame(ws.OpText, false, text[:5]), compressedFrame(ws.OpContinuation, true, text[5:])...), 0, errProtocol},
		{"RSV1 on a ping", true, compressedFrame(ws.OpPing, true, nil), 0, errProtocol},
		{"RSV2", true, func() []byte { f := clientFrame(ws.OpText, true, c); f[0] |= 0x20; return f }(), 0, errProtocol},
		{"invalid UTF-8", true, compressedFrame(ws.OpText, true, deflateMessage(t, strings.NewReader(strings.Repeat("x", 100)+"\xff"))), 0, errInvalidUTF},
		{"invalid UTF-8 in binary", true, compressedFrame(ws.OpBinary, true, deflateMessage(t, strings.NewReader("\xff"))), ws.OpBinary, nil},
		{"too large once inflated", true, compressedFrame(ws.OpText, true, deflateMessage(t, zeros(1<<20))), 0, errTooLarge},
		{"corrupt", true, compressedFrame(ws.OpText, true, []byte("garbage garbage")), 0, errBadDeflate},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := assembler{max: 65536, deflate: tc.deflate}
			r := bytes.NewReader(tc.frames)
			for {
				op, payload, err := a.next(r)
				if err != nil {
					if !errors.Is(err, tc.err) {
						t.Fatalf("err = %v, want %v", err, tc.err)
					}
					return
				}
				if op == ws.OpPing || op == 0 {
					continue
				}
				if tc.err != nil {
					t.Fatalf("got a message, want %v", tc.err)
				}
				if op != tc.op {
					t.Fatalf("opcode %v, want %v", op, tc.op)
				}
				if tc.name != "invalid UTF-8 in binary" && !bytes.Equal(payload, text) {
					t.Fatalf("message %q", payload)
				}
				return
			}
		})
	}
}

// FuzzInflate feeds arbitrary compressed payloads to inflate: it never
// panics, never returns more than the limit, and agrees with the standard
// reader on what a valid stream holds.
func FuzzInflate(f *testing.F) {
	f.Add(deflateMessage(f, strings.NewReader("hello, hello, hello")), uint16(100))
	f.Add(deflateMessage(f, zeros(1<<16)), uint16(1000))
	f.Add([]byte{0x00}, uint16(0))
	f.Add([]byte{0x01, 0x00, 0x00, 0xff, 0xff}, uint16(10))
	f.Add([]byte("not deflate"), uint16(10))
	f.Fuzz(func(t *testing.T, compressed []byte, limit uint16) {
		got, err := inflate(compressed, int64(limit))
		if int64(len(got)) > int64(limit) {
			t.Fatalf("inflated %d bytes over a limit of %d", len(got), limit)
		}
		if len(compressed) == 0 {
			return // the empty message, leniently
		}
		r := flate.NewReader(io.MultiReader(bytes.NewReader(compressed), bytes.NewReader(deflateTail)))
		want, werr := io.ReadAll(io.LimitReader(r, int64(limit)+1))
		switch {
		case werr != nil:
			if err == nil {
				t.Fatalf("inflate accepted a stream the standard reader refuses (%v)", werr)
			}
		case len(want) > int(limit):
			if !errors.Is(err, errTooLarge) {
				t.Fatalf("err = %v for a message over the limit", err)
			}
		case err != nil:
			t.Fatalf("inflate refused a valid stream: %v", err)
		case !bytes.Equal(got, want):
			t.Fatal("inflate and the standard reader disagree")
		}
	})
}
