// Package protocol is the native wire format of switchboard (PROTOCOL.md):
// channel-name rules, the requests a client sends, the replies and events the
// server sends, and the error and close codes both sides share.
//
// Decoding takes the common request shape without reflection and leaves
// every other frame to encoding/json, which words its errors; encoding
// appends to caller-owned byte slices so the hot paths (a message event, a
// reply) allocate nothing of their own. The package depends only on the standard library, and everything in it
// is safe for concurrent use.
package protocol
