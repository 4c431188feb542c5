package pusher

import (
	"context"
	"encoding/json"
	"hash/fnv"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/protocol"
	"github.com/switchboard-rt/switchboard/transport"
	"github.com/switchboard-rt/switchboard/wsframe"
)

// Config configures a Dialect.
type Config struct {
	// Apps are the apps served. Required.
	Apps *Apps
	// NodeID makes the socket ids of this node's connections unique in the
	// cluster.
	NodeID string
	// Logger receives the dialect's logs. Default: slog.Default().
	Logger *slog.Logger
	// Webhooks, when set, is told the client events (client_event).
	Webhooks *Webhooks
}

// Dialect is the Pusher dialect of a node. Create it with New.
type Dialect struct {
	apps     *Apps
	log      *slog.Logger
	node     uint64 // the first part of every socket id
	next     atomic.Uint64
	connsMu  sync.Mutex
	conns    map[*App]int // guarded by connsMu: each app's connections on this node
	refusals atomic.Uint64
	hooks    *Webhooks
}

// New returns the dialect.
func New(cfg Config) *Dialect {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	h := fnv.New32a()
	h.Write([]byte(cfg.NodeID))
	return &Dialect{apps: cfg.Apps, log: cfg.Logger, node: uint64(h.Sum32()), conns: map[*App]int{}, hooks: cfg.Webhooks}
}

var _ transport.Dialect = (*Dialect)(nil)

// conn is one Pusher connection's state (hub.Client.Data), owned by its
// reader.
type conn struct {
	app      *App
	socketID string
	user     string // signed in: the user's id
	// channels are the channels subscribed, with their kinds: a slice,
	// not a map, because a connection has a few (at most the hub's
	// MaxSubscriptions) and an idle one should stay small.
	channels []subscribed
	// client events' bucket: clientEventRate tokens a second, refilled at
	// unix nanoseconds.
	tokens   float64
	refilled int64
}

// subscribed is one of a connection's channels.
type subscribed struct {
	name string
	kind channelKind
}

// channel returns the kind of the subscribed channel name.
func (cn *conn) channel(name string) (channelKind, bool) {
	for _, s := range cn.channels {
		if s.name == name {
			return s.kind, true
		}
	}
	return channelKind{}, false
}

// forget removes name from the subscribed channels; false when it was not
// one.
func (cn *conn) forget(name string) bool {
	for i, s := range cn.channels {
		if s.name == name {
			cn.channels = append(cn.channels[:i], cn.channels[i+1:]...)
			return true
		}
	}
	return false
}

// Name returns "pusher".
func (*Dialect) Name() string { return "pusher" }

// Accept starts a connection to /app/{key}: the app must exist and have
// room, the protocol must be 7; the client gets its socket id in
// pusher:connection_established. A refusal is a pusher:error and then a
// close with its code, as pusher-js expects.
func (d *Dialect) Accept(_ context.Context, r *http.Request, c *hub.Client) error {
	key := strings.TrimPrefix(r.URL.Path, "/app/")
	app := d.apps.ByKey(key)
	refuse := func(code int, msg string) error {
		d.refusals.Add(1)
		c.Send(errorFrame(code, msg))
		return &transport.CloseError{Code: code, Reason: msg}
	}
	switch p := r.URL.Query().Get("protocol"); {
	case app == nil:
		return refuse(4001, "App key "+strconv.Quote(key)+" does not exist")
	case p == "":
		return refuse(4008, "No protocol version supplied")
	case p != "7" && p != "6" && p != "5":
		return refuse(4007, "Unsupported protocol version "+strconv.Quote(p)+"; this server speaks 5 to 7")
	case len(app.AllowedOrigins) > 0 && !(transport.OriginPolicy{Allowed: app.AllowedOrigins}).Check(r):
		return refuse(4009, "Origin not allowed for this app")
	}
	if !d.admit(app) {
		return refuse(4100, "Over capacity")
	}
	// A Pusher client proves nothing on connect (the app's signatures open
	// its private channels): no token deadline applies to it.
	c.SetIdentity(hub.Identity{})
	cn := &conn{app: app, socketID: strconv.FormatUint(d.node, 10) + "." + strconv.FormatUint(d.next.Add(1), 10)}
	c.Data = cn
	c.SetAlias(cn.socketID)
	data, _ := json.Marshal(map[string]any{"socket_id": cn.socketID, "activity_timeout": activityTimeout})
	c.Send(eventFrame("pusher:connection_established", "", string(data)))
	return nil
}

