package httpapi

import (
	"fmt"
	"net/http"
	"runtime"
)

// metrics writes the hub's counters in the Prometheus text format.
func (h *Handler) metrics(w http.ResponseWriter, r *http.Request) {
	s := h.cfg.Hub.Stats()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	ready := 1
	if h.cfg.Hub.Ready() != nil {
		ready = 0
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rows := []struct {
		name, kind, help string
		value            any
	}{
		{"switchboard_connections", "gauge", "Connected clients.", s.Connections.Load()},
		{"switchboard_connections_total", "counter", "Clients ever connected.", s.ConnectionsTotal.Load()},
		{"switchboard_subscriptions", "gauge", "Client subscriptions.", s.Subscriptions.Load()},
		{"switchboard_broker_channels", "gauge", "Channels this node's broker is subscribed to.", s.BrokerChannels.Load()},
		{"switchboard_messages_published_total", "counter", "Publishes the broker accepted.", s.MessagesPublished.Load()},
		{"switchboard_publish_errors_total", "counter", "Publishes the broker refused.", s.PublishErrors.Load()},
		{"switchboard_raw_publish_dropped_total", "counter", "Raw frames that could not be published.", s.RawPublishDropped.Load()},
		{"switchboard_messages_received_total", "counter", "Messages from the broker with local subscribers.", s.MessagesReceived.Load()},
		{"switchboard_messages_delivered_total", "counter", "Message frames queued to clients.", s.MessagesDelivered.Load()},
		{"switchboard_slow_consumers_total", "counter", "Clients closed with 4008 for not reading.", s.SlowConsumers.Load()},
		{"switchboard_frames_written_total", "counter", "Frames written to sockets.", s.FramesWritten.Load()},
		{"switchboard_writes_total", "counter", "Socket writes (each carries one or more frames).", s.Writes.Load()},
		{"switchboard_rate_limited_total", "counter", "Client requests refused over --client-rate.", s.RateLimited.Load()},
		{"switchboard_gaps_filled_total", "counter", "Missed messages a node recovered from history.", s.GapsFilled.Load()},
		{"switchboard_gaps_lost_total", "counter", "Missed messages no longer in history.", s.GapsLost.Load()},
		{"switchboard_ready", "gauge", "1 while the node is ready (broker reachable).", ready},
		{"switchboard_goroutines", "gauge", "Goroutines.", runtime.NumGoroutine()},
		{"switchboard_heap_inuse_bytes", "gauge", "Heap bytes in use.", ms.HeapInuse},
	}
	for _, m := range h.cfg.Metrics {
		rows = append(rows, struct {
			name, kind, help string
			value            any
		}{m.Name, m.Kind, m.Help, m.Value()})
	}
	for _, row := range rows {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %v\n", row.name, row.help, row.name, row.kind, row.name, row.value)
	}
}
