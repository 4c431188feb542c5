// Package httpapi serves switchboard's HTTP API (PROTOCOL.md): publishing
// and broadcasting from back ends, the channel list, health, readiness and
// Prometheus metrics. Every error is a JSON body {"error":{"code","message"}}
// with the protocol's codes, written by one function (writeError).
//
// A Handler is safe for concurrent use.
package httpapi
