// Package transport carries hub clients over WebSocket connections: the
// upgrade (with its origin check), the read loop that turns frames into
// hub.Client.HandleFrame calls, and the hub.Transport that writes a batch of
// queued frames in one writev.
//
// Framing uses github.com/gobwas/ws at its lowest level (headers and
// masking), so the server owns its buffers and its write path: server frames
// are encoded once by the hub and written as they are to every subscriber.
//
// The read loop runs in the HTTP handler's goroutine, which after the
// upgrade belongs to the connection: ServeNative and ServeRaw return when
// the connection has ended and its client is finished. A Server is safe for
// concurrent use.
package transport
