package wsframe

import (
	"compress/flate"
	"encoding/binary"
	"errors"
	"sync"
)

// RSV1 is the first reserved bit of a frame's first byte: under
// permessage-deflate (RFC 7692) it marks the first frame of a compressed
// message.
const RSV1 = 0x40

// MinDeflate is the smallest payload Deflate compresses: below it, the
// deflate block's own overhead leaves next to nothing to save.
const MinDeflate = 64

// Deflate returns frame, a final text or binary frame as Finish makes it,
// compressed as permessage-deflate wants it without context takeover: its
// payload deflated on its own (the stream flushed, its last four bytes
// 00 00 FF FF removed) and RSV1 set, so that the one compressed frame can go
// to every connection that negotiated the extension. level is a
// compress/flate level; flate.HuffmanOnly makes a stream with no
// back-references, which a peer that limits the server's window
// (server_max_window_bits below 15) can decode, where every other level
// looks back up to 32 KiB.
//
// Compressing a message is optional: Deflate returns frame itself when its
// payload is shorter than MinDeflate, when compressing would not make the
// frame smaller, and for any other frame (control frames are never
// compressed). It is safe for concurrent use.
func Deflate(frame []byte, level int) []byte {
	op, start, ok := dataFrame(frame)
	if !ok || len(frame)-start < MinDeflate {
		return frame
	}
	pool := deflaterPool(level)
	if pool == nil {
		return frame
	}
	payload := frame[start:]
	d := pool.Get().(*deflater)
	defer pool.Put(d)
	// The compressed payload must come out shorter than the payload (the
	// 4 bytes Flush ends with are removed below), or it is not worth
	// sending.
	d.out.b = Start(len(payload)/4 + MinDeflate)
	d.out.limit = maxHeader + len(payload) + 3
	d.w.Reset(&d.out)
	_, err := d.w.Write(payload)
	if err == nil {
		err = d.w.Flush()
	}
	b := d.out.b
	d.out.b = nil
	if err != nil {
		return frame // errNoGain, the only error the buffer returns
	}
	// Flush ends the stream with an empty stored block, 00 00 FF FF,
	// which the receiver adds back (RFC 7692, section 7.2.1).
	b = b[:len(b)-4]
	if cap(b) > 2*len(b)+512 {
		// Do not keep what the first guess over-allocated alive in
		// every subscriber's queue.
		b = append(make([]byte, 0, len(b)), b...)
	}
	return Finish(b, op|RSV1)
}

// dataFrame reads the header of a final, unmasked, uncompressed text or
// binary frame that spans all of frame. It returns the opcode and where
// the payload starts.
func dataFrame(frame []byte) (op byte, start int, ok bool) {
	if len(frame) < 2 || frame[0] != 0x80|OpText && frame[0] != 0x80|OpBinary || frame[1]&0x80 != 0 {
		return 0, 0, false
	}
	n, start := uint64(frame[1]), 2
	switch n {
	case 126:
		if len(frame) < 4 {
			return 0, 0, false
		}
		n, start = uint64(binary.BigEndian.Uint16(frame[2:])), 4
	case 127:
		if len(frame) < 10 {
			return 0, 0, false
		}
		n, start = binary.BigEndian.Uint64(frame[2:]), 10
	}
	if n != uint64(len(frame)-start) {
		return 0, 0, false
	}
	return frame[0] & 0x0F, start, true
}

// deflater is a pooled compress/flate writer and the buffer it writes
// into. A writer is large (several hundred KB), so writers are made only
// as many as compress at the same time, and reused.
type deflater struct {
	w   *flate.Writer
	out limitedBuffer
}

// deflaters holds a pool of deflaters per compress/flate level, from
// flate.HuffmanOnly (-2) to flate.BestCompression (9).
var deflaters [flate.BestCompression - flate.HuffmanOnly + 1]sync.Pool

func init() {
	for i := range deflaters {
		level := i + flate.HuffmanOnly
		deflaters[i].New = func() any {
			d := &deflater{}
			d.w, _ = flate.NewWriter(&d.out, level) // every level here is valid
			return d
		}
	}
}

// deflaterPool returns the pool of deflaters of level; nil for a level
// compress/flate does not know.
func deflaterPool(level int) *sync.Pool {
	i := level - flate.HuffmanOnly
	if i < 0 || i >= len(deflaters) {
		return nil
	}
	return &deflaters[i]
}

// errNoGain stops a compression whose output grew as long as its input.
var errNoGain = errors.New("wsframe: compression does not make the frame smaller")

// limitedBuffer is a byte buffer that refuses to grow past limit.
type limitedBuffer struct {
	b     []byte
	limit int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if len(l.b)+len(p) > l.limit {
		return 0, errNoGain
	}
	l.b = append(l.b, p...)
	return len(p), nil
}
