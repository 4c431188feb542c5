// Package natstest runs real nats-server processes, with JetStream, for
// tests.
//
// Start launches a nats-server -js on a free loopback port, its JetStream
// store in a t.TempDir, waits until it accepts connections and reports
// JetStream ready (the /healthz monitoring endpoint), and stops it when the
// test ends. The returned Server can be stopped gracefully (SIGTERM), killed
// (SIGKILL, as a crash would) and restarted on the same port, with its store
// kept (file storage survives) or wiped (Wipe), to test what a broker does
// when NATS goes away and comes back. New reserves the ports without
// starting anything, for tests of what starts before its NATS. It never
// touches a NATS on the default port 4222.
//
// A missing nats-server binary fails the test with an install hint rather
// than skipping it: NATS tests are part of the default test run. The
// NATS_SERVER environment variable may name the binary to use.
//
// A Server is safe for concurrent use.
package natstest
