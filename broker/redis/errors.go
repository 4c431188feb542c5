package redis

import "errors"

// ErrNotStarted is returned by a Broker used before Start.
var ErrNotStarted = errors.New("redis: broker not started")

// ErrAuth is wrapped by the error of a connection Redis refused for its
// credentials (NOAUTH, WRONGPASS).
var ErrAuth = errors.New("redis: authentication failed (check the user and password in the Redis URL)")

// ErrCluster is wrapped by the errors of a Redis Cluster that cannot serve
// a channel: no primary owns its hash slot, the topology cannot be read,
// or seed addresses were given that are not cluster nodes.
var ErrCluster = errors.New("redis: Redis Cluster cannot serve")