// admit counts a connection against its app's limit.
func (d *Dialect) admit(app *App) bool {
	d.connsMu.Lock()
	defer d.connsMu.Unlock()
	if app.MaxConnections > 0 && d.conns[app] >= app.MaxConnections {
		return false
	}
	d.conns[app]++
	return true
}

// ClientClosed uncounts a connection that ended (hub.ClosedNotifier).
func (d *Dialect) ClientClosed(c *hub.Client) {
	if cn, ok := c.Data.(*conn); ok {
		d.connsMu.Lock()
		d.conns[cn.app]--
		d.connsMu.Unlock()
	}
}

// MessageFrame encodes a hub message as a Pusher event: one a Pusher
// trigger or client event published ({"event":...,"data":...}) as it was,
// any other (a native or raw publish) as the event "message" with the
// message as its data.
func (d *Dialect) MessageFrame(m broker.Message) []byte {
	_, name, ok := splitChannel(m.Channel)
	if !ok || m.Binary {
		// Pusher events carry text: a raw client's binary frames are not
		// for Pusher clients.
		return nil
	}
	e, ok := decodeEnvelope(m.Data)
	if !ok {
		e = envelope{Event: "message", Data: dataString(m.Data)}
	}
	return eventFrameUser(e.Event, name, e.Data, e.UserID)
}

// EventFrame encodes a presence channel's member_added and member_removed;
// the others are not Pusher's.
func (d *Dialect) EventFrame(e hub.Event) []byte {
	_, name, ok := splitChannel(e.Channel)
	if !ok || !strings.HasPrefix(name, "presence-") {
		return nil
	}
	switch e.Op {
	case "member_added":
		info := e.Info
		if len(info) == 0 {
			info = json.RawMessage("null")
		}
		data, _ := json.Marshal(map[string]any{"user_id": e.User, "user_info": info})
		return eventFrame("pusher_internal:member_added", name, string(data))
	case "member_removed":
		data, _ := json.Marshal(map[string]any{"user_id": e.User})
		return eventFrame("pusher_internal:member_removed", name, string(data))
	}
	return nil
}

// GoingAway is 4200: pusher-js reconnects at once, to another node.
func (*Dialect) GoingAway() (int, string) { return 4200, "Server restarting; reconnect" }

// HandleBinary answers a binary frame with pusher:error: the protocol is
// text.
func (*Dialect) HandleBinary(c *hub.Client, _ []byte) {
	c.Send(errorFrame(4200, "Binary frames are not part of the Pusher protocol"))
}

// clientMessage is what a Pusher client sends.
type clientMessage struct {
	Event   string          `json:"event"`
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data"`
}

// HandleText handles one Pusher event from a client. A frame that is not
// one is answered with pusher:error, never a close: a close would make
// pusher-js reconnect and send it again.
func (d *Dialect) HandleText(c *hub.Client, payload []byte) {
	cn, _ := c.Data.(*conn)
	if cn == nil {
		return
	}
	var m clientMessage
	if err := json.Unmarshal(payload, &m); err != nil || m.Event == "" {
		c.Send(errorFrame(4200, "A frame must be a JSON object with an event"))
		return
	}
	switch {
	case m.Event == "pusher:ping":
		c.Send(eventFrame("pusher:pong", "", "{}"))
	case m.Event == "pusher:pong":
	case m.Event == "pusher:subscribe":
		d.subscribe(c, cn, m.Data)
	case m.Event == "pusher:unsubscribe":
		var s struct {
			Channel string `json:"channel"`
		}
		if json.Unmarshal(m.Data, &s) == nil {
			if cn.forget(s.Channel) {
				_ = c.Unsubscribe(cn.app.hubChannel(s.Channel), nil)
			}
		}
	case m.Event == "pusher:signin":
		d.signin(c, cn, m.Data)
	case strings.HasPrefix(m.Event, "client-"):
		d.clientEvent(c, cn, m)
	default:
		c.Send(errorFrame(4200, "Unknown event "+strconv.Quote(m.Event)))
	}
}

