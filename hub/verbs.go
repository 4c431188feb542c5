package hub

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/protocol"
	"github.com/switchboard-rt/switchboard/wsframe"
)

// This file holds what a dialect does with a client: the verbs its
// handlers call for a request, each checked with the hub's Authorizer, and
// the frames it sends.

// HandleText hands a complete text message the client sent to its
// dialect. The transport's reader calls it, one message at a time.
func (c *Client) HandleText(payload []byte) { c.dialect.HandleText(c, payload) }

// HandleBinary hands a complete binary message to the dialect.
func (c *Client) HandleBinary(payload []byte) { c.dialect.HandleBinary(c, payload) }

// SubscribeOptions are the optional parts of a subscribe.
type SubscribeOptions struct {
	// Since, when not nil, asks for the messages after this position:
	// they are queued after the reply and before the live ones.
	Since *broker.Position
	// Reply, when not nil, builds the frame that answers the subscribe;
	// it is queued before any message of the channel.
	Reply ReplyFunc
	// Token, when set, is a subscription token: the application's grant
	// of this one channel to this client's user, which stands in for the
	// Authorizer's answer.
	Token string
	// Granted says the dialect has checked the client's right to the
	// channel itself (a Pusher channel's signature): the Authorizer is not
	// asked.
	Granted bool
	// Member, when not nil, is who the client is in this channel's
	// presence, in place of its identity (a Pusher presence channel's
	// channel_data).
	Member *Member
	// Last, on a channel with history, queues the newest Last messages of
	// its history after the reply and before the live ones (a Pusher cache
	// channel's last event); the reply's recovered says whether there was
	// any.
	Last int
}

// Member is who a client is in one channel's presence.
type Member struct {
	User string
	Info json.RawMessage
}

// Subscribe makes the client a subscriber of channel: the messages
// published from now on are queued to it, after the reply (o.Reply), and
// with o.Since after the messages it missed. It fails with a
// *protocol.Error the client may be told: bad_request (a bad name, or
// already subscribed), limit_exceeded, what the Authorizer says, or an
// error ErrorOf maps (the broker unavailable...).
func (c *Client) Subscribe(ctx context.Context, channel string, o SubscribeOptions) error {
	if perr := protocol.ChannelError(channel); perr != nil {
		return perr
	}
	c.mu.Lock()
	_, dup := c.subs[channel]
	n := len(c.subs)
	c.mu.Unlock()
	if dup {
		return protocol.Errorf(protocol.CodeBadRequest, "already subscribed to "+channel)
	}
	if n >= c.hub.cfg.MaxSubscriptions {
		return protocol.Errorf(protocol.CodeLimitExceeded, "too many subscriptions on this connection")
	}
	switch {
	case o.Granted:
	case o.Token != "":
		if err := c.checkGrant(o.Token, channel); err != nil {
			return err
		}
	default:
		if err := c.authorize(ActionSubscribe, channel); err != nil {
			return err
		}
	}
	// Recorded first: joining announces the client with its member.
	c.mu.Lock()
	if c.subs == nil {
		c.subs = make(map[string]*Member)
	}
	c.subs[channel] = o.Member
	c.mu.Unlock()
	if err := c.hub.subscribe(ctx, c, channel, o); err != nil {
		c.leave(channel)
		return err
	}
	return nil
}

// Unsubscribe ends the client's subscription to channel. reply, when not
// nil, is queued in the same step, so that no message of the channel
// follows it. It fails with not_found when the client is not subscribed.
func (c *Client) Unsubscribe(channel string, reply []byte) error {
	if !c.leave(channel) {
		return protocol.Errorf(protocol.CodeNotFound, "not subscribed to "+channel)
	}
	c.hub.unsubscribe(c, channel, reply)
	return nil
}

// leave takes channel out of the client's subscriptions; false when it was
// not in.
func (c *Client) leave(channel string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.subs[channel]; !ok {
		return false
	}
	delete(c.subs, channel)
	return true
}

// Subscribed reports whether the client is subscribed to channel.
func (c *Client) Subscribed(channel string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.subs[channel]
	return ok
}

