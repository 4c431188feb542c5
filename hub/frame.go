package hub

import "encoding/binary"

// WebSocket opcodes of the frames the hub writes.
const (
	opText  = 0x1
	opClose = 0x8
	opPing  = 0x9
	opPong  = 0xA
)

// maxHeader is the largest header of an unmasked server frame.
const maxHeader = 10

// frameBuf starts a frame: it returns a buffer with room reserved for the
// header, to which the caller appends the payload before calling
// finishFrame. capHint is the expected payload size.
func frameBuf(capHint int) []byte {
	b := make([]byte, maxHeader, maxHeader+capHint)
	return b
}

// finishFrame writes the header of a final, unmasked frame of the given
// opcode in front of the payload appended to a frameBuf buffer, and returns
// the whole frame. Server frames are not masked, so the same bytes can be
// sent to every client.
func finishFrame(b []byte, opcode byte) []byte {
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

// textFrame returns a text frame holding payload.
func textFrame(payload []byte) []byte {
	return finishFrame(append(frameBuf(len(payload)), payload...), opText)
}

// CloseFrame returns a close frame with the given code and reason. The
// reason is cut to fit the 125-byte limit of control frames.
func CloseFrame(code int, reason string) []byte {
	if len(reason) > 123 {
		reason = reason[:123]
	}
	b := frameBuf(2 + len(reason))
	b = binary.BigEndian.AppendUint16(b, uint16(code))
	b = append(b, reason...)
	return finishFrame(b, opClose)
}

// controlFrame returns a ping or pong frame with payload (at most 125 bytes).
func controlFrame(opcode byte, payload []byte) []byte {
	return finishFrame(append(frameBuf(len(payload)), payload...), opcode)
}

// pingFrame is the empty ping every connection receives each ping interval;
// one shared copy.
var pingFrame = controlFrame(opPing, nil)