// subscribeRequest is the data of pusher:subscribe.
type subscribeRequest struct {
	Channel     string `json:"channel"`
	Auth        string `json:"auth"`
	ChannelData string `json:"channel_data"`
}

// subscribe checks a subscription (the app's signature for private and
// presence channels) and makes it, answering
// pusher_internal:subscription_succeeded or pusher:subscription_error.
func (d *Dialect) subscribe(c *hub.Client, cn *conn, raw json.RawMessage) {
	var s subscribeRequest
	if err := json.Unmarshal(raw, &s); err != nil {
		c.Send(errorFrame(4200, "pusher:subscribe needs data {channel, auth, channel_data}"))
		return
	}
	fail := func(typ, msg string, status int) {
		data, _ := json.Marshal(map[string]any{"type": typ, "error": msg, "status": status})
		c.Send(eventFrameRaw("pusher:subscription_error", s.Channel, data))
	}
	userChannel := cn.user != "" && s.Channel == serverToUser+cn.user
	if !userChannel && (!validChannel(s.Channel) || strings.HasPrefix(s.Channel, hubServerToUser)) {
		fail("InvalidChannel", "channel names are 1 to 164 of A-Z a-z 0-9 _ - = @ , . ; (and #server-to-user- channels are for their signed-in user)", 400)
		return
	}
	if _, ok := cn.channel(s.Channel); ok {
		// pusher-js subscribes again after a reconnect of its own; on the
		// same connection it is a no-op that succeeds.
		c.Send(eventFrame("pusher_internal:subscription_succeeded", s.Channel, "{}"))
		return
	}
	kind := kindOf(s.Channel)
	var member *hub.Member
	if kind.private || kind.presence {
		msg := channelAuthMessage(cn.socketID, s.Channel, "")
		if kind.presence {
			msg = channelAuthMessage(cn.socketID, s.Channel, s.ChannelData)
		}
		if err := cn.app.checkAuth(s.Auth, msg); err != nil {
			fail("AuthError", err.Error(), 401)
			return
		}
	}
	hubName := cn.app.hubChannel(s.Channel)
	ctx, cancel := c.RequestContext()
	defer cancel()
	var members []broker.PresenceEntry
	if kind.presence {
		var err error
		if member, err = parseChannelData(s.ChannelData); err != nil {
			fail("AuthError", err.Error(), 400)
			return
		}
		if members, err = c.Hub().Presence(ctx, hubName); err != nil {
			fail("ServerError", hub.ErrorOf(err).Message, 503)
			return
		}
		if countUsers(members, member.User) > maxPresenceUsers {
			fail("LimitReached", "presence channels have at most 100 members", 403)
			return
		}
	}
	o := hub.SubscribeOptions{Granted: true, Member: member, Reply: func(pos broker.Position, found *bool) []byte {
		data := "{}"
		if kind.presence {
			data = presenceData(members, member)
		}
		f := eventFrame("pusher_internal:subscription_succeeded", s.Channel, data)
		if kind.cache && found != nil && !*found {
			f = append(f, eventFrame("pusher:cache_miss", s.Channel, "{}")...)
		}
		return f
	}}
	if kind.cache {
		o.Last = 1
	}
	if err := c.Subscribe(ctx, hubName, o); err != nil {
		e := hub.ErrorOf(err)
		fail("ServerError", e.Message, e.Code.HTTPStatus())
		return
	}
	cn.channels = append(cn.channels, subscribed{s.Channel, kind})
}

// parseChannelData reads a presence subscription's channel_data: a user_id
// (string or number) and optional user_info.
func parseChannelData(s string) (*hub.Member, error) {
	if len(s) > maxUserData {
		return nil, errString("channel_data is larger than 1000 bytes")
	}
	var cd struct {
		UserID   json.RawMessage `json:"user_id"`
		UserInfo json.RawMessage `json:"user_info"`
	}
	if err := json.Unmarshal([]byte(s), &cd); err != nil || len(cd.UserID) == 0 {
		return nil, errString("channel_data must be a JSON object with a user_id")
	}
	id := string(cd.UserID)
	var str string
	if json.Unmarshal(cd.UserID, &str) == nil {
		id = str
	} else if _, err := strconv.ParseFloat(id, 64); err != nil {
		return nil, errString("user_id must be a string or a number")
	}
	if id == "" {
		return nil, errString("user_id is empty")
	}
	m := &hub.Member{User: id}
	if len(cd.UserInfo) > 0 && string(cd.UserInfo) != "null" {
		m.Info = cd.UserInfo
	}
	return m, nil
}

