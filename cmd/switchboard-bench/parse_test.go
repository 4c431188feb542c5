//go:build linux

package main

import (
	"bytes"
	"encoding/binary"
	"math"
	"slices"
	"sort"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// serverFrame builds an unmasked frame as a server sends it.
func serverFrame(op byte, fin bool, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	b := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		b = append(b, byte(n))
	case n <= 0xFFFF:
		b = append(b, 126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, payload...)
}

func TestParseFrame(t *testing.T) {
	t.Parallel()
	long := bytes.Repeat([]byte("a"), 300)
	huge := bytes.Repeat([]byte("b"), 70000)
	tests := []struct {
		name    string
		in      []byte
		wantOp  byte
		wantFin bool
		want    []byte
		wantN   int
		wantErr bool
	}{
		{"empty", nil, 0, false, nil, 0, false},
		{"one byte", []byte{0x81}, 0, false, nil, 0, false},
		{"short text", serverFrame(opText, true, []byte("hello")), opText, true, []byte("hello"), 7, false},
		{"empty text", serverFrame(opText, true, nil), opText, true, []byte{}, 2, false},
		{"16-bit length", serverFrame(opText, true, long), opText, true, long, 4 + 300, false},
		{"64-bit length", serverFrame(opBin, true, huge), opBin, true, huge, 10 + 70000, false},
		{"not final", serverFrame(opText, false, []byte("ab")), opText, false, []byte("ab"), 4, false},
		{"ping", serverFrame(opPing, true, []byte("p")), opPing, true, []byte("p"), 3, false},
		{"close", serverFrame(opClose, true, []byte{0x03, 0xE8}), opClose, true, []byte{0x03, 0xE8}, 4, false},
		{"truncated payload", serverFrame(opText, true, []byte("hello"))[:5], 0, false, nil, 0, false},
		{"truncated 16-bit header", serverFrame(opText, true, long)[:3], 0, false, nil, 0, false},
		{"truncated 64-bit header", serverFrame(opText, true, huge)[:9], 0, false, nil, 0, false},
		{"masked", appendFrame(nil, opText, []byte("masked!"), [4]byte{1, 2, 3, 4}), opText, true, []byte("masked!"), 2 + 4 + 7, false},
		{"masked header only", appendFrame(nil, opText, []byte("x"), [4]byte{1, 2, 3, 4})[:4], 0, false, nil, 0, false},
		{"too large", []byte{0x82, 127, 0, 0, 0, 1, 0, 0, 0, 0}, 0, false, nil, 0, true},
		{"two frames", append(serverFrame(opText, true, []byte("a")), serverFrame(opText, true, []byte("b"))...), opText, true, []byte("a"), 3, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := slices.Clone(tt.in)
			f, n, err := parseFrame(in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if n != tt.wantN {
				t.Fatalf("n = %d, want %d", n, tt.wantN)
			}
			if n == 0 {
				return
			}
			if f.op != tt.wantOp || f.fin != tt.wantFin || !bytes.Equal(f.payload, tt.want) {
				t.Errorf("frame = op %d fin %v payload %q, want op %d fin %v payload %q", f.op, f.fin, f.payload, tt.wantOp, tt.wantFin, tt.want)
			}
		})
	}
}

func TestAppendFrameMasks(t *testing.T) {
	t.Parallel()
	for _, size := range []int{0, 1, 125, 126, 65535, 65536} {
		p := bytes.Repeat([]byte{'z'}, size)
		st := uint64(0x9E3779B97F4A7C15) // a fixed state: the key is known
		key := maskKey(&st)
		b := appendFrame(nil, opText, p, key)
		if b[1]&0x80 == 0 {
			t.Fatalf("size %d: mask bit not set", size)
		}
		hdr := 2 + 4
		switch {
		case size > 65535:
			hdr += 8
		case size > 125:
			hdr += 2
		}
		if len(b) != hdr+size || !bytes.Equal(b[hdr-4:hdr], key[:]) {
			t.Fatalf("size %d: frame of %d bytes, want the key then %d payload bytes after a %d-byte header", size, len(b), size, hdr)
		}
		for i := range size {
			if b[hdr+i] != p[i]^key[i%4] {
				t.Fatalf("size %d: payload byte %d is %#x, want it masked: %#x", size, i, b[hdr+i], p[i]^key[i%4])
			}
		}
		f, n, err := parseFrame(b)
		if err != nil || n != len(b) || !bytes.Equal(f.payload, p) || !f.fin || f.op != opText {
			t.Fatalf("size %d: round trip failed: n=%d/%d err=%v", size, n, len(b), err)
		}
	}
}

func TestAcceptKey(t *testing.T) {
	t.Parallel()
	// The example of RFC 6455 section 1.3.
	if got := acceptKey("dGhlIHNhbXBsZSBub25jZQ=="); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Errorf("acceptKey = %q", got)
	}
}

