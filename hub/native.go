package hub

import (
	"context"
	"encoding/json"
	"errors"
	"unicode/utf8"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/protocol"
)

// ProtocolVersion is the native protocol version sent in the welcome frame.
const ProtocolVersion = 1

// Welcome queues the native welcome frame; the transport calls it before
// Attach.
func (c *Client) Welcome() {
	b := protocol.AppendWelcome(frameBuf(128), ProtocolVersion, c.id, c.hub.cfg.NodeID, c.hub.cfg.PingInterval.Milliseconds())
	c.enqueue(finishFrame(b, opText))
}

// HandleFrame handles one complete text frame read from the client: a
// native request, or a raw message to publish. It returns when the request
// is answered, so replies keep the order of requests.
//
// A client over Config.ClientRate is refused: a native request gets
// rate_limited, and a native client that goes on sending regardless is
// closed with 4029, as a raw connection is at once.
func (c *Client) HandleFrame(payload []byte) {
	limited := !c.allow()
	if limited {
		c.hub.stats.RateLimited.Add(1)
	}
	if c.dialect == Raw {
		if limited {
			c.Close(protocol.CloseRateLimited, "rate limited")
			return
		}
		c.handleRaw(payload)
		return
	}
	req, perr := protocol.DecodeRequest(payload)
	if limited {
		if c.flooding() {
			c.Close(protocol.CloseRateLimited, "rate limited")
			return
		}
		c.replyError(req.ID, protocol.Errorf(protocol.CodeRateLimited, "too many requests; slow down"))
		return
	}
	if perr != nil {
		c.replyError(req.ID, perr)
		return
	}
	switch req.Op {
	case protocol.OpPing:
		c.replyOK(req.ID)
	case protocol.OpPublish:
		c.handlePublish(req)
	case protocol.OpSubscribe:
		c.handleSubscribe(req)
	case protocol.OpUnsubscribe:
		c.handleUnsubscribe(req)
	case protocol.OpHistory:
		c.handleHistory(req)
	case protocol.OpPresence:
		c.handlePresence(req)
	}
}

// HandleBinary answers a binary frame on a native connection; the native
// dialect is text only.
func (c *Client) HandleBinary() {
	c.replyError(0, protocol.Errorf(protocol.CodeBadRequest, "binary frames are not supported; send JSON in text frames"))
}

func (c *Client) handlePublish(req protocol.Request) {
	ctx, cancel := c.requestContext()
	defer cancel()
	pos, err := c.publish(ctx, req.Channel, req.Data, WithIdempotencyKey(req.IdempotencyKey))
	if err != nil {
		c.replyError(req.ID, ErrorOf(err))
		return
	}
	c.reply(protocol.AppendPositionReply(c.replyStart(), req.ID, wirePosition(pos), nil))
}

func (c *Client) handleSubscribe(req protocol.Request) {
	if _, ok := c.subs[req.Channel]; ok {
		c.replyError(req.ID, protocol.Errorf(protocol.CodeBadRequest, "already subscribed to "+req.Channel))
		return
	}
	if len(c.subs) >= c.hub.cfg.MaxSubscriptions {
		c.replyError(req.ID, protocol.Errorf(protocol.CodeLimitExceeded, "too many subscriptions on this connection"))
		return
	}
	ctx, cancel := c.requestContext()
	defer cancel()
	var since *broker.Position
	if req.Since != nil {
		since = &broker.Position{Epoch: req.Since.Epoch, Offset: req.Since.Offset}
	}
	reply := func(pos broker.Position, recovered *bool) []byte {
		return finishFrame(protocol.AppendPositionReply(frameBuf(64), req.ID, wirePosition(pos), recovered), opText)
	}
	if err := c.hub.subscribe(ctx, c, req.Channel, since, reply); err != nil {
		c.replyError(req.ID, ErrorOf(err))
		return
	}
	if c.subs == nil {
		c.subs = make(map[string]struct{})
	}
	c.subs[req.Channel] = struct{}{}
}

func (c *Client) handleUnsubscribe(req protocol.Request) {
	if _, ok := c.subs[req.Channel]; !ok {
		c.replyError(req.ID, protocol.Errorf(protocol.CodeNotFound, "not subscribed to "+req.Channel))
		return
	}
	delete(c.subs, req.Channel)
	c.hub.unsubscribe(c, req.Channel, finishFrame(protocol.AppendOK(frameBuf(32), req.ID), opText))
}

