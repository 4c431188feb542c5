package transport

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/broker/memory"
	"github.com/switchboard-rt/switchboard/hub"
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

// FuzzReadLoop feeds arbitrary bytes to a connection's read loop, as a
// hostile client would after the handshake: nothing may panic or hang, and
// the loop must end when the input does.
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

	b := memory.New(memory.Config{})
	h, err := hub.New(hub.Config{Broker: b, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), CloseGrace: 10 * time.Millisecond})
	if err != nil {
		f.Fatal(err)
	}
	if err := h.Start(context.Background()); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = h.Shutdown(context.Background()) })
	s := New(Config{Hub: h, MaxMessageBytes: 256, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})

	f.Fuzz(func(t *testing.T, input []byte, native bool) {
		d := hub.Raw
		if native {
			d = hub.Native
		}
		c, err := h.NewClient(d)
		if err != nil {
			t.Fatal(err)
		}
		if d == hub.Raw {
			if err := c.SubscribeRaw(context.Background(), "fuzz"); err != nil {
				t.Fatal(err)
			}
		}
		// A real socket, so that the session parks between messages as
		// it does in production.
		client, server := tcpPair(t)
		ss := s.newSession(c, server, nil)
		go func() {
			_, _ = client.Write(input)
			// Drain what the server writes, then hang up.
			_ = client.SetReadDeadline(time.Now().Add(5 * time.Millisecond))
			_, _ = io.Copy(io.Discard, client)
			client.Close()
		}()
		ss.start()
		deadline := time.Now().Add(5 * time.Second)
		for h.Stats().Connections.Load() != 0 {
			if time.Now().After(deadline) {
				t.Fatal("the connection was not finished after its client hung up")
			}
			time.Sleep(time.Millisecond)
		}
	})
}
