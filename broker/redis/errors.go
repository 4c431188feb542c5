package redis

import "errors"

// ErrNotStarted is returned by a Broker used before Start.
var ErrNotStarted = errors.New("redis: broker not started")
