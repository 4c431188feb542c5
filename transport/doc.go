// Package transport carries hub clients over WebSocket connections: the
// upgrade (with its origin check), the read loop that turns frames into
// hub.Client.HandleFrame calls, and the hub.Transport that writes a batch of
// queued frames in one writev.
//
// Framing uses github.com/gobwas/ws at its lowest level (headers and
// masking), so the server owns its buffers and its write path: server frames
// are encoded once by the hub and written as they are to every subscriber.
//
// After the upgrade, ServeNative and ServeRaw start the connection's read
// loop on a goroutine of its own and return, so the HTTP handler's grown
// stack is freed: an idle connection costs its reader's small stack, a few
// hundred bytes of state, and no buffer (frames are read straight from the
// socket). The read loop ends with the connection and calls the client's
// Finish; the hub waits for every client at Shutdown. A Server is safe for
// concurrent use.
package transport
