package transport_test

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/broker/memory"
	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/internal/wait"
	"github.com/switchboard-rt/switchboard/native"
	"github.com/switchboard-rt/switchboard/raw"
	"github.com/switchboard-rt/switchboard/transport"
)

// maskedFrame encodes a client frame (masked, as RFC 6455 requires).
func maskedFrame(op byte, fin bool, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	b := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xFFFF:
		b = append(b, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	mask := [4]byte{1, 2, 3, 4}
	b = append(b, mask[:]...)
	for i, c := range payload {
		b = append(b, c^mask[i%4])
	}
	return b
}

// fuzzNode is the hub and transport the fuzz targets feed; they share one
// for the whole run.
func fuzzNode(f *testing.F) (*hub.Hub, *transport.Server) {
	b := memory.New(memory.Config{})
	h, err := hub.New(hub.Config{Broker: b, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), CloseGrace: 10 * time.Millisecond})
	if err != nil {
		f.Fatal(err)
	}
	if err := h.Start(context.Background()); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = h.Shutdown(context.Background()) })
	return h, transport.New(transport.Config{Hub: h, MaxMessageBytes: fuzzMaxMessage, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

// The dialects the fuzz targets' connections speak.
var (
	nativeDialect = native.New()
	rawDialect    = raw.New("", slog.New(slog.NewTextHandler(io.Discard, nil)))
)

// fuzzMaxMessage is the message limit of the fuzzed transport: small, so
// that inputs reach it.
const fuzzMaxMessage = 256

// feedReadLoop sends input to a fresh connection of the given dialect
// (that negotiated permessage-deflate when deflate is set), as a hostile
// client would after the handshake, and waits for the server to finish the
// connection once the client hangs up. Nothing may panic (also not a panic
// the session recovers) and nothing may hang.
func feedReadLoop(t *testing.T, h *hub.Hub, s *transport.Server, input []byte, isNative, deflate bool) {
	var d hub.Dialect = rawDialect
	if isNative {
		d = nativeDialect
	}
	c, err := h.NewClient(d, hub.Identity{})
	if err != nil {
		t.Fatal(err)
	}
	if !isNative {
		// What the raw dialect's Accept does for /raw/fuzz.
		c.Data = "fuzz"
		if err := c.Subscribe(context.Background(), "fuzz", hub.SubscribeOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	panics := s.Panics()
	// A real socket, so that the session parks between messages as it
	// does in production.
	client, server := transport.TCPPair(t)
	go func() {
		_, _ = client.Write(input)
		// Drain what the server writes, then hang up.
		_ = client.SetReadDeadline(time.Now().Add(5 * time.Millisecond))
		_, _ = io.Copy(io.Discard, client)
		client.Close()
	}()
	if deflate {
		s.ServeConnDeflate(c, server)
	} else {
		s.ServeConn(c, server)
	}
	wait.For(t, 5*time.Second, func() error {
		if h.Stats().Connections != 0 {
			return errors.New("the connection was not finished after its client hung up")
		}
		return nil
	})
	if s.Panics() != panics {
		t.Fatal("reading the connection panicked")
	}
}

// FuzzReadLoop feeds arbitrary bytes to a connection's read loop.
func FuzzReadLoop(f *testing.F) {
	f.Add(maskedFrame(0x1, true, []byte(`{"id":1,"op":"ping"}`)), true)
	f.Add(maskedFrame(0x1, true, []byte(`{"id":1,"op":"subscribe","channel":"a"}`)), true)
	f.Add(append(maskedFrame(0x1, false, []byte(`{"id":1,`)), maskedFrame(0x0, true, []byte(`"op":"ping"}`))...), true)
	f.Add(maskedFrame(0x2, true, []byte{0, 1, 2}), false)
	f.Add(maskedFrame(0x9, true, []byte("ping")), true)
	f.Add(maskedFrame(0x8, true, []byte{0x03, 0xe8}), false)
	f.Add(maskedFrame(0x1, true, []byte{0xff, 0xfe}), false)
	f.Add([]byte{0x81, 0x05, 'h', 'e', 'l', 'l', 'o'}, true) // unmasked
	f.Add(maskedFrame(0x1, true, make([]byte, 300)), false)
	h, s := fuzzNode(f)
	f.Fuzz(func(t *testing.T, input []byte, native bool) {
		feedReadLoop(t, h, s, input, native, false)
	})
}

// FuzzFrameSequence reads its input as a program of frames (frameProgram)
// rather than as bytes, so that the fuzzer explores what matters to the
// read loop: fragment sequences, opcodes, header encodings and extreme
// announced lengths, with payloads that may stop short of them, on
// connections with and without permessage-deflate (compressed payloads,
// RSV1 where it is allowed and where it is not).
func FuzzFrameSequence(f *testing.F) {
	f.Add([]byte{0x11, 0x05, 0x00}, true, false)                                      // one text frame
	f.Add([]byte{0x01, 0x03, 0x00, 0x10, 0x04, 0x00}, true, false)                    // two fragments
	f.Add([]byte{0x01, 0x01, 0x00, 0x00, 0x02, 0x00, 0x10, 0x01, 0x00}, false, false) // three
	f.Add([]byte{0x12, 0x45, 0x00, 0x19, 0x02, 0x00}, false, false)                   // binary, then ping
	f.Add([]byte{0x18, 0x02, 0x01}, true, false)                                      // close
	f.Add([]byte{0xd1, 0x3f, 0x61}, false, true)                                      // one compressed text frame
	f.Add([]byte{0xc2, 0x7f, 0x00, 0x90, 0x30, 0x00}, false, true)                    // a compressed binary message in two fragments
	f.Add([]byte{0xd1, 0xbf, 0x00}, true, true)                                       // a compressed frame that announces 2^63-1 bytes
	h, s := fuzzNode(f)
	f.Fuzz(func(t *testing.T, program []byte, native, deflate bool) {
		feedReadLoop(t, h, s, frameProgram(program), native, deflate)
	})
}

// announced are the extreme lengths a frame program may announce: the
// largest a header can carry, powers of two around the int sizes, and the
// fuzzed transport's limit and its neighbours.
var announced = []uint64{1<<63 - 1, 1 << 62, 1<<32 + 1, 1<<31 - 1, 1 << 16, fuzzMaxMessage + 1, fuzzMaxMessage, fuzzMaxMessage - 1}

// frameProgram builds client frames from a program of 3-byte steps
// [a, b, c]:
//
//   - a: the opcode (low four bits), FIN (0x10), unmasked (0x20), RSV1
//     (0x40), deflated (0x80: the payload below is compressed as
//     permessage-deflate sends it, and the length is the compressed
//     payload's, except in mode 2);
//   - b: the length mode (top two bits) and a length: 0, the low six bits
//     in the 7-bit field; 1, the low six bits and c as a 16-bit length; 2,
//     announced[c%len] in the 64-bit field; 3, the low six bits, in a
//     64-bit field although they would fit in seven;
//   - c: the payload's first byte (0xFF makes it invalid UTF-8), and for
//     modes 1 and 2 part of the length.
//
// The payload sent is the announced length, but never more than 1,000
// bytes: a frame may announce far more than the program sends.
func frameProgram(program []byte) []byte {
	var out []byte
	for len(program) >= 3 {
		a, b, c := program[0], program[1], program[2]
		program = program[3:]
		var length uint64
		mode := b >> 6
		switch mode {
		case 0, 3:
			length = uint64(b & 0x3F)
		case 1:
			length = uint64(b&0x3F)<<8 | uint64(c)
		case 2:
			length = announced[int(c)%len(announced)]
		}
		payload := make([]byte, min(length, 1000))
		for i := range payload {
			payload[i] = byte('a' + i%26)
			if i == 0 {
				payload[i] = c
			}
		}
		if a&0x80 != 0 {
			payload = deflated(payload)
			if mode != 2 {
				length = uint64(len(payload)) // else announce what mode 2 says
			}
			payload = payload[:min(uint64(len(payload)), length)]
		}
		b0 := a & 0x0F
		if a&0x10 != 0 {
			b0 |= 0x80
		}
		if a&0x40 != 0 {
			b0 |= 0x40
		}
		out = append(out, b0)
		masked := a&0x20 == 0
		var b1 byte
		if masked {
			b1 = 0x80
		}
		switch {
		case mode == 3 || length > 0xFFFF:
			out = append(out, b1|127)
			out = binary.BigEndian.AppendUint64(out, length)
		case length >= 126:
			out = append(out, b1|126)
			out = binary.BigEndian.AppendUint16(out, uint16(length))
		default:
			out = append(out, b1|byte(length))
		}
		mask := [4]byte{0x11, 0x22, 0x33, 0x44}
		if masked {
			out = append(out, mask[:]...)
		}
		for i, p := range payload {
			if masked {
				p ^= mask[i%4]
			}
			out = append(out, p)
		}
	}
	return out
}

// deflated compresses p as a permessage-deflate client does.
func deflated(p []byte) []byte {
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, flate.BestSpeed)
	_, _ = w.Write(p)
	_ = w.Flush()
	return bytes.TrimSuffix(buf.Bytes(), []byte{0, 0, 0xff, 0xff})
}
