package hub

import (
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/switchboard-rt/switchboard/protocol"
)

// latencyBounds are the upper bounds of the delivery latency histogram's
// buckets, from half a millisecond (a write on an idle machine) to five
// seconds (a client that reads slowly).
var latencyBounds = [...]time.Duration{
	500 * time.Microsecond, time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
	250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2500 * time.Millisecond, 5 * time.Second,
}

// latencyHistogram counts how long frames waited between being queued to a
// client (right after the broker's message reached the node) and the write
// that carried them: one observation per write, for its oldest frame, so
// the cost is one atomic add per write, not per frame. Writers of the pool
// and clients' own writers observe concurrently.
type latencyHistogram struct {
	counts [len(latencyBounds) + 1]atomic.Uint64 // the last: above every bound
	sum    atomic.Int64                          // nanoseconds
}

// observe counts one write whose oldest frame waited d nanoseconds.
func (l *latencyHistogram) observe(d int64) {
	i := 0
	for i < len(latencyBounds) && d > int64(latencyBounds[i]) {
		i++
	}
	l.counts[i].Add(1)
	l.sum.Add(d)
}

// Histogram is a Prometheus histogram's figures: the count of each bucket
// (not cumulative) by its upper bound, the last bucket's bound +Inf, and the
// sum of the observations.
type Histogram struct {
	Bounds []float64 // upper bounds; len(Counts) is one more
	Counts []uint64
	Sum    float64
}

// snapshot returns the histogram's figures in seconds.
func (l *latencyHistogram) snapshot() *Histogram {
	h := &Histogram{Bounds: make([]float64, len(latencyBounds)), Counts: make([]uint64, len(l.counts))}
	for i, b := range latencyBounds {
		h.Bounds[i] = b.Seconds()
	}
	for i := range l.counts {
		h.Counts[i] = l.counts[i].Load()
	}
	h.Sum = time.Duration(l.sum.Load()).Seconds()
	return h
}

// QueuedBytes returns the bytes queued to every client and not yet written,
// summed over the clients now (each client's under its lock).
func (h *Hub) QueuedBytes() int64 {
	var n int64
	for _, c := range h.snapshot() {
		c.mu.Lock()
		n += int64(c.queued)
		c.mu.Unlock()
	}
	return n
}

// nsCounters are one namespace's message counts.
type nsCounters struct {
	published atomic.Uint64 // publishes through this node
	delivered atomic.Uint64 // message frames queued to this node's clients
}

// nsCounter returns the counts of channel's namespace: its own when the
// namespace is configured, else the default namespace's, so that the
// label's values are bounded by the configuration.
func (h *Hub) nsCounter(channel string) *nsCounters {
	name := protocol.Namespace(channel)
	if _, ok := h.ns.Load().named[name]; !ok {
		name = ""
	}
	if c, ok := h.nsStats.Load(name); ok {
		return c.(*nsCounters)
	}
	c, _ := h.nsStats.LoadOrStore(name, &nsCounters{})
	return c.(*nsCounters)
}

// namespaceMetrics returns the per-namespace counts, by namespace name
// ("default" for the default namespace).
func (h *Hub) namespaceMetrics() []Metric {
	type row struct {
		name string
		c    *nsCounters
	}
	var rows []row
	h.nsStats.Range(func(k, v any) bool {
		name := k.(string)
		if name == "" {
			name = "default"
		}
		rows = append(rows, row{name, v.(*nsCounters)})
		return true
	})
	slices.SortFunc(rows, func(a, b row) int { return strings.Compare(a.name, b.name) })
	out := make([]Metric, 0, 2*len(rows))
	for _, r := range rows {
		out = append(out, Metric{Name: "switchboard_namespace_messages_published_total", Kind: "counter",
			Help: "Publishes through this node, by the channel's namespace (default: every channel outside a configured namespace).", Value: float64(r.c.published.Load()),
			Labels: [][2]string{{"namespace", r.name}}})
	}
	for _, r := range rows {
		out = append(out, Metric{Name: "switchboard_namespace_messages_delivered_total", Kind: "counter",
			Help: "Message frames queued to this node's clients, by the channel's namespace.", Value: float64(r.c.delivered.Load()),
			Labels: [][2]string{{"namespace", r.name}}})
	}
	return out
}

// DeliveryMetrics returns the figures beside the metric table: the
// delivery latency histogram, the bytes waiting in send queues (a sum over
// the clients, made when called) and the per-namespace message counts.
func (h *Hub) DeliveryMetrics() []Metric {
	return append([]Metric{
		{Name: "switchboard_delivery_latency_seconds", Kind: "histogram",
			Help:      "Time from a message's frame being queued to a client (as the broker's message reached the node) to the write that carried it; one observation per write, its oldest frame.",
			Histogram: h.latency.snapshot()},
		{Name: "switchboard_send_queue_bytes", Kind: "gauge",
			Help: "Bytes queued to clients and not yet written, all clients together.", Value: float64(h.QueuedBytes())},
	}, h.namespaceMetrics()...)
}
