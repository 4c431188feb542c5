package hub

import "compress/flate"

// Compression is how the message frames a client receives are compressed:
// the permessage-deflate (RFC 7692) its transport negotiated, without
// context takeover, so that each message is compressed on its own and one
// compressed frame serves every subscriber that negotiated the same. Only
// messages are compressed (once per message, in the fan-out); replies,
// events, recovered messages and control frames go as they are, which the
// extension allows message by message.
type Compression uint8

const (
	// Uncompressed sends frames as the dialect encodes them.
	Uncompressed Compression = iota
	// Deflate compresses messages with compress/flate's 32 KiB window
	// (flate.BestSpeed).
	Deflate
	// DeflateHuffman compresses messages with Huffman coding only, with
	// no back-references: for a client that limits the server's window
	// (server_max_window_bits below 15), which compress/flate cannot do.
	DeflateHuffman

	numCompressions = iota
)

// level is the compress/flate level of the compression.
func (c Compression) level() int {
	if c == DeflateHuffman {
		return flate.HuffmanOnly
	}
	return flate.BestSpeed
}

// SetCompression sets how the client's messages are compressed, as its
// transport negotiated (Uncompressed at first). The transport sets it
// once, before the connection opens; it is safe from any goroutine.
func (c *Client) SetCompression(comp Compression) {
	if comp >= numCompressions {
		comp = Uncompressed
	}
	c.compression.Store(uint32(comp))
}

// Compression returns how the client's messages are compressed.
func (c *Client) Compression() Compression { return Compression(c.compression.Load()) }
