package hub

import "sync/atomic"

// Stats is a snapshot of the hub's counters and gauges.
type Stats struct {
	Connections       int64  // connected clients now
	ConnectionsTotal  uint64 // clients ever registered
	Subscriptions     int64  // client subscriptions now
	BrokerChannels    int64  // channels the broker is subscribed to now
	MessagesPublished uint64 // publishes the broker accepted
	PublishErrors     uint64 // publishes the broker refused or could not take
	PublishForbidden  uint64 // client publishes the Authorizer refused
	MessagesReceived  uint64 // messages from the broker with local subscribers
	MessagesDelivered uint64 // message frames queued to clients
	MessagesDeflated  uint64 // messages handed to the deflater for permessage-deflate clients (once per message, dialect and compression)
	SlowConsumers     uint64 // clients closed with 4008
	FramesWritten     uint64 // frames handed to transports
	Writes            uint64 // transport writes (each may carry many frames)
	DuplicatesDropped uint64 // history messages this node had already delivered
	GapsFilled        uint64 // times the node recovered messages it missed from history
	GapsLost          uint64 // times missed messages were no longer in history
	RateLimited       uint64 // client frames refused for going over the client rate
	PresenceDropped   uint64 // leaves not carried out: the presence queue was full
	InternalErrors    uint64 // requests answered "internal"; each is logged
}

// counters are the live values behind Stats, updated atomically.
type counters struct {
	connections       atomic.Int64
	connectionsTotal  atomic.Uint64
	subscriptions     atomic.Int64
	brokerChannels    atomic.Int64
	messagesPublished atomic.Uint64
	publishErrors     atomic.Uint64
	publishForbidden  atomic.Uint64
	messagesReceived  atomic.Uint64
	messagesDelivered atomic.Uint64
	messagesDeflated  atomic.Uint64
	slowConsumers     atomic.Uint64
	framesWritten     atomic.Uint64
	writes            atomic.Uint64
	duplicatesDropped atomic.Uint64
	gapsFilled        atomic.Uint64
	gapsLost          atomic.Uint64
	rateLimited       atomic.Uint64
	presenceDropped   atomic.Uint64
	internalErrors    atomic.Uint64
}

// Stats returns a snapshot of the hub's counters.
func (h *Hub) Stats() Stats {
	c := &h.stats
	return Stats{
		Connections:       c.connections.Load(),
		ConnectionsTotal:  c.connectionsTotal.Load(),
		Subscriptions:     c.subscriptions.Load(),
		BrokerChannels:    c.brokerChannels.Load(),
		MessagesPublished: c.messagesPublished.Load(),
		PublishErrors:     c.publishErrors.Load(),
		PublishForbidden:  c.publishForbidden.Load(),
		MessagesReceived:  c.messagesReceived.Load(),
		MessagesDelivered: c.messagesDelivered.Load(),
		MessagesDeflated:  c.messagesDeflated.Load(),
		SlowConsumers:     c.slowConsumers.Load(),
		FramesWritten:     c.framesWritten.Load(),
		Writes:            c.writes.Load(),
		DuplicatesDropped: c.duplicatesDropped.Load(),
		GapsFilled:        c.gapsFilled.Load(),
		GapsLost:          c.gapsLost.Load(),
		RateLimited:       c.rateLimited.Load(),
		PresenceDropped:   c.presenceDropped.Load(),
		InternalErrors:    c.internalErrors.Load(),
	}
}

// Metric is one figure a node exports (at /metrics, as Prometheus text).
type Metric struct {
	Name   string // switchboard_...
	Kind   string // "counter" or "gauge"
	Help   string // what is counted
	Value  float64
	Labels [][2]string // name and value pairs, in order; usually none
	// Histogram holds a histogram's figures (Kind "histogram"); Value is
	// then unused.
	Histogram *Histogram
}

