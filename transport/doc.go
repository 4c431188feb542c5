// Package transport carries hub clients over WebSocket connections: the
// upgrade (with its origin check) into a connection of a Dialect, the read
// loop whose frame assembler turns frames into messages for
// hub.Client.HandleText and HandleBinary, and the hub.Transport that writes a
// batch of queued frames in one writev.
//
// Framing uses github.com/gobwas/ws at its lowest level (headers and
// masking), so the server owns its buffers and its write path: server frames
// are encoded once by the hub and written as they are to every subscriber.
//
// After the upgrade, Serve reads what the client already
// sent, then park the connection in the server's epoll set and return: an
// idle connection holds no goroutine, no stack and no buffer, only its
// session (a few hundred bytes) and the hub client. A readable socket gets a
// short-lived reader goroutine that reads its frames through a pooled buffer
// and parks it again once the buffer is empty (after up to a second of
// quiet for a client that sends often). The poller (poll_linux.go) also
// closes parked connections silent past the read timeout. Where epoll is
// missing, or on a socket without a file descriptor (TLS), the reader keeps
// a goroutine of its own. Whoever ends a session (the reader on a read
// error, or the transport's Close for a parked one) calls the client's
// Finish, exactly once; the hub waits for every client at Shutdown. A Server
// is safe for concurrent use.
//
// With Config.Compression the upgrade accepts permessage-deflate (RFC 7692)
// without context takeover (deflate.go): the assembler inflates a
// compressed message with a pooled reader, bounded by the message limit as
// it inflates, and the hub compresses each message once for all the
// clients that negotiated it. No flate state outlives a message, so an idle
// connection costs the same with compression.
//
// URing (uring_linux.go) is the hub.BatchWriter of hub.Config.IOURing
// (the binary's default on Linux): one per writer goroutine of the hub's pool, it writes
// the frames of many of the transport's plain sockets with one
// io_uring_enter, each send non-blocking like TryWriteFrames. NewBatchWriter
// fails where io_uring is unavailable, and the hub then writes as without
// it.
package transport
