package hub

import (
	"context"
	"encoding/json"
	"time"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/protocol"
)

// Tokens checks the tokens clients present. Its errors are what the client
// is told: a *protocol.Error with CodeUnauthorized whose message says what
// is wrong (token expired, invalid signature, token not yet valid,
// malformed token, invalid claims). It must be safe for concurrent use and
// must not block for long (it runs on the clients' readers).
type Tokens interface {
	// Identify checks a connection token and returns who it names, with
	// the channels it grants and when it expires.
	Identify(token string) (Identity, error)
	// Grant checks a subscription token and returns the user and the
	// channel it grants.
	Grant(token string) (user, channel string, err error)
}

// errNoTokens answers a token where the node checks none.
var errNoTokens = protocol.Errorf(protocol.CodeUnauthorized, "this server checks no tokens (no key is configured)")

// Identify checks a connection token with Config.Tokens, for a transport
// that got one with the upgrade.
func (h *Hub) Identify(token string) (Identity, error) {
	if h.cfg.Tokens == nil {
		return Identity{}, errNoTokens
	}
	return h.cfg.Tokens.Identify(token)
}

// Authenticate makes the client the user token names: the auth request of
// a client that connected without a token. It fails when the token does not
// check out (unauthorized, saying why) or the client already has a user
// (bad_request: that is a refresh).
func (c *Client) Authenticate(token string) (Identity, error) {
	if c.Identity().User != "" {
		return Identity{}, protocol.Errorf(protocol.CodeBadRequest, "already authenticated; send refresh with a new token")
	}
	id, err := c.hub.Identify(token)
	if err != nil {
		return Identity{}, err
	}
	c.setIdentity(id)
	return id, nil
}

// Refresh replaces the client's token with a later one for the same user,
// before the first expires (the client is closed with 4001 "token expired"
// otherwise).
func (c *Client) Refresh(token string) (Identity, error) {
	if c.Identity().User == "" {
		return Identity{}, protocol.Errorf(protocol.CodeUnauthorized, "not authenticated; send auth first")
	}
	id, err := c.hub.Identify(token)
	if err != nil {
		return Identity{}, err
	}
	if id.User != c.Identity().User {
		return Identity{}, protocol.Errorf(protocol.CodeForbidden, "a refresh token must name the connection's user")
	}
	if !id.Expires.After(c.Identity().Expires) {
		return Identity{}, protocol.Errorf(protocol.CodeBadRequest, "a refresh token must expire later than the token it replaces")
	}
	c.setIdentity(id)
	return id, nil
}

// SetIdentity makes the client id, for a dialect that authenticates its
// clients itself (a Pusher sign-in). It must be called from the reader.
func (c *Client) SetIdentity(id Identity) { c.setIdentity(id) }

// checkGrant checks a subscription token for channel: it must name the
// client's user and this channel.
func (c *Client) checkGrant(token, channel string) error {
	if c.hub.cfg.Tokens == nil {
		return errNoTokens
	}
	if c.Identity().User == "" {
		return protocol.Errorf(protocol.CodeUnauthorized, "a subscription token needs an authenticated connection")
	}
	user, granted, err := c.hub.cfg.Tokens.Grant(token)
	switch {
	case err != nil:
		return err
	case user != c.Identity().User:
		return protocol.Errorf(protocol.CodeForbidden, "the subscription token is for another user")
	case granted != channel:
		return protocol.Errorf(protocol.CodeForbidden, "the subscription token grants another channel")
	}
	return nil
}

// setIdentity makes the client id, and sets its deadline to the token's
// expiry. The reader calls it (or NewClient, before anyone else sees c).
func (c *Client) setIdentity(id Identity) {
	if id.User == "" && id.Expires.IsZero() && id.Info == nil && id.Channels == nil && id.Publish == nil {
		c.ident.Store(nil)
	} else {
		c.ident.Store(&id)
	}
	if id.Expires.IsZero() {
		c.setDeadline(time.Time{}, deadlineNone)
	} else {
		c.setDeadline(id.Expires.Add(c.hub.cfg.TokenLeeway), deadlineExpired)
	}
}

// The reasons a client is closed at its deadline, as Client.deadlineWhy
// holds them.
const (
	deadlineNone    uint8 = iota
	deadlineExpired       // its token expired
	deadlineNoToken       // it did not authenticate in time
)

// deadlineReasons are the close reasons of the deadline* constants.
var deadlineReasons = [...]string{
	deadlineNone:    "",
	deadlineExpired: "token expired",
	deadlineNoToken: "no valid token",
}