// Publish publishes data, one JSON value (any bytes with AsBinary), to
// channel for the client, if the Authorizer lets it (a refusal is counted);
// see Hub.Publish.
func (c *Client) Publish(ctx context.Context, channel string, data []byte, options ...PublishOption) (broker.Position, error) {
	if err := c.authorize(ActionPublish, channel); err != nil {
		c.hub.stats.publishForbidden.Add(1)
		return broker.Position{}, err
	}
	return c.hub.Publish(ctx, channel, data, options...)
}

// History reads channel's history for the client, if the Authorizer lets
// it; see Hub.History.
func (c *Client) History(ctx context.Context, channel string, limit int) (broker.HistoryResult, error) {
	if err := c.authorizeRead(ActionHistory, channel); err != nil {
		return broker.HistoryResult{}, err
	}
	return c.hub.History(ctx, channel, limit)
}

// Presence lists who is in channel for the client, if the Authorizer lets
// it; see Hub.Presence.
func (c *Client) Presence(ctx context.Context, channel string) ([]broker.PresenceEntry, error) {
	if err := c.authorizeRead(ActionPresence, channel); err != nil {
		return nil, err
	}
	return c.hub.Presence(ctx, channel)
}

func (c *Client) authorize(a Action, channel string) error {
	return c.hub.auth.Authorize(c.Identity(), a, channel)
}

// authorizeRead asks about reading a channel's history or presence: a
// client subscribed to the channel may (it receives its messages anyway,
// perhaps by a subscription token the Authorizer knows nothing of).
func (c *Client) authorizeRead(a Action, channel string) error {
	if c.Subscribed(channel) {
		return nil
	}
	return c.authorize(a, channel)
}

// SetAlias gives the client a second name, which a publish's Skip may use
// to leave it out (a Pusher socket_id). Set it before the client
// subscribes.
func (c *Client) SetAlias(alias string) {
	c.mu.Lock()
	c.alias = alias
	c.mu.Unlock()
}

// skips reports whether m must not go to c.
func (c *Client) skips(m *broker.Message) bool {
	return m.Skip != "" && (m.Skip == c.id || m.Skip == c.alias)
}

// MemberOf returns the user the client is in channel's presence (its
// subscription's Member, or its identity's user).
func (c *Client) MemberOf(channel string) string {
	u, _ := c.member(channel)
	return u
}

// member returns who the client is in channel's presence, from any
// goroutine.
func (c *Client) member(channel string) (string, json.RawMessage) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m := c.subs[channel]; m != nil {
		return m.User, m.Info
	}
	id := c.Identity()
	return id.User, id.Info
}

// Send queues a frame (a whole WebSocket frame, see package wsframe) to the
// client, a dialect's reply to what the client sent: the adaptive write
// delay does not hold it. It returns false when the client is closed or its
// queue overflowed (the client is then closed with 4008). It never blocks
// on the network; frame must not be modified afterwards.
func (c *Client) Send(frame []byte) bool { return c.reply(frame) }

// Pong answers a client's ping with a pong carrying the same payload.
func (c *Client) Pong(payload []byte) {
	c.reply(wsframe.Control(wsframe.OpPong, payload))
}

// Closed reports whether the client is closing or closed: frames it sends
// from then on are ignored.
func (c *Client) Closed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// ErrorOf maps an error from the hub or the broker to the protocol error a
// client or an HTTP caller is told; nothing internal leaks into the message.
//
// broker.ErrUnavailable becomes unavailable. Beware that such a request
// may still have taken effect: a publish whose connection to the broker
// broke after it was sent may have been published. That is what
// idempotency keys are for.
func ErrorOf(err error) *protocol.Error {
	var perr *protocol.Error
	switch {
	case errors.As(err, &perr):
		return perr
	case errors.Is(err, broker.ErrUnavailable), errors.Is(err, broker.ErrClosed),
		errors.Is(err, context.DeadlineExceeded):
		return protocol.Errorf(protocol.CodeUnavailable, "the message broker cannot be reached; try again")
	case errors.Is(err, ErrClosing):
		return protocol.Errorf(protocol.CodeUnavailable, "the server is shutting down")
	default:
		return protocol.Errorf(protocol.CodeInternal, "internal error")
	}
}
