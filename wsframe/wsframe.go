// Package wsframe encodes the WebSocket frames a server sends: final,
// unmasked frames whose bytes can be shared by every connection they go
// to. The hub and the dialects build their frames with it; a frame is
// encoded once and written as it is to each subscriber. Deflate makes the
// permessage-deflate variant of such a frame, also once for all the
// connections that negotiated it.
//
// Its functions are safe for concurrent use; a frame, once finished, must
// not be modified.
package wsframe

import "encoding/binary"

// WebSocket opcodes of the frames a server writes.
const (
	OpText   = 0x1
	OpBinary = 0x2
	OpClose  = 0x8
	OpPing   = 0x9
	OpPong   = 0xA
)

// maxHeader is the largest header of an unmasked server frame.
const maxHeader = 10

// Start starts a frame: it returns a buffer with room reserved for the
// header, to which the caller appends the payload before calling Finish.
// capHint is the expected payload size.
func Start(capHint int) []byte {
	return make([]byte, maxHeader, maxHeader+capHint)
}

// Finish writes the header of a final, unmasked frame of the given opcode
// in front of the payload appended to a Start buffer, and returns the whole
// frame.
func Finish(b []byte, opcode byte) []byte {
	n := len(b) - maxHeader
	var start int
	switch {
	case n < 126:
		start = maxHeader - 2
		b[start+1] = byte(n)
	case n <= 0xFFFF:
		start = maxHeader - 4
		b[start+1] = 126
		binary.BigEndian.PutUint16(b[start+2:], uint16(n))
	default:
		start = 0
		b[1] = 127
		binary.BigEndian.PutUint64(b[2:], uint64(n))
	}
	b[start] = 0x80 | opcode
	return b[start:]
}

// Text returns a text frame holding payload.
func Text(payload []byte) []byte {
	return Finish(append(Start(len(payload)), payload...), OpText)
}

// Binary returns a binary frame holding payload.
func Binary(payload []byte) []byte {
	return Finish(append(Start(len(payload)), payload...), OpBinary)
}

// Close returns a close frame with the given code and reason. The reason
// is cut to fit the 125-byte limit of control frames.
func Close(code int, reason string) []byte {
	if len(reason) > 123 {
		reason = reason[:123]
	}
	b := Start(2 + len(reason))
	b = binary.BigEndian.AppendUint16(b, uint16(code))
	b = append(b, reason...)
	return Finish(b, OpClose)
}

// Control returns a ping or pong frame with payload (at most 125 bytes).
func Control(opcode byte, payload []byte) []byte {
	return Finish(append(Start(len(payload)), payload...), opcode)
}
