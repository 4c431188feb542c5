// Package e2e holds the multi-process end-to-end tests: they build the
// switchboard binary, start redis-server processes and several instances on
// free loopback ports, connect real WebSocket clients (directly or through
// nginx), and kill processes on purpose. It has no non-test code.
package e2e