// errString is an error that is its message.
type errString string

func (e errString) Error() string { return string(e) }

// countUsers counts the distinct users of entries, with user added.
func countUsers(entries []broker.PresenceEntry, user string) int {
	seen := map[string]bool{user: true}
	for _, e := range entries {
		if e.User != "" {
			seen[e.User] = true
		}
	}
	return len(seen)
}

// presenceData is the data of a presence channel's subscription_succeeded:
// every member once, by user id, with its info; me included.
func presenceData(entries []broker.PresenceEntry, me *hub.Member) string {
	hash := map[string]json.RawMessage{}
	var ids []string
	add := func(user string, info json.RawMessage) {
		if user == "" {
			return
		}
		if _, ok := hash[user]; !ok {
			ids = append(ids, user)
		}
		if len(info) == 0 {
			info = json.RawMessage("null")
		}
		hash[user] = info
	}
	for _, e := range entries {
		add(e.User, e.Info)
	}
	add(me.User, me.Info)
	b, _ := json.Marshal(map[string]any{"presence": map[string]any{"ids": ids, "hash": hash, "count": len(ids)}})
	return string(b)
}

// signinRequest is the data of pusher:signin.
type signinRequest struct {
	Auth     string `json:"auth"`
	UserData string `json:"user_data"`
}

// signin checks a user sign-in and, when good, makes the connection the
// user's (for terminate_connections and server-to-user events) and
// answers pusher:signin_success.
func (d *Dialect) signin(c *hub.Client, cn *conn, raw json.RawMessage) {
	var s signinRequest
	if err := json.Unmarshal(raw, &s); err != nil {
		c.Send(errorFrame(4009, "pusher:signin needs data {auth, user_data}"))
		return
	}
	if err := cn.app.checkAuth(s.Auth, signinMessage(cn.socketID, s.UserData)); err != nil {
		c.Close(4009, "Sign-in failed: "+err.Error())
		return
	}
	var ud struct {
		ID json.RawMessage `json:"id"`
	}
	var id string
	if json.Unmarshal([]byte(s.UserData), &ud) != nil || json.Unmarshal(ud.ID, &id) != nil || id == "" {
		c.Close(4009, "Sign-in failed: user_data must be a JSON object with a string id")
		return
	}
	cn.user = id
	c.SetIdentity(hub.Identity{User: userOf(cn.app, id)})
	// pusher-js subscribes to #server-to-user-{id} itself once told.
	data, _ := json.Marshal(map[string]string{"user_data": s.UserData})
	c.Send(eventFrame("pusher:signin_success", "", string(data)))
}

// userOf is the hub user of app's user id: users of two apps never meet.
func userOf(app *App, id string) string { return app.ID + ":" + id }

// clientEvent relays a client-* event to the channel's other subscribers:
// on private and presence channels, where the app allows client events,
// at most clientEventRate a second.
func (d *Dialect) clientEvent(c *hub.Client, cn *conn, m clientMessage) {
	kind, subscribed := cn.channel(m.Channel)
	switch {
	case !cn.app.ClientEvents:
		c.Send(errorFrame(4301, "Client events are not enabled for this app"))
		return
	case !subscribed:
		c.Send(errorFrame(4301, "Client event rejected: not subscribed to "+strconv.Quote(m.Channel)))
		return
	case !(kind.private || kind.presence) || kind.encrypted:
		c.Send(errorFrame(4301, "Client events are only for private and presence channels"))
		return
	case len(m.Event) > maxEventName:
		c.Send(errorFrame(4301, "Event name too long"))
		return
	case len(m.Data) > maxEventData:
		c.Send(errorFrame(4301, "Client event data is larger than 10 KB"))
		return
	case !cn.allow():
		c.Send(errorFrame(4301, "Client event rejected: over 10 a second"))
		return
	}
	e := envelope{Event: m.Event, Data: dataString(m.Data)}
	if kind.presence {
		e.UserID = c.MemberOf(cn.app.hubChannel(m.Channel))
	}
	ctx, cancel := c.RequestContext()
	defer cancel()
	if _, err := c.Hub().Publish(ctx, cn.app.hubChannel(m.Channel), e.encode(), hub.WithSkip(cn.socketID)); err != nil {
		c.Send(errorFrame(4200, "Client event not delivered: "+hub.ErrorOf(err).Message))
		return
	}
	if d.hooks != nil {
		d.hooks.clientEvent(cn.app, m.Channel, m.Event, e.Data, cn.socketID, e.UserID)
	}
}

