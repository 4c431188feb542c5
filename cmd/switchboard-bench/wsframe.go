//go:build linux

package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// WebSocket opcodes (RFC 6455 section 5.2).
const (
	opCont  = 0x0
	opText  = 0x1
	opBin   = 0x2
	opClose = 0x8
	opPing  = 0x9
	opPong  = 0xA
)

// maxFramePayload bounds the payload length the parser accepts; a larger
// length is treated as a protocol error rather than a reason to buffer.
const maxFramePayload = 16 << 20

var errFrameTooLarge = errors.New("bench: frame too large")

// frame is one parsed WebSocket frame. payload aliases the parsed buffer.
type frame struct {
	op      byte
	fin     bool
	payload []byte
}

// parseFrame parses the frame at the start of b. It returns n == 0 (and no
// error) when b does not yet hold the whole frame. A masked frame is
// unmasked in place. It does not allocate.
func parseFrame(b []byte) (f frame, n int, err error) {
	if len(b) < 2 {
		return f, 0, nil
	}
	f.fin = b[0]&0x80 != 0
	f.op = b[0] & 0x0F
	masked := b[1]&0x80 != 0
	plen := uint64(b[1] & 0x7F)
	h := 2
	switch plen {
	case 126:
		if len(b) < 4 {
			return f, 0, nil
		}
		plen = uint64(binary.BigEndian.Uint16(b[2:]))
		h = 4
	case 127:
		if len(b) < 10 {
			return f, 0, nil
		}
		plen = binary.BigEndian.Uint64(b[2:])
		h = 10
	}
	if plen > maxFramePayload {
		return f, 0, errFrameTooLarge
	}
	var key []byte
	if masked {
		if len(b) < h+4 {
			return f, 0, nil
		}
		key = b[h : h+4]
		h += 4
	}
	end := h + int(plen)
	if len(b) < end {
		return f, 0, nil
	}
	f.payload = b[h:end]
	if masked {
		for i := range f.payload {
			f.payload[i] ^= key[i&3]
		}
	}
	return f, end, nil
}

// appendFrame appends a final, masked client frame (RFC 6455 section 5.3)
// of opcode op holding payload to dst, masked with key.
func appendFrame(dst []byte, op byte, payload []byte, key [4]byte) []byte {
	dst = append(dst, 0x80|op)
	n := len(payload)
	switch {
	case n < 126:
		dst = append(dst, 0x80|byte(n))
	case n <= 0xFFFF:
		dst = append(dst, 0x80|126, byte(n>>8), byte(n))
	default:
		dst = append(dst, 0x80|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	dst = append(dst, key[:]...)
	start := len(dst)
	dst = append(dst, payload...)
	p := dst[start:]
	for i := range p {
		p[i] ^= key[i&3]
	}
	return dst
}

// maskKey returns a mask key from a cheap per-caller generator state.
// Masking exists against proxy cache poisoning; a fast xorshift is enough
// for a load generator talking to loopback.
func maskKey(state *uint64) [4]byte {
	x := *state
	if x == 0 {
		x = uint64(time.Now().UnixNano()) | 1
	}
	x ^= x << 13
	x ^= x >> 7
	x ^= x << 17
	*state = x
	return [4]byte{byte(x), byte(x >> 8), byte(x >> 16), byte(x >> 24)}
}

const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// acceptKey computes Sec-WebSocket-Accept for a Sec-WebSocket-Key.
func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// handshake performs the client side of the opening handshake on c
// (RFC 6455 section 4.1) for host and path (path includes any query). It
// returns the bytes read past the 101 response, which belong to the first
// frames. The caller sets c's deadline.
func handshake(c net.Conn, host, path string, header []string) (rest []byte, err error) {
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, err
	}
	key := base64.StdEncoding.EncodeToString(raw[:])
	var req strings.Builder
	req.WriteString("GET " + path + " HTTP/1.1\r\nHost: " + host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
		"\r\nSec-WebSocket-Version: 13\r\n")
	for _, h := range header {
		req.WriteString(h + "\r\n")
	}
	req.WriteString("\r\n")
	if _, err := c.Write([]byte(req.String())); err != nil {
		return nil, fmt.Errorf("write upgrade request: %w", err)
	}
	buf := make([]byte, 0, 1024)
	for {
		if i := bytes.Index(buf, []byte("\r\n\r\n")); i >= 0 {
			if err := checkUpgradeResponse(buf[:i], key); err != nil {
				return nil, err
			}
			if len(buf) > i+4 {
				rest = append([]byte(nil), buf[i+4:]...)
			}
			return rest, nil
		}
		if len(buf) == cap(buf) {
			if cap(buf) >= 16<<10 {
				return nil, errors.New("upgrade response header too large")
			}
			buf = append(buf, make([]byte, cap(buf))...)[:len(buf)]
		}
		n, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			return nil, fmt.Errorf("read upgrade response: %w", err)
		}
	}
}

// checkUpgradeResponse checks the status line and Sec-WebSocket-Accept of a
// response header block (without the final blank line).
func checkUpgradeResponse(head []byte, key string) error {
	lines := strings.Split(string(head), "\r\n")
	if !strings.HasPrefix(lines[0], "HTTP/1.1 101") {
		return fmt.Errorf("upgrade refused: %q", lines[0])
	}
	want := acceptKey(key)
	for _, l := range lines[1:] {
		name, value, ok := strings.Cut(l, ":")
		if ok && strings.EqualFold(strings.TrimSpace(name), "Sec-WebSocket-Accept") {
			if strings.TrimSpace(value) != want {
				return errors.New("upgrade: bad Sec-WebSocket-Accept")
			}
			return nil
		}
	}
	return errors.New("upgrade: no Sec-WebSocket-Accept")
}
