package transport

import (
	"compress/flate"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws/wsflate"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/protocol"
)

// permessage-deflate (RFC 7692), as the server speaks it: always without
// context takeover in both directions, so that each message is compressed
// on its own. The server then compresses a message once for all the
// connections that negotiated the extension (hub.Compression), and it
// keeps no compression state for a connection between messages: an idle
// connection costs what it did without compression.

// negotiateDeflate answers a client's permessage-deflate offers (the
// Sec-WebSocket-Extensions header of its upgrade): it accepts the first
// offer with valid parameters and returns the response's extension
// header and how the client's messages are to be compressed. It returns
// "" and hub.Uncompressed when the client offers none that is valid.
//
// The response always asks for server_no_context_takeover and
// client_no_context_takeover, which a server may do whatever the offer
// says (RFC 7692, sections 7.1.1.1 and 7.1.1.2). An offer that limits the
// server's window (server_max_window_bits=N, N < 15) is accepted with the
// same N, and the client's messages are compressed with Huffman coding
// only (hub.DeflateHuffman), which needs no window: compress/flate cannot
// compress within a smaller one. The client's own window
// (client_max_window_bits) needs no answer: the server inflates any
// window up to 32 KiB. An offer with an unknown, repeated or invalid
// parameter is declined (RFC 7692, section 5), as is a header that cannot
// be parsed.
func negotiateDeflate(h http.Header) (response string, comp hub.Compression) {
	for _, v := range h.Values("Sec-WebSocket-Extensions") {
		var (
			offers  []httphead.Option
			current = -1
		)
		ok := httphead.ScanOptions([]byte(v), func(i int, name, attr, val []byte) httphead.Control {
			if i != current {
				current = i
				offers = append(offers, httphead.Option{Name: name})
			}
			if attr != nil {
				offers[len(offers)-1].Parameters.Set(attr, val)
			}
			return httphead.ControlContinue
		})
		if !ok {
			return "", hub.Uncompressed
		}
		for _, offer := range offers {
			if !strings.EqualFold(string(offer.Name), wsflate.ExtensionName) {
				continue
			}
			var p wsflate.Parameters
			if p.Parse(offer) != nil {
				continue
			}
			response = wsflate.ExtensionName + "; server_no_context_takeover; client_no_context_takeover"
			comp = hub.Deflate
			if bits := p.ServerMaxWindowBits; bits.Defined() {
				response += "; server_max_window_bits=" + strconv.Itoa(int(bits))
				if bits < 15 {
					comp = hub.DeflateHuffman
				}
			}
			return response, comp
		}
	}
	return "", hub.Uncompressed
}

// errBadDeflate refuses a compressed message that is not a deflate stream.
var errBadDeflate = &CloseError{protocol.CloseInvalidPayload, "invalid compressed data"}

// deflateTail ends a message's deflate stream for the reader: the
// 00 00 FF FF the sender removed (RFC 7692, section 7.2.2), then an empty
// final block, so that the reader sees where the message ends. Read only.
var deflateTail = []byte("\x00\x00\xff\xff\x01\x00\x00\xff\xff")

// inflater is a pooled flate reader and the source it reads: one is taken
// for each compressed message and given back once it is inflated, so a
// connection holds no inflate state (some 40 KB) between messages.
type inflater struct {
	r   io.ReadCloser // a flate reader on src
	src messageSource
}

var inflaters = sync.Pool{New: func() any {
	f := &inflater{}
	f.r = flate.NewReader(&f.src)
	return f
}}

// inflate returns the message whose compressed payload is compressed (the
// client's frames' payloads joined), refusing with 1009 a message that
// inflates to more than limit bytes: the size is checked as the message
// inflates, so a small payload that would inflate to gigabytes costs at
// most limit bytes (and what the buffer's doubling copied). The buffer
// starts at a guess and doubles, so a message allocates at most about
// twice its size. Data that is not a deflate stream is refused with 1007.
//
// An empty payload, which no deflate stream is (an empty message deflates
// to 0x00), is read as the empty message, as lenient peers do.
func inflate(compressed []byte, limit int64) ([]byte, error) {
	if len(compressed) == 0 {
		return []byte{}, nil
	}
	f := inflaters.Get().(*inflater)
	defer inflaters.Put(f)
	f.src = messageSource{a: compressed, b: deflateTail}
	defer func() { f.src = messageSource{} }()
	if err := f.r.(flate.Resetter).Reset(&f.src, nil); err != nil {
		return nil, errBadDeflate
	}
	out := make([]byte, 0, min(limit, int64(max(2*len(compressed), 512))))
	for {
		if len(out) == cap(out) {
			if int64(len(out)) >= limit {
				// Full at the limit: the message is too large if
				// anything but its end follows.
				var one [1]byte
				n, err := io.ReadFull(f.r, one[:])
				switch {
				case n > 0:
					return nil, errTooLarge
				case err == io.EOF:
					return out, nil
				default:
					return nil, errBadDeflate
				}
			}
			grown := make([]byte, len(out), min(limit, 2*int64(cap(out))))
			copy(grown, out)
			out = grown
		}
		n, err := f.r.Read(out[len(out):cap(out)])
		out = out[:len(out)+n]
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, errBadDeflate
		}
	}
}

// messageSource reads a compressed message, then the tail that ends its
// stream, without joining them. It is an io.ByteReader, so that the flate
// reader reads it directly instead of through a bufio.Reader of its own.
type messageSource struct{ a, b []byte }

func (s *messageSource) Read(p []byte) (int, error) {
	if len(s.a) == 0 {
		s.a, s.b = s.b, nil
		if len(s.a) == 0 {
			return 0, io.EOF
		}
	}
	n := copy(p, s.a)
	s.a = s.a[n:]
	return n, nil
}

func (s *messageSource) ReadByte() (byte, error) {
	if len(s.a) == 0 {
		s.a, s.b = s.b, nil
		if len(s.a) == 0 {
			return 0, io.EOF
		}
	}
	c := s.a[0]
	s.a = s.a[1:]
	return c, nil
}