// allow takes a token from the client events' bucket.
func (cn *conn) allow() bool {
	now := time.Now().UnixNano()
	if cn.refilled == 0 {
		cn.tokens = clientEventRate
	} else {
		cn.tokens = min(clientEventRate, cn.tokens+float64(now-cn.refilled)/1e9*clientEventRate)
	}
	cn.refilled = now
	if cn.tokens < 1 {
		return false
	}
	cn.tokens--
	return true
}

// Metrics returns the dialect's figures.
func (d *Dialect) Metrics() []hub.Metric {
	return []hub.Metric{{Name: "switchboard_pusher_refused_total", Kind: "counter",
		Help: "Pusher connections refused at connect (unknown app key, protocol version, origin, over capacity).", Value: float64(d.refusals.Load())}}
}

// envelope is a Pusher event as it crosses the hub: the data of a message
// published by a Pusher trigger or client event.
type envelope struct {
	Event  string `json:"event"`
	Data   string `json:"data"`
	UserID string `json:"user_id,omitempty"`
}

func (e envelope) encode() []byte {
	b, _ := json.Marshal(e)
	return b
}

// decodeEnvelope reads a message's data as an envelope: an object whose
// event is a string and data a string.
func decodeEnvelope(data []byte) (envelope, bool) {
	var e envelope
	if len(data) == 0 || data[0] != '{' || json.Unmarshal(data, &e) != nil || e.Event == "" {
		return envelope{}, false
	}
	return e, true
}

// dataString is data as a Pusher event's data, which is a string: a JSON
// string's text, or any other JSON value's JSON text.
func dataString(data []byte) string {
	var s string
	if len(data) > 0 && data[0] == '"' && json.Unmarshal(data, &s) == nil {
		return s
	}
	return string(data)
}

// eventFrame encodes {"event":...,"channel":...,"data":"<data>"}; channel
// is left out when empty.
func eventFrame(event, channel, data string) []byte {
	return eventFrameUser(event, channel, data, "")
}

func eventFrameUser(event, channel, data, userID string) []byte {
	b := wsframe.Start(len(data) + len(channel) + len(event) + 48)
	b = append(b, `{"event":`...)
	b = protocol.AppendString(b, event)
	if channel != "" {
		b = append(b, `,"channel":`...)
		b = protocol.AppendString(b, channel)
	}
	b = append(b, `,"data":`...)
	b = protocol.AppendString(b, data)
	if userID != "" {
		b = append(b, `,"user_id":`...)
		b = protocol.AppendString(b, userID)
	}
	return wsframe.Finish(append(b, '}'), wsframe.OpText)
}

// eventFrameRaw encodes an event whose data is a JSON object, not a
// string (pusher:error, pusher:subscription_error).
func eventFrameRaw(event, channel string, data []byte) []byte {
	b := wsframe.Start(len(data) + len(channel) + len(event) + 48)
	b = append(b, `{"event":`...)
	b = protocol.AppendString(b, event)
	if channel != "" {
		b = append(b, `,"channel":`...)
		b = protocol.AppendString(b, channel)
	}
	b = append(b, `,"data":`...)
	b = append(b, data...)
	return wsframe.Finish(append(b, '}'), wsframe.OpText)
}

// errorFrame is pusher:error with a code and a message.
func errorFrame(code int, msg string) []byte {
	data, _ := json.Marshal(map[string]any{"code": code, "message": msg})
	return eventFrameRaw("pusher:error", "", data)
}