// metricTable is every Stats field as it is exported: one row per figure,
// the only place a metric's name, kind and help are written.
var metricTable = []struct {
	name, kind, help string
	value            func(s *Stats) float64
}{
	{"switchboard_connections", "gauge", "Clients connected now.", func(s *Stats) float64 { return float64(s.Connections) }},
	{"switchboard_connections_total", "counter", "Clients ever connected.", func(s *Stats) float64 { return float64(s.ConnectionsTotal) }},
	{"switchboard_subscriptions", "gauge", "Client subscriptions now.", func(s *Stats) float64 { return float64(s.Subscriptions) }},
	{"switchboard_broker_channels", "gauge", "Channels this node's broker is subscribed to now (one per channel with local subscribers, kept a moment after the last leaves).", func(s *Stats) float64 { return float64(s.BrokerChannels) }},
	{"switchboard_messages_published_total", "counter", "Publishes the broker accepted (clients and HTTP API).", func(s *Stats) float64 { return float64(s.MessagesPublished) }},
	{"switchboard_publish_errors_total", "counter", "Publishes the broker refused or could not take (answered unavailable or internal).", func(s *Stats) float64 { return float64(s.PublishErrors) }},
	{"switchboard_publish_forbidden_total", "counter", "Client publishes refused by the channel's rules (answered forbidden, or dropped on raw connections).", func(s *Stats) float64 { return float64(s.PublishForbidden) }},
	{"switchboard_messages_received_total", "counter", "Messages from the broker for channels with local subscribers.", func(s *Stats) float64 { return float64(s.MessagesReceived) }},
	{"switchboard_messages_delivered_total", "counter", "Message frames queued to clients (one per subscriber per message).", func(s *Stats) float64 { return float64(s.MessagesDelivered) }},
	{"switchboard_messages_deflated_total", "counter", "Messages compressed for permessage-deflate clients (or found too short, or not worth it): once per message, dialect and compression, whatever the number of subscribers.", func(s *Stats) float64 { return float64(s.MessagesDeflated) }},
	{"switchboard_slow_consumers_total", "counter", "Clients closed with 4008 because their send queue overflowed.", func(s *Stats) float64 { return float64(s.SlowConsumers) }},
	{"switchboard_frames_written_total", "counter", "Frames written to sockets.", func(s *Stats) float64 { return float64(s.FramesWritten) }},
	{"switchboard_writes_total", "counter", "Socket writes; each carries one or more frames.", func(s *Stats) float64 { return float64(s.Writes) }},
	{"switchboard_duplicates_dropped_total", "counter", "Messages with history this node had already delivered and dropped (after a broker reconnect).", func(s *Stats) float64 { return float64(s.DuplicatesDropped) }},
	{"switchboard_gaps_filled_total", "counter", "Times this node recovered from history messages it had missed.", func(s *Stats) float64 { return float64(s.GapsFilled) }},
	{"switchboard_gaps_lost_total", "counter", "Times messages this node missed were no longer in history.", func(s *Stats) float64 { return float64(s.GapsLost) }},
	{"switchboard_rate_limited_total", "counter", "Client frames refused over --client-rate.", func(s *Stats) float64 { return float64(s.RateLimited) }},
	{"switchboard_presence_dropped_total", "counter", "Presence leaves not carried out because the presence queue was full (the entries expire by themselves).", func(s *Stats) float64 { return float64(s.PresenceDropped) }},
	{"switchboard_internal_errors_total", "counter", "Requests answered with an internal error; each is logged.", func(s *Stats) float64 { return float64(s.InternalErrors) }},
}

// Metrics returns the hub's figures, one per row of its metric table, from
// one snapshot of its counters.
func (h *Hub) Metrics() []Metric {
	s := h.Stats()
	out := make([]Metric, len(metricTable))
	for i, row := range metricTable {
		out[i] = Metric{Name: row.name, Kind: row.kind, Help: row.help, Value: row.value(&s)}
	}
	return out
}
