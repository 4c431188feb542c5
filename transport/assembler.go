package transport

import (
	"encoding/binary"
	"errors"
	"io"
	"unicode/utf8"

	"github.com/gobwas/ws"

	"github.com/switchboard-rt/switchboard/protocol"
)

var (
	errProtocol   = &CloseError{protocol.CloseProtocolError, "protocol error"}
	errTooLarge   = &CloseError{protocol.CloseTooLarge, "message too large"}
	errInvalidUTF = &CloseError{protocol.CloseInvalidPayload, "text is not valid UTF-8"}
)

// assembler turns the frames a client sends into messages, as RFC 6455
// asks: it checks each frame's header, unmasks it, joins fragments, and
// checks text as valid UTF-8 fragment by fragment. It never allocates more
// than what has arrived: a header announcing a large frame costs nothing
// until its bytes come, and the buffer grows with them (at most twice what
// arrived). A length over the message limit, all fragments together, is
// refused before a byte is read.
//
// An assembler is owned by the session's reader; it is not safe for
// concurrent use.
type assembler struct {
	max int64 // the largest message, all fragments together

	hdr   [ws.MaxHeaderSize - 2]byte
	msg   []byte    // the message being assembled
	op    ws.OpCode // its opcode; 0 while no message is in progress
	valid int       // how many bytes of a text msg are known to be valid UTF-8
	// unread is the length of a frame refused as too large, whose payload
	// the caller must skip before the next header.
	unread int64
}

// busy reports whether a fragmented message is in progress.
func (a *assembler) busy() bool { return a.op != 0 }

// next reads one frame from r. It returns a control frame (ping, pong or
// close) or a whole message (text or binary); for a fragment of a message
// that is not finished it returns op 0 and no payload. A frame that breaks
// the protocol or the limits fails with a *CloseError; a broken connection
// with its read error.
//
// A returned message's payload is the caller's; a control frame's payload
// is only valid until the next call.
func (a *assembler) next(r io.Reader) (op ws.OpCode, payload []byte, err error) {
	h, err := ws.ReadHeaderBuffer(r, a.hdr[:2])
	if err != nil {
		return 0, nil, err
	}
	if !h.Masked || h.Rsv != 0 {
		return 0, nil, errProtocol
	}
	if h.OpCode.IsControl() {
		return a.control(r, h)
	}
	switch h.OpCode {
	case ws.OpContinuation:
		if a.op == 0 {
			return 0, nil, errProtocol
		}
	case ws.OpText, ws.OpBinary:
		if a.op != 0 {
			return 0, nil, errProtocol
		}
	default: // reserved data opcodes 0x3-0x7
		return 0, nil, errProtocol
	}
	// h.Length is at most 2^63-1 (the header reader refuses the most
	// significant bit); compare without adding, which could overflow.
	if h.Length > a.max-int64(len(a.msg)) {
		a.msg, a.op, a.valid, a.unread = nil, 0, 0, h.Length
		return 0, nil, errTooLarge
	}
	if a.op == 0 {
		a.op = h.OpCode
	}
	start := len(a.msg)
	a.msg, err = readGrowing(r, a.msg, int(h.Length))
	if err != nil {
		return 0, nil, err
	}
	ws.Cipher(a.msg[start:], h.Mask, 0)
	if a.op == ws.OpText {
		n, ok := validUTF8Prefix(a.msg[a.valid:], h.Fin)
		if !ok {
			return 0, nil, errInvalidUTF
		}
		a.valid += n
	}
	if !h.Fin {
		return 0, nil, nil
	}
	op, payload = a.op, a.msg
	a.msg, a.op, a.valid = nil, 0, 0
	return op, payload, nil
}

