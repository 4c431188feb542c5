package redis

import "errors"

// ErrNotStarted is returned by a Broker used before Start.
var ErrNotStarted = errors.New("redis: broker not started")

// ErrAuth is wrapped by the error of a connection Redis refused for its
// credentials (NOAUTH, WRONGPASS).
var ErrAuth = errors.New("redis: authentication failed (check the user and password in the Redis URL)")

// ErrCluster is wrapped by the error of a connection to a Redis Cluster
// node, which the broker does not support yet.
var ErrCluster = errors.New("redis: Redis Cluster is not supported yet (use a single Redis server, not a cluster node)")
