package wsframe

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func TestFinishHeaders(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 65535, 65536, 200000} {
		payload := bytes.Repeat([]byte{'x'}, n)
		f := Text(payload)
		if f[0] != 0x81 {
			t.Fatalf("%d bytes: first byte %#x, want a final text frame", n, f[0])
		}
		var got, header int
		switch l := int(f[1]); {
		case l < 126:
			got, header = l, 2
		case l == 126:
			got, header = int(binary.BigEndian.Uint16(f[2:])), 4
		default:
			got, header = int(binary.BigEndian.Uint64(f[2:])), 10
		}
		if got != n || !bytes.Equal(f[header:], payload) {
			t.Fatalf("%d bytes: header says %d, frame has %d payload bytes", n, got, len(f)-header)
		}
		if (n < 126) != (header == 2) || (n >= 126 && n <= 65535) != (header == 4) {
			t.Fatalf("%d bytes: a %d-byte header is not the shortest", n, header)
		}
	}
}

func TestClose(t *testing.T) {
	f := Close(4008, "slow consumer")
	if f[0] != 0x88 || int(f[1]) != 2+len("slow consumer") || binary.BigEndian.Uint16(f[2:]) != 4008 {
		t.Fatalf("close frame % x", f)
	}
	long := Close(1000, string(bytes.Repeat([]byte{'r'}, 300)))
	if len(long) != 2+125 {
		t.Fatalf("a long reason made a %d-byte close frame, want 127", len(long))
	}
}
