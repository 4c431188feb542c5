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
// checks text as valid UTF-8 as its bytes arrive, so that a bad sequence
// fails the connection at once, not at the end of its frame. It never
// allocates more than what has arrived: a header announcing a large frame
// costs nothing until its bytes come, and the buffer grows with them (at
// most twice what arrived). A length over the message limit, all fragments
// together, is refused before a byte is read.
//
// A frame refused for its header leaves its payload unread; unread says how
// much of it the caller must skip before the next header, so that it can go
// on reading frames (looking for the client's close) after it answered.
//
// When the connection negotiated permessage-deflate (deflate), RSV1 on a
// message's first frame says the message is compressed: its frames'
// payloads are joined as they are (never more than the limit allows a
// compressed message, a little more than max), then inflated at once,
// with the inflated size bounded by max as it grows (inflate). RSV1
// anywhere else, and RSV2 and RSV3 always, break the protocol.
//
// An assembler is owned by the session's reader; it is not safe for
// concurrent use.
type assembler struct {
	max     int64 // the largest message, all fragments together
	deflate bool  // permessage-deflate was negotiated

	hdr        [ws.MaxHeaderSize - 2]byte
	msg        []byte    // the message being assembled
	op         ws.OpCode // its opcode; 0 while no message is in progress
	compressed bool      // the message in progress is compressed (RSV1 on its first frame)
	valid      int       // how many bytes of a text msg are known to be valid UTF-8
	// unread is what is left of the payload of a refused frame, which the
	// caller must skip before the next header.
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
	// RSV1 may only mark a compressed message's first frame.
	firstCompressed := a.deflate && h.Rsv == rsv1 && (h.OpCode == ws.OpText || h.OpCode == ws.OpBinary)
	if !h.Masked || h.Rsv != 0 && !firstCompressed {
		return 0, nil, a.refuse(h, errProtocol)
	}
	if h.OpCode.IsControl() {
		return a.control(r, h)
	}
	switch h.OpCode {
	case ws.OpContinuation:
		if a.op == 0 {
			return 0, nil, a.refuse(h, errProtocol)
		}
	case ws.OpText, ws.OpBinary:
		if a.op != 0 {
			return 0, nil, a.refuse(h, errProtocol)
		}
	default: // reserved data opcodes 0x3-0x7
		return 0, nil, a.refuse(h, errProtocol)
	}
	if a.op == 0 {
		a.op, a.compressed = h.OpCode, firstCompressed
	}
	// h.Length is at most 2^63-1 (the header reader refuses the most
	// significant bit); compare without adding, which could overflow.
	if h.Length > a.limit()-int64(len(a.msg)) {
		return 0, nil, a.refuse(h, errTooLarge)
	}
	if err := a.readPayload(r, h); err != nil {
		return 0, nil, err
	}
	if !h.Fin {
		return 0, nil, nil
	}
	op, payload, compressed := a.op, a.msg, a.compressed
	a.reset()
	if compressed {
		if payload, err = inflate(payload, a.max); err != nil {
			return 0, nil, err
		}
		if op == ws.OpText && !utf8.Valid(payload) {
			return 0, nil, errInvalidUTF
		}
	}
	return op, payload, nil
}

// rsv1 is the header's Rsv with only RSV1 set.
var rsv1 = ws.Rsv(true, false, false)

// limit is the most bytes the message in progress may take, all fragments
// together: max, or for a compressed message a little more, as data that
// does not compress grows a little when deflated (5 bytes per 64 KiB
// block, and a few bytes more).
func (a *assembler) limit() int64 {
	if a.compressed {
		return a.max + a.max>>10 + 64
	}
	return a.max
}

// reset forgets the message in progress.
func (a *assembler) reset() { a.msg, a.op, a.valid, a.compressed = nil, 0, 0, false }

// refuse forgets the message in progress and notes that the payload of h,
// a frame refused for its header, is still to be skipped. It returns err.
func (a *assembler) refuse(h ws.Header, err error) error {
	a.reset()
	a.unread = h.Length
	return err
}

// readPayload appends h's payload to the message, unmasking and checking
// it as it arrives: text is checked as UTF-8 after every read, so that a
// bad sequence is refused without waiting for the rest of its frame.
func (a *assembler) readPayload(r io.Reader, h ws.Header) error {
	n := int(h.Length)
	for read := 0; read < n; {
		if len(a.msg) == cap(a.msg) {
			a.grow()
		}
		k := min(n-read, cap(a.msg)-len(a.msg))
		m, err := r.Read(a.msg[len(a.msg) : len(a.msg)+k])
		if m > 0 {
			ws.Cipher(a.msg[len(a.msg):len(a.msg)+m], h.Mask, read)
			a.msg = a.msg[:len(a.msg)+m]
			read += m
			if a.op == ws.OpText && !a.compressed && read < n {
				if err := a.checkText(false); err != nil {
					a.unread = int64(n - read)
					return err
				}
			}
		}
		if err != nil && read < n {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	if a.op == ws.OpText && !a.compressed {
		return a.checkText(h.Fin)
	}
	return nil
}

// checkText checks the text received so far as UTF-8; final tells that
// the message is complete.
func (a *assembler) checkText(final bool) error {
	n, ok := validUTF8Prefix(a.msg[a.valid:], final)
	if !ok {
		a.reset()
		return errInvalidUTF
	}
	a.valid += n
	return nil
}

// grow makes room for more of the message: as much again as it holds (at
// least growMin), never past the message limit. What is allocated is thus
// at most twice what arrived, however the message is cut into frames (a
// frame announcing more than it sends costs nothing), and a message of many
// small fragments is copied a logarithmic number of times, not once per
// fragment. The caller only grows a message that is within its limit.
func (a *assembler) grow() {
	const growMin = 512
	more := min(int64(max(len(a.msg), growMin)), a.limit()-int64(len(a.msg)))
	grown := make([]byte, len(a.msg), len(a.msg)+int(max(more, 1)))
	copy(grown, a.msg)
	a.msg = grown
}

// control reads a control frame: at most 125 bytes, never fragmented, of
// a defined opcode. A close frame's code and reason are checked; one that
// fails is returned as OpClose with the error, so that the caller knows
// the client has closed its side.
func (a *assembler) control(r io.Reader, h ws.Header) (ws.OpCode, []byte, error) {
	switch h.OpCode {
	case ws.OpClose, ws.OpPing, ws.OpPong:
	default: // reserved control opcodes 0xB-0xF
		a.unread = h.Length
		return 0, nil, errProtocol
	}
	if h.Length > 125 || !h.Fin {
		a.unread = h.Length
		if h.OpCode == ws.OpClose {
			return ws.OpClose, nil, errProtocol
		}
		return 0, nil, errProtocol
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(r, p); err != nil {
		return 0, nil, err
	}
	ws.Cipher(p, h.Mask, 0)
	if h.OpCode == ws.OpClose {
		if err := checkClose(p); err != nil {
			return ws.OpClose, nil, err
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
