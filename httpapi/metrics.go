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
	out := h.cfg.Hub.Metrics()
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
	for _, m := range h.Metrics() {
		b = fmt.Appendf(b, "# HELP %s %s\n# TYPE %s %s\n%s", m.Name, m.Help, m.Name, m.Kind, m.Name)
		for i, l := range m.Labels {
			sep := byte(',')
			if i == 0 {
				sep = '{'
			}
			b = append(b, sep)
			b = append(b, l[0]...)
			b = append(b, '=')
			b = strconv.AppendQuote(b, l[1])
		}
		if len(m.Labels) > 0 {
			b = append(b, '}')
		}
		b = append(b, ' ')
		b = strconv.AppendFloat(b, m.Value, 'f', -1, 64)
		b = append(b, '\n')
	}
	_, _ = w.Write(b)
}
