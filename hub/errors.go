package hub

import "errors"

// ErrClosing is returned for a new client or subscription while the hub is
// shutting down.
var ErrClosing = errors.New("hub: shutting down")

// ErrAlreadySubscribed is returned when a client subscribes to a channel it
// is already in.
var ErrAlreadySubscribed = errors.New("hub: already subscribed")

// ErrNotSubscribed is returned when a client leaves a channel it is not in.
var ErrNotSubscribed = errors.New("hub: not subscribed")

// ErrTooManySubscriptions is returned when a client is at
// Config.MaxSubscriptions.
var ErrTooManySubscriptions = errors.New("hub: too many subscriptions")