func TestParsePayload(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		json bool
		seq  uint64
		ts   int64
		ok   bool
	}{
		{"raw", "123 1712345678901234567 xxx", false, 123, 1712345678901234567, true},
		{"raw no pad", "1 2", false, 1, 2, true},
		{"raw trailing space", "1 2 ", false, 1, 2, true},
		{"raw no time", "123", false, 0, 0, false},
		{"raw letters", "abc 1 x", false, 0, 0, false},
		{"raw bad time", "1 2x", false, 0, 0, false},
		{"raw empty", "", false, 0, 0, false},
		{"json bare", `{"s":7,"t":99,"p":"xx"}`, true, 7, 99, true},
		{"native event", `{"op":"message","channel":"bench","data":{"s":42,"t":1712345678901234567,"p":"x"}}`, true, 42, 1712345678901234567, true},
		{"centrifugo push", `{"push":{"channel":"bench","pub":{"data":{"s":5,"t":6,"p":""},"offset":3}}}`, true, 5, 6, true},
		{"json reply", `{"id":3,"ok":true}`, true, 0, 0, false},
		{"json missing t", `{"s":7,"p":"x"}`, true, 0, 0, false},
		{"json empty t", `{"s":7,"t":,"p":"x"}`, true, 0, 0, false},
		{"json truncated", `{"s":7`, true, 0, 0, false},
	}
	// A Pusher event carries the payload as a JSON string.
	escaped := []struct {
		in  string
		seq uint64
		ts  int64
		ok  bool
	}{
		{`{"event":"message","channel":"bench","data":"{\"s\":42,\"t\":17,\"p\":\"x\"}"}`, 42, 17, true},
		{`{"event":"message","channel":"bench","data":"{\"s\":42,\"p\":\"x\"}"}`, 0, 0, false},
		{`{"event":"message","channel":"bench","data":{"s":42,"t":17}}`, 0, 0, false},
		{`{"event":"pusher:pong","data":{}}`, 0, 0, false},
	}
	for _, tt := range escaped {
		seq, ts, ok := parseEscapedJSONPayload([]byte(tt.in))
		if ok != tt.ok || seq != tt.seq || ts != tt.ts {
			t.Errorf("parseEscapedJSONPayload(%q) = %d, %d, %v; want %d, %d, %v", tt.in, seq, ts, ok, tt.seq, tt.ts, tt.ok)
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			parse := parseRawPayload
			if tt.json {
				parse = parseJSONPayload
			}
			seq, ts, ok := parse([]byte(tt.in))
			if ok != tt.ok || seq != tt.seq || ts != tt.ts {
				t.Errorf("parse(%q) = %d, %d, %v; want %d, %d, %v", tt.in, seq, ts, ok, tt.seq, tt.ts, tt.ok)
			}
		})
	}
}

