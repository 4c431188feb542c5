package wsframe

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

// inflate reads a compressed frame's payload as a permessage-deflate
// receiver does: the payload with 00 00 FF FF added back.
func inflate(t *testing.T, payload []byte) []byte {
	t.Helper()
	r := flate.NewReader(io.MultiReader(bytes.NewReader(payload), strings.NewReader("\x00\x00\xff\xff\x01\x00\x00\xff\xff")))
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("inflate: %v", err)
	}
	return out
}

// splitFrame returns a frame's first byte and payload.
func splitFrame(t *testing.T, f []byte) (byte, []byte) {
	t.Helper()
	switch l := f[1]; {
	case l < 126:
		return f[0], f[2:]
	case l == 126:
		return f[0], f[4:]
	default:
		return f[0], f[10:]
	}
}

func TestDeflate(t *testing.T) {
	t.Parallel()
	random := make([]byte, 4096)
	for i := range random {
		random[i] = byte(rand.N(256))
	}
	text := []byte(strings.Repeat(`{"channel":"news","data":"the same words again and again"}`, 40))
	big := bytes.Repeat([]byte("0123456789abcdef"), 70000) // over 1 MiB, a 64-bit length
	tests := []struct {
		name       string
		frame      []byte
		level      int
		compressed bool
	}{
		{"text", Text(text), flate.BestSpeed, true},
		{"binary", Binary(text), flate.BestSpeed, true},
		{"huffman only", Text(text), flate.HuffmanOnly, true},
		{"big", Binary(big), flate.BestSpeed, true},
		{"short", Text([]byte("hello")), flate.BestSpeed, false},
		{"incompressible", Binary(random), flate.BestSpeed, false},
		{"close", Close(1000, strings.Repeat("x", 100)), flate.BestSpeed, false},
		{"ping", Control(OpPing, bytes.Repeat([]byte{'p'}, 100)), flate.BestSpeed, false},
		{"unknown level", Text(text), 42, false},
		{"not a whole frame", Text(text)[:100], flate.BestSpeed, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := Deflate(tc.frame, tc.level)
			if !tc.compressed {
				if &got[0] != &tc.frame[0] || len(got) != len(tc.frame) {
					t.Fatal("the frame was not returned as it is")
				}
				return
			}
			if len(got) >= len(tc.frame) {
				t.Fatalf("compressed frame of %d bytes, not smaller than %d", len(got), len(tc.frame))
			}
			b0, payload := splitFrame(t, got)
			ob0, original := splitFrame(t, tc.frame)
			if b0 != ob0|RSV1 {
				t.Fatalf("first byte %#x, want %#x (RSV1 set, same opcode)", b0, ob0|RSV1)
			}
			if out := inflate(t, payload); !bytes.Equal(out, original) {
				t.Fatalf("inflated %d bytes that differ from the %d sent", len(out), len(original))
			}
			if bytes.HasSuffix(payload, []byte{0, 0, 0xff, 0xff}) {
				t.Fatal("the payload keeps the flush's 00 00 FF FF")
			}
		})
	}
}

// A Huffman-only frame codes every byte as a literal, with no
// back-references (so a receiver with any window decodes it): it cannot be
// shorter than a bit per byte, where BestSpeed's back-references shrink a
// repeated byte to almost nothing.
func TestDeflateHuffmanOnlyHasNoBackReferences(t *testing.T) {
	t.Parallel()
	payload := bytes.Repeat([]byte{'a'}, 8000)
	f := Deflate(Binary(payload), flate.HuffmanOnly)
	_, p := splitFrame(t, f)
	if len(p) < len(payload)/8 {
		t.Fatalf("%d bytes for %d repeated bytes: back-references were used", len(p), len(payload))
	}
	if len(Deflate(Binary(payload), flate.BestSpeed)) > 200 {
		t.Fatal("BestSpeed should compress a repeated byte to almost nothing")
	}
}

func TestDataFrame(t *testing.T) {
	t.Parallel()
	f := Text(make([]byte, 300))
	if op, start, ok := dataFrame(f); !ok || op != OpText || start != 4 {
		t.Fatalf("dataFrame = %d, %d, %v", op, start, ok)
	}
	masked := bytes.Clone(Text(make([]byte, 10)))
	masked[1] |= 0x80
	long := bytes.Clone(Text(make([]byte, 10)))
	long = append(long, 0)
	notFinal := bytes.Clone(Text(make([]byte, 10)))
	notFinal[0] &^= 0x80
	compressed := bytes.Clone(Text(make([]byte, 10)))
	compressed[0] |= RSV1
	huge := append([]byte{0x82, 127}, binary.BigEndian.AppendUint64(nil, 1<<63)...)
	for name, f := range map[string][]byte{"masked": masked, "long": long, "not final": notFinal, "compressed": compressed, "huge": huge, "empty": nil} {
		if _, _, ok := dataFrame(f); ok {
			t.Errorf("%s: dataFrame accepted it", name)
		}
	}
}
