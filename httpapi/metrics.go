package httpapi

import (
	"fmt"
	"net/http"
	"runtime"
	"strconv"

	"github.com/switchboard-rt/switchboard/hub"
)

// Metrics returns every figure /metrics exports: the hub's, the other
// parts' (Config.Metrics), readiness and the process's.
func (h *Handler) Metrics() []hub.Metric {
	out := append(h.cfg.Hub.Metrics(), h.cfg.Hub.DeliveryMetrics()...)
	for _, more := range h.cfg.Metrics {
		out = append(out, more()...)
	}
	ready := 1.0
	if h.cfg.Hub.Ready() != nil {
		ready = 0
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return append(out,
		hub.Metric{Name: "switchboard_ready", Kind: "gauge", Help: "1 while the node is ready (its broker reachable), else 0.", Value: ready},
		hub.Metric{Name: "switchboard_goroutines", Kind: "gauge", Help: "Goroutines of the process.", Value: float64(runtime.NumGoroutine())},
		hub.Metric{Name: "switchboard_heap_inuse_bytes", Kind: "gauge", Help: "Heap bytes in use.", Value: float64(ms.HeapInuse)},
	)
}

// metrics writes Metrics in the Prometheus text format.
func (h *Handler) metrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	var b []byte
	prev := ""
	for _, m := range h.Metrics() {
		// The series of one family (labels apart) come together, under
		// one HELP and TYPE.
		if m.Name != prev {
			b = fmt.Appendf(b, "# HELP %s %s\n# TYPE %s %s\n", m.Name, m.Help, m.Name, m.Kind)
			prev = m.Name
		}
		if hg := m.Histogram; hg != nil {
			var cum uint64
			for i, n := range hg.Counts {
				cum += n
				le := "+Inf"
				if i < len(hg.Bounds) {
					le = strconv.FormatFloat(hg.Bounds[i], 'g', -1, 64)
				}
				b = appendSample(b, m.Name+"_bucket", append(m.Labels[:len(m.Labels):len(m.Labels)], [2]string{"le", le}), float64(cum))
			}
			b = appendSample(b, m.Name+"_sum", m.Labels, hg.Sum)
			b = appendSample(b, m.Name+"_count", m.Labels, float64(cum))
			continue
		}
		b = appendSample(b, m.Name, m.Labels, m.Value)
	}
	_, _ = w.Write(b)
}

// appendSample appends one sample line: name{labels} value.
func appendSample(b []byte, name string, labels [][2]string, v float64) []byte {
	b = append(b, name...)
	for i, l := range labels {
		sep := byte(',')
		if i == 0 {
			sep = '{'
		}
		b = append(b, sep)
		b = append(b, l[0]...)
		b = append(b, '=')
		b = strconv.AppendQuote(b, l[1])
	}
	if len(labels) > 0 {
		b = append(b, '}')
	}
	b = append(b, ' ')
	b = strconv.AppendFloat(b, v, 'f', -1, 64)
	return append(b, '\n')
}
