package broker

import "errors"

// ErrUnavailable is wrapped by every error a broker returns because it cannot
// reach its backend. Most often the request had no effect, but not always:
// when the connection broke or the deadline passed after the command was
// sent, the backend may have carried it out (a publish may have been
// published). A caller that must not repeat an effect retries with an
// idempotency key (PublishOptions.IdempotencyKey).
var ErrUnavailable = errors.New("broker: unavailable")

// ErrClosed is returned by a broker used after Close.
var ErrClosed = errors.New("broker: closed")