func (c *Client) handleHistory(req protocol.Request) {
	ctx, cancel := c.requestContext()
	defer cancel()
	res, err := c.hub.History(ctx, req.Channel, req.Limit)
	if err != nil {
		c.replyError(req.ID, ErrorOf(err))
		return
	}
	b := protocol.AppendHistoryReply(c.replyStart(), req.ID, wirePosition(res.Pos), len(res.Messages),
		func(i int) (uint64, []byte) { return res.Messages[i].Pos.Offset, res.Messages[i].Data })
	c.reply(b)
}

func (c *Client) handlePresence(req protocol.Request) {
	ctx, cancel := c.requestContext()
	defer cancel()
	entries, err := c.hub.Presence(ctx, req.Channel)
	if err != nil {
		c.replyError(req.ID, ErrorOf(err))
		return
	}
	b := protocol.AppendPresenceReply(c.replyStart(), req.ID, len(entries),
		func(i int) (string, string) { return entries[i].Client, entries[i].User })
	c.reply(b)
}

// SubscribeRaw subscribes a raw client to its one channel. The transport
// calls it before it completes the WebSocket upgrade, so the connection
// receives every message published after it opened.
func (c *Client) SubscribeRaw(ctx context.Context, channel string) error {
	if err := c.hub.subscribe(ctx, c, channel, nil, nil); err != nil {
		return err
	}
	c.rawChannel = channel
	return nil
}

// handleRaw publishes a raw text frame, byte for byte, as a JSON string.
// A frame that cannot be published (the broker is away, or the channel's
// namespace does not let clients publish) is dropped, counted and logged
// at most once a second: the raw dialect has no replies.
func (c *Client) handleRaw(text []byte) {
	data := protocol.AppendString(make([]byte, 0, len(text)+2), string(text))
	ctx, cancel := c.requestContext()
	defer cancel()
	if _, err := c.publish(ctx, c.rawChannel, data); err != nil {
		c.hub.stats.RawPublishDropped.Add(1)
		c.hub.warnRawDrop(c.rawChannel, err)
	}
}

// publish publishes data to channel for the client, in any dialect: the
// one place where a client's publish is checked against the channel's
// namespace rules before it reaches the broker.
func (c *Client) publish(ctx context.Context, channel string, data []byte, options ...PublishOption) (broker.Position, error) {
	if c.hub.options(channel).ReadOnly {
		return broker.Position{}, protocol.Errorf(protocol.CodeForbidden, "clients may not publish to "+channel)
	}
	return c.hub.Publish(ctx, channel, data, options...)
}

func (c *Client) replyStart() []byte { return frameBuf(64) }

func (c *Client) reply(b []byte) { c.enqueue(finishFrame(b, opText)) }

func (c *Client) replyOK(id uint64) { c.reply(protocol.AppendOK(c.replyStart(), id)) }

func (c *Client) replyError(id uint64, e *protocol.Error) {
	c.reply(protocol.AppendError(c.replyStart(), id, e))
}

// ErrorOf maps an error from the hub or the broker to the protocol error a
// client or an HTTP caller is told; nothing internal leaks into the message.
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

func wirePosition(p broker.Position) protocol.Position {
	return protocol.Position{Epoch: p.Epoch, Offset: p.Offset}
}

// nativeMessageFrame encodes a message event frame.
func nativeMessageFrame(m broker.Message) []byte {
	b := frameBuf(len(m.Data) + len(m.Channel) + 64)
	b = protocol.AppendMessage(b, m.Channel, m.Data, wirePosition(m.Pos))
	return finishFrame(b, opText)
}

// rawMessageFrame encodes the text frame a raw client receives: a JSON
// string's text, or any other JSON value as its JSON text.
func rawMessageFrame(data []byte) []byte {
	if text, ok := unquote(data); ok {
		return textFrame(text)
	}
	return textFrame(data)
}

// unquote returns the text of a JSON string value. ok is false when data
// is not a JSON string.
func unquote(data []byte) ([]byte, bool) {
	if len(data) < 2 || data[0] != '"' || data[len(data)-1] != '"' {
		return nil, false
	}
	inner := data[1 : len(data)-1]
	simple := true
	for _, b := range inner {
		if b == '\\' || b == '"' || b < 0x20 {
			simple = false
			break
		}
	}
	if simple && utf8.Valid(inner) {
		return inner, true
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, false
	}
	return []byte(s), true
}

// Pong answers a client's ping with a pong carrying the same payload.
func (c *Client) Pong(payload []byte) {
	c.enqueue(controlFrame(opPong, payload))
}

// Closed reports whether the client is closing or closed: frames it sends
// from then on are ignored.
func (c *Client) Closed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}
