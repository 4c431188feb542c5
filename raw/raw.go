// Package raw is the seed-compatible dialect of PROTOCOL.md: one channel
// per connection, every text frame a client sends published byte for byte,
// every message of the channel sent back as one text frame. A page written
// for the classic "WebSocket + Redis Pub/Sub" chat works against it
// unchanged. A binary frame is published as binary data and reaches raw
// subscribers as a binary frame, byte for byte. It is a hub.Dialect built
// on the hub's public verbs.
//
// A Dialect is safe for concurrent use; the hub calls its handlers from
// each client's reader, one message at a time.
package raw

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/protocol"
	"github.com/switchboard-rt/switchboard/transport"
	"github.com/switchboard-rt/switchboard/wsframe"
)

// DefaultChannel is the channel of raw connections on "/": the seed's.
const DefaultChannel = "chat_messages"

// Dialect is the raw dialect. Its zero value is not usable; call New.
type Dialect struct {
	defaultChannel string
	log            *slog.Logger
	dropped        atomic.Uint64
	lastWarn       atomic.Int64 // unix nanoseconds of the last logged drop
}

// New returns the raw dialect; connections on "/" join defaultChannel
// (DefaultChannel when empty). Dropped frames are logged to log (at most
// once a second; slog.Default() when nil).
func New(defaultChannel string, log *slog.Logger) *Dialect {
	if defaultChannel == "" {
		defaultChannel = DefaultChannel
	}
	if log == nil {
		log = slog.Default()
	}
	return &Dialect{defaultChannel: defaultChannel, log: log}
}

var _ transport.Dialect = (*Dialect)(nil)

// Name returns "raw".
func (*Dialect) Name() string { return "raw" }

// Channel returns the channel a raw connection to r's path is on: the
// default channel for "/", and {channel} for "/raw/{channel}".
func (d *Dialect) Channel(r *http.Request) string {
	if name, ok := strings.CutPrefix(r.URL.Path, "/raw/"); ok {
		return name
	}
	return d.defaultChannel
}

// Accept subscribes the client to its channel before the upgrade
// completes, so the connection receives every message published after it
// opened. A bad channel name is refused after the upgrade with close 1008,
// and a client that may not subscribe to the channel with 4001, as the raw
// dialect has no other way to say it; a broker that cannot be reached
// refuses the upgrade (503).
func (d *Dialect) Accept(ctx context.Context, r *http.Request, c *hub.Client) error {
	channel := d.Channel(r)
	if protocol.ValidateChannel(channel) != nil {
		return &transport.CloseError{Code: protocol.ClosePolicy, Reason: "bad channel name"}
	}
	c.Data = channel
	err := c.Subscribe(ctx, channel, hub.SubscribeOptions{})
	if e := hub.ErrorOf(err); err != nil && (e.Code == protocol.CodeUnauthorized || e.Code == protocol.CodeForbidden) {
		return &transport.CloseError{Code: protocol.CloseUnauthorized, Reason: e.Message}
	}
	return err
}

// MessageFrame encodes the frame a raw client receives: binary data as a
// binary frame, a JSON string's text, or any other JSON value as its JSON
// text.
func (*Dialect) MessageFrame(m broker.Message) []byte {
	if m.Binary {
		return wsframe.Binary(m.Data)
	}
	if text, ok := unquote(m.Data); ok {
		return wsframe.Text(text)
	}
	return wsframe.Text(m.Data)
}

// EventFrame returns nil: raw clients see no presence events.
func (*Dialect) EventFrame(hub.Event) []byte { return nil }

// GoingAway is 1001 "server going away".
func (*Dialect) GoingAway() (int, string) { return protocol.CloseGoingAway, "server going away" }

// HandleText publishes a text frame, byte for byte, as a JSON string. A
// client over its rate is closed with 4029. A frame that cannot be
// published (the broker is away, or the channel's rules do not let the
// client publish) is dropped, counted and logged at most once a second:
// the raw dialect has no replies.
func (d *Dialect) HandleText(c *hub.Client, text []byte) {
	data := protocol.AppendString(make([]byte, 0, len(text)+2), string(text))
	d.publish(c, data)
}

// HandleBinary publishes a binary frame, byte for byte, as binary data
// (hub.AsBinary), with the same rate limit and drops as HandleText. The
// payload is the transport's to give: a new buffer for every message.
func (d *Dialect) HandleBinary(c *hub.Client, payload []byte) {
	d.publish(c, payload, hub.AsBinary())
}

// publish publishes data to the client's channel.
func (d *Dialect) publish(c *hub.Client, data []byte, options ...hub.PublishOption) {
	if !c.Allow() {
		c.Close(protocol.CloseRateLimited, "rate limited")
		return
	}
	channel, _ := c.Data.(string)
	ctx, cancel := c.RequestContext()
	defer cancel()
	if _, err := c.Publish(ctx, channel, data, options...); err != nil {
		d.drop(channel, err)
	}
}

// drop counts a frame that could not be published and logs it, at most
// once a second.
func (d *Dialect) drop(channel string, err error) {
	n := d.dropped.Add(1)
	now := time.Now().UnixNano()
	last := d.lastWarn.Load()
	if now-last < int64(time.Second) || !d.lastWarn.CompareAndSwap(last, now) {
		return
	}
	d.log.Warn("raw publish dropped", "channel", channel, "err", err, "dropped_total", n)
}

// Metrics returns the dialect's figures.
func (d *Dialect) Metrics() []hub.Metric {
	return []hub.Metric{{Name: "switchboard_raw_publish_dropped_total", Kind: "counter",
		Help: "Raw frames that could not be published (broker unavailable, or the channel's rules refuse them).", Value: float64(d.dropped.Load())}}
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