func TestPayloadRoundTrip(t *testing.T) {
	t.Parallel()
	for _, size := range []int{1, 20, 100, 1000} {
		for _, seq := range []uint64{1, 12345, math.MaxUint32} {
			const ts = int64(1712345678901234567)
			j := appendJSONPayload(nil, seq, ts, size)
			if s, tt, ok := parseJSONPayload(j); !ok || s != seq || tt != ts {
				t.Errorf("json %q: got %d %d %v", j, s, tt, ok)
			}
			if size >= 60 && len(j) != size {
				t.Errorf("json size %d: got %d bytes", size, len(j))
			}
			r := appendRawPayload(nil, seq, ts, size)
			if s, tt, ok := parseRawPayload(r); !ok || s != seq || tt != ts {
				t.Errorf("raw %q: got %d %d %v", r, s, tt, ok)
			}
			if size >= 40 && len(r) != size {
				t.Errorf("raw size %d: got %d bytes", size, len(r))
			}
		}
	}
}

func TestParseAllocs(t *testing.T) {
	frame := serverFrame(opText, true, []byte(`{"op":"message","channel":"bench","data":{"s":42,"t":1712345678901234567,"p":"xxxx"}}`))
	n := testing.AllocsPerRun(100, func() {
		f, _, _ := parseFrame(frame)
		_, _, _ = parseJSONPayload(f.payload)
		_, _, _ = parseRawPayload(f.payload)
	})
	if n != 0 {
		t.Errorf("parsing allocates %v times per frame", n)
	}
}

func TestHistogramBuckets(t *testing.T) {
	t.Parallel()
	// Every bucket's bounds map back to it, and buckets tile the range.
	prevHi := uint64(0)
	for i := 0; i < histBuckets; i++ {
		lo, hi := histBounds(i)
		if histIndex(lo) != i || histIndex(hi) != i {
			t.Fatalf("bucket %d [%d,%d] maps to %d,%d", i, lo, hi, histIndex(lo), histIndex(hi))
		}
		if i > 0 && lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, previous ended at %d", i, lo, prevHi)
		}
		prevHi = hi
		if hi == math.MaxUint64 {
			break
		}
	}
	if prevHi != math.MaxUint64 {
		t.Fatalf("buckets end at %d", prevHi)
	}
}

func TestHistogramQuantiles(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		values []int64
	}{
		{"one", []int64{5000}},
		{"small exact", []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{"uniform", seqValues(10000, func(i int) int64 { return int64(i+1) * 1000 })},
		{"skewed", seqValues(10000, func(i int) int64 { return int64(math.Exp(float64(i%1000)/70)) * 1000 })},
		{"negative clamps", []int64{-5, 10}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var h Histogram
			for _, v := range tt.values {
				h.Record(v)
			}
			sorted := slices.Clone(tt.values)
			for i, v := range sorted {
				sorted[i] = max(v, 0)
			}
			sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
			if h.Count() != uint64(len(sorted)) || h.Max() != uint64(sorted[len(sorted)-1]) {
				t.Fatalf("count %d max %d", h.Count(), h.Max())
			}
			for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 1} {
				rank := int(math.Ceil(q*float64(len(sorted)))) - 1
				exact := float64(sorted[max(rank, 0)])
				got := float64(h.Quantile(q))
				if got < exact || got > exact*(1+1.0/64)+1 {
					t.Errorf("q%.3f = %.0f, exact %.0f", q, got, exact)
				}
			}
			var m Histogram
			m.Merge(&h)
			m.Merge(&h)
			if m.Count() != 2*h.Count() || m.Quantile(0.5) != h.Quantile(0.5) {
				t.Errorf("merge: count %d q50 %d", m.Count(), m.Quantile(0.5))
			}
			var total uint64
			for _, b := range h.Buckets(8) {
				total += b.Count
			}
			if total != h.Count() {
				t.Errorf("buckets hold %d of %d", total, h.Count())
			}
		})
	}
}

func seqValues(n int, f func(int) int64) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = f(i)
	}
	return out
}

func TestRecordAllocs(t *testing.T) {
	var h Histogram
	if n := testing.AllocsPerRun(100, func() { h.Record(12345) }); n != 0 {
		t.Errorf("Record allocates %v times", n)
	}
}
