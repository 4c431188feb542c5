package broker

import "errors"

// ErrUnavailable is wrapped by every error a broker returns because it cannot
// reach its backend. The request had no effect.
var ErrUnavailable = errors.New("broker: unavailable")

// ErrClosed is returned by a broker used after Close.
var ErrClosed = errors.New("broker: closed")
