// Package native is the native dialect of PROTOCOL.md: JSON requests and
// replies on /ws, many channels per connection, history and recovery,
// presence. It is a hub.Dialect built on the hub's public verbs.
//
// A Dialect is stateless and safe for concurrent use; the hub calls its
// handlers from each client's reader, one message at a time.
package native

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/protocol"
	"github.com/switchboard-rt/switchboard/transport"
	"github.com/switchboard-rt/switchboard/wsframe"
)

// ProtocolVersion is the native protocol version sent in the welcome frame.
const ProtocolVersion = 1

// Dialect is the native dialect.
type Dialect struct{}

// New returns the native dialect.
func New() *Dialect { return &Dialect{} }

var _ transport.Dialect = (*Dialect)(nil)

// Name returns "native".
func (*Dialect) Name() string { return "native" }

// Accept queues the welcome frame, the first a native client receives.
func (*Dialect) Accept(_ context.Context, _ *http.Request, c *hub.Client) error {
	h := c.Hub()
	b := protocol.AppendWelcome(wsframe.Start(128), ProtocolVersion, c.ID(), h.NodeID(), h.PingInterval().Milliseconds())
	c.Send(wsframe.Finish(b, wsframe.OpText))
	return nil
}

// MessageFrame encodes a message event; binary data as base64, with
// "encoding":"base64".
func (*Dialect) MessageFrame(m broker.Message) []byte {
	size := len(m.Data)
	if m.Binary {
		size = (size+2)/3*4 + 22
	}
	b := wsframe.Start(size + len(m.Channel) + 64)
	b = protocol.AppendMessage(b, m.Channel, m.Data, m.Binary, wirePosition(m.Pos), m.Time)
	return wsframe.Finish(b, wsframe.OpText)
}

// EventFrame encodes a join or leave event as its JSON.
func (*Dialect) EventFrame(e hub.Event) []byte {
	b, err := json.Marshal(e)
	if err != nil {
		return nil
	}
	return wsframe.Text(b)
}

// GoingAway is 1012 "server restarting": the client reconnects to another
// node after a short random delay.
func (*Dialect) GoingAway() (int, string) { return protocol.CloseRestarting, "server restarting" }

// HandleText answers one request. A client over its rate gets
// rate_limited, and one that keeps sending regardless is closed with 4029.
func (d *Dialect) HandleText(c *hub.Client, payload []byte) {
	limited := !c.Allow()
	req, perr := protocol.DecodeRequest(payload)
	if limited {
		if c.Flooding() {
			c.Close(protocol.CloseRateLimited, "rate limited")
			return
		}
		replyError(c, req.ID, protocol.Errorf(protocol.CodeRateLimited, "too many requests; slow down"))
		return
	}
	if perr != nil {
		replyError(c, req.ID, perr)
		return
	}
	switch req.Op {
	case protocol.OpPing:
		reply(c, protocol.AppendOK(replyStart(), req.ID))
	case protocol.OpPublish:
		publish(c, req)
	case protocol.OpSubscribe:
		subscribe(c, req)
	case protocol.OpUnsubscribe:
		unsubscribe(c, req)
	case protocol.OpHistory:
		history(c, req)
	case protocol.OpPresence:
		presence(c, req)
	case protocol.OpAuth:
		authenticate(c, req, c.Authenticate)
	case protocol.OpRefresh:
		authenticate(c, req, c.Refresh)
	}
}

// HandleBinary answers a binary frame with bad_request: native clients
// send JSON in text frames. (They receive binary data other dialects
// publish, as base64.)
func (*Dialect) HandleBinary(c *hub.Client, _ []byte) {
	replyError(c, 0, protocol.Errorf(protocol.CodeBadRequest, "binary frames are not supported; send JSON in text frames"))
}

func publish(c *hub.Client, req protocol.Request) {
	ctx, cancel := c.RequestContext()
	defer cancel()
	pos, err := c.Publish(ctx, req.Channel, req.Data, hub.WithIdempotencyKey(req.IdempotencyKey))
	if err != nil {
		replyError(c, req.ID, hub.ErrorOf(err))
		return
	}
	reply(c, protocol.AppendPositionReply(replyStart(), req.ID, wirePosition(pos), nil))
}

func subscribe(c *hub.Client, req protocol.Request) {
	ctx, cancel := c.RequestContext()
	defer cancel()
	o := hub.SubscribeOptions{Token: req.Token, Reply: func(pos broker.Position, recovered *bool) []byte {
		return wsframe.Finish(protocol.AppendPositionReply(replyStart(), req.ID, wirePosition(pos), recovered), wsframe.OpText)
	}}
	if req.Since != nil {
		o.Since = &broker.Position{Epoch: req.Since.Epoch, Offset: req.Since.Offset}
	}
	if err := c.Subscribe(ctx, req.Channel, o); err != nil {
		replyError(c, req.ID, hub.ErrorOf(err))
	}
}

func unsubscribe(c *hub.Client, req protocol.Request) {
	ok := wsframe.Finish(protocol.AppendOK(replyStart(), req.ID), wsframe.OpText)
	if err := c.Unsubscribe(req.Channel, ok); err != nil {
		replyError(c, req.ID, hub.ErrorOf(err))
	}
}

func history(c *hub.Client, req protocol.Request) {
	ctx, cancel := c.RequestContext()
	defer cancel()
	res, err := c.History(ctx, req.Channel, req.Limit)
	if err != nil {
		replyError(c, req.ID, hub.ErrorOf(err))
		return
	}
	reply(c, protocol.AppendHistoryReply(replyStart(), req.ID, wirePosition(res.Pos), len(res.Messages),
		func(i int) (uint64, []byte, bool, int64) {
			m := &res.Messages[i]
			return m.Pos.Offset, m.Data, m.Binary, m.Time
		}))
}

func presence(c *hub.Client, req protocol.Request) {
	ctx, cancel := c.RequestContext()
	defer cancel()
	entries, err := c.Presence(ctx, req.Channel)
	if err != nil {
		replyError(c, req.ID, hub.ErrorOf(err))
		return
	}
	reply(c, protocol.AppendPresenceReply(replyStart(), req.ID, len(entries),
		func(i int) (string, string, []byte) { return entries[i].Client, entries[i].User, entries[i].Info }))
}

// authenticate answers auth and refresh: the user (auth) and the token's
// expiry.
func authenticate(c *hub.Client, req protocol.Request, verb func(token string) (hub.Identity, error)) {
	id, err := verb(req.Token)
	if err != nil {
		replyError(c, req.ID, hub.ErrorOf(err))
		return
	}
	user := id.User
	if req.Op == protocol.OpRefresh {
		user = ""
	}
	reply(c, protocol.AppendAuthReply(replyStart(), req.ID, user, id.Expires.Unix()))
}

func replyStart() []byte { return wsframe.Start(64) }

func reply(c *hub.Client, b []byte) { c.Send(wsframe.Finish(b, wsframe.OpText)) }

func replyError(c *hub.Client, id uint64, e *protocol.Error) {
	reply(c, protocol.AppendError(replyStart(), id, e))
}

func wirePosition(p broker.Position) protocol.Position {
	return protocol.Position{Epoch: p.Epoch, Offset: p.Offset}
}
