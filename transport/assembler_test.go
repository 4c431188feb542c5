package transport

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/gobwas/ws"
)

// clientFrame encodes a masked client frame.
func clientFrame(op ws.OpCode, fin bool, payload []byte) []byte {
	h := ws.Header{Fin: fin, OpCode: op, Masked: true, Mask: [4]byte{9, 8, 7, 6}, Length: int64(len(payload))}
	var buf bytes.Buffer
	_ = ws.WriteHeader(&buf, h)
	p := bytes.Clone(payload)
	ws.Cipher(p, h.Mask, 0)
	buf.Write(p)
	return buf.Bytes()
}

// A message of many small fragments (Autobahn 9.3 sends 4 MiB in 64-byte
// fragments) grows its buffer by doubling: the allocations of a message do
// not grow with its number of fragments, where growing by each fragment's
// size copied the whole message once per fragment.
func TestFragmentsGrowTheMessageByDoubling(t *testing.T) {
	const fragments, size = 4096, 16
	var in []byte
	for i := range fragments {
		op := ws.OpContinuation
		if i == 0 {
			op = ws.OpText
		}
		in = append(in, clientFrame(op, i == fragments-1, bytes.Repeat([]byte{'a' + byte(i%26)}, size))...)
	}
	r := bytes.NewReader(in)
	a := assembler{max: 1 << 20}
	allocs := testing.AllocsPerRun(1, func() {
		r.Reset(in)
		for {
			op, p, err := a.next(r)
			if err != nil {
				t.Fatal(err)
			}
			if op == ws.OpText {
				if len(p) != fragments*size {
					t.Fatalf("message of %d bytes, want %d", len(p), fragments*size)
				}
				return
			}
		}
	})
	if allocs > 20 {
		t.Fatalf("%v allocations for one message of %d fragments, want at most 20", allocs, fragments)
	}
}

// What the assembler allocates for a message is at most about twice what
// has arrived, whatever the frames announce.
func TestAssemblerGrowthIsBoundedByArrivals(t *testing.T) {
	a := assembler{max: 1 << 30}
	frame := clientFrame(ws.OpBinary, true, make([]byte, 10))
	// Announce 1 GiB in a 64-bit length, send 10 bytes.
	h := append([]byte{frame[0], 0x80 | 127}, binary.BigEndian.AppendUint64(nil, 1<<30)...)
	h = append(h, 9, 8, 7, 6)
	h = append(h, make([]byte, 10)...)
	_, _, err := a.next(bytes.NewReader(h))
	if err == nil {
		t.Fatal("a frame cut short read without error")
	}
	if c := cap(a.msg); c > 1024 {
		t.Fatalf("%d bytes allocated for 10 that arrived", c)
	}
}
