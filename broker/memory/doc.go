// Package memory is the in-process broker: one node, no setup, the default.
// It keeps each channel's history in a ring, so recovery works on one node
// exactly as it does with Redis, and it passes the same conformance suite
// (broker/brokertest).
//
// Publish hands a message to the Handler synchronously, holding that
// channel's lock, so one channel's messages are handled one at a time and in
// offset order while different channels proceed in parallel: no two channels
// share a lock while a Handler runs. The Handler must therefore not call back
// into the broker for the same channel.
//
// Memory is bounded: a channel's history keeps at most HistorySize messages,
// and a history that saw no publish for HistoryTTL is dropped, lazily on the
// next use of the channel and by a janitor goroutine that Start starts and
// Close stops. A channel with neither subscription nor history costs nothing.
//
// A Broker is safe for concurrent use.
package memory