// setDeadline closes the client with 4001 and the reason why at t (never
// when t is zero).
func (c *Client) setDeadline(t time.Time, why uint8) {
	c.mu.Lock()
	c.deadlineWhy = why
	c.mu.Unlock()
	if t.IsZero() {
		c.deadline.Store(0)
	} else {
		c.deadline.Store(t.UnixNano())
	}
}

// deadlineLoop closes, once a second, the clients past their deadline: a
// token expired without a refresh, or no token in time. The hub owns it;
// it ends at Shutdown.
func (h *Hub) deadlineLoop() {
	defer h.done.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case now := <-t.C:
			for _, c := range h.snapshot() {
				if d := c.deadline.Load(); d != 0 && d <= now.UnixNano() {
					c.deadline.Store(0)
					c.mu.Lock()
					why := deadlineReasons[c.deadlineWhy]
					c.mu.Unlock()
					c.Close(protocol.CloseUnauthorized, why)
				}
			}
		}
	}
}

// controlChannel is the broker channel on which nodes tell each other what
// to do with a user's connections. '#' is not allowed in channel names, so
// no client can subscribe or publish to it.
const controlChannel = "#control"

// controlRetry is how often subscribeControl looks whether the broker is
// ready.
const controlRetry = 50 * time.Millisecond

// subscribeControl subscribes the control channel once the broker is
// ready, for a Start that could not. It runs on a goroutine of its own,
// counted in h.done, until it succeeds or Shutdown. The broker logs its
// own retries; this only waits for them.
func (h *Hub) subscribeControl() {
	defer h.done.Done()
	t := time.NewTicker(controlRetry)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		if h.readier != nil && h.readier.Ready() != nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), h.cfg.RequestTimeout)
		err := h.broker.Subscribe(ctx, controlChannel)
		cancel()
		if err != nil {
			h.controlErr.Store(&err)
			h.log.Debug("cannot subscribe the control channel yet", "err", err)
			continue
		}
		h.controlErr.Store(nil)
		h.log.Info("broker ready")
		return
	}
}

// control is one order on the control channel.
type control struct {
	Op      string `json:"op"` // "disconnect" or "unsubscribe"
	User    string `json:"user"`
	Channel string `json:"channel,omitempty"`
}

// DisconnectUser closes every connection of user, on every node, with 4001
// "disconnected".
func (h *Hub) DisconnectUser(ctx context.Context, user string) error {
	return h.order(ctx, control{Op: "disconnect", User: user})
}

// UnsubscribeUser ends user's subscriptions to channel, on every node;
// each connection is told with its dialect's unsubscribed event (a raw
// connection, which has no other channel, is closed with 4001).
func (h *Hub) UnsubscribeUser(ctx context.Context, user, channel string) error {
	return h.order(ctx, control{Op: "unsubscribe", User: user, Channel: channel})
}

func (h *Hub) order(ctx context.Context, o control) error {
	if o.User == "" {
		return protocol.Errorf(protocol.CodeBadRequest, "user is missing")
	}
	if o.Op == "unsubscribe" {
		if perr := protocol.ChannelError(o.Channel); perr != nil {
			return perr
		}
	}
	b, err := json.Marshal(o)
	if err != nil {
		return err
	}
	_, err = h.broker.Publish(ctx, controlChannel, b, broker.PublishOptions{})
	return h.seen(o.Op+" a user", o.Channel, err)
}

// handleControl carries out an order on this node's clients.
func (h *Hub) handleControl(m broker.Message) {
	var o control
	if err := json.Unmarshal(m.Data, &o); err != nil || o.User == "" {
		h.log.Warn("an order on the control channel that is not one was dropped")
		return
	}
	for _, c := range h.snapshot() {
		if c.User() != o.User {
			continue
		}
		switch o.Op {
		case "disconnect":
			c.Close(protocol.CloseUnauthorized, "disconnected")
		case "unsubscribe":
			c.revoke(o.Channel)
		}
	}
}

// revoke ends the client's subscription to channel on the server's
// initiative, telling it with its dialect's unsubscribed event, or closing
// it with 4001 when the dialect has none.
func (c *Client) revoke(channel string) {
	if !c.leave(channel) {
		return
	}
	f := c.dialect.EventFrame(Event{Op: "unsubscribed", Channel: channel, Reason: "permission revoked"})
	c.hub.unsubscribe(c, channel, f)
	if f == nil {
		c.Close(protocol.CloseUnauthorized, "permission revoked")
	}
}