// control reads a control frame: at most 125 bytes, never fragmented, of
// a defined opcode. A close frame's code and reason are checked.
func (a *assembler) control(r io.Reader, h ws.Header) (ws.OpCode, []byte, error) {
	switch h.OpCode {
	case ws.OpClose, ws.OpPing, ws.OpPong:
	default: // reserved control opcodes 0xB-0xF
		return 0, nil, errProtocol
	}
	if h.Length > 125 || !h.Fin {
		return 0, nil, errProtocol
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(r, p); err != nil {
		return 0, nil, err
	}
	ws.Cipher(p, h.Mask, 0)
	if h.OpCode == ws.OpClose {
		if err := checkClose(p); err != nil {
			return 0, nil, err
		}
	}
	return h.OpCode, p, nil
}

// checkClose checks a client's close frame payload: empty, or a code a
// peer may send followed by a UTF-8 reason.
func checkClose(p []byte) error {
	switch {
	case len(p) == 0:
		return nil
	case len(p) == 1:
		return errProtocol
	case !sendableCloseCode(int(binary.BigEndian.Uint16(p))):
		return errProtocol
	case !utf8.Valid(p[2:]):
		return errInvalidUTF
	}
	return nil
}

// sendableCloseCode reports whether a close frame may carry code: the
// codes RFC 6455 and the IANA registry define for the wire (1000-1003,
// 1007-1014) and the ranges for libraries and applications (3000-4999).
// 1004-1006 and 1015 are reserved or must never be sent.
func sendableCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// closeCode returns the code a client's (checked) close frame carries:
// 1000 when it carries none, as 1005 ("no status") must never be sent
// back.
func closeCode(p []byte) int {
	if len(p) < 2 {
		return protocol.CloseNormal
	}
	return int(binary.BigEndian.Uint16(p))
}

// readGrowing appends n bytes read from r to buf. It grows buf as bytes
// arrive, never to more than twice what it already holds (and at least
// growMin), so a peer that announces a large frame and sends nothing pins
// no memory.
func readGrowing(r io.Reader, buf []byte, n int) ([]byte, error) {
	const growMin = 512
	for n > 0 {
		if len(buf) == cap(buf) {
			more := min(n, max(cap(buf), growMin))
			grown := make([]byte, len(buf), len(buf)+more)
			copy(grown, buf)
			buf = grown
		}
		k := min(n, cap(buf)-len(buf))
		m, err := io.ReadFull(r, buf[len(buf):len(buf)+k])
		buf = buf[:len(buf)+m]
		n -= m
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return buf, err
		}
	}
	return buf, nil
}

// validUTF8Prefix checks b as the next part of a text message. It returns
// how many bytes of b are complete, valid UTF-8; unless final, up to three
// bytes at the end may be the start of a sequence the next fragment
// finishes. ok is false as soon as b cannot be the start of valid text.
func validUTF8Prefix(b []byte, final bool) (n int, ok bool) {
	for n < len(b) {
		if b[n] < utf8.RuneSelf {
			n++
			continue
		}
		r, size := utf8.DecodeRune(b[n:])
		if r == utf8.RuneError && size <= 1 {
			return n, !final && possibleStart(b[n:])
		}
		n += size
	}
	return n, true
}

// possibleStart reports whether b is shorter than a UTF-8 sequence and can
// be its first bytes: a leading byte, then bytes in the ranges the
// encoding allows after it (RFC 3629, section 4).
func possibleStart(b []byte) bool {
	need := 0
	switch c := b[0]; {
	case c >= 0xC2 && c <= 0xDF:
		need = 2
	case c >= 0xE0 && c <= 0xEF:
		need = 3
	case c >= 0xF0 && c <= 0xF4:
		need = 4
	}
	if len(b) >= need {
		return false
	}
	for i, c := range b[1:] {
		lo, hi := byte(0x80), byte(0xBF)
		if i == 0 {
			switch b[0] {
			case 0xE0:
				lo = 0xA0
			case 0xED:
				hi = 0x9F
			case 0xF0:
				lo = 0x90
			case 0xF4:
				hi = 0x8F
			}
		}
		if c < lo || c > hi {
			return false
		}
	}
	return true
}
