// Package redistest runs real redis-server processes for tests.
//
// Start launches a redis-server on a free loopback port in a t.TempDir, waits
// until it answers PING, and stops it when the test ends. The returned
// Server can be killed (SIGKILL, as a crash would) and restarted on the same
// port, with or without persistence, to test what a broker does when Redis
// goes away and comes back. New reserves a port without starting anything
// there, for tests of what starts before its Redis; Restart then starts it.
// Options.Cluster makes the server a Redis Cluster node owning every slot.
// StartCluster builds a real cluster (primaries with replicas, redis-cli
// --cluster create) and waits until it is settled; Cluster.MoveSlot,
// Failover and KillPrimary change it under a running test.
// It never touches a Redis on the default port 6379.
//
// A missing redis-server binary fails the test with an install hint rather
// than skipping it: Redis tests are part of the default test run. The
// REDIS_SERVER environment variable may name the binary to use.
//
// A Server is safe for concurrent use.
package redistest
