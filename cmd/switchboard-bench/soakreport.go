//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
)

// SoakReport is the soak scenario's own part of its Result.
type SoakReport struct {
	Instances              int     `json:"instances"`
	Clients                int     `json:"clients"`
	Channels               int     `json:"channels"`
	DeliveriesPerSecTarget float64 `json:"deliveries_per_s_target"`
	ReconnectPercent       float64 `json:"reconnect_percent_per_s"`
	RedisPersistence       bool    `json:"redis_persistence"` // append-only file, fsync always
	HistorySize            int     `json:"history_size"`
	OwnTopology            bool    `json:"own_topology"` // started by the tool (else --url)
	FDLimit                uint64  `json:"bench_fd_limit"`
	WarmupS                float64 `json:"warmup_s"`

	Events []SoakEvent     `json:"events,omitempty"`
	Nodes  []*SoakInstance `json:"nodes"`

	// Deliveries beyond Result's: gaps the client was not told of (each
	// one's messages are in Result.Lost unless they came late, then in
	// OutOfOrder), and messages skipped where it was told (recovered:false
	// or a message of a new epoch): history Redis lost, not silent loss.
	SilentGaps         uint64 `json:"silent_gaps"`
	HistoryLostByRedis uint64 `json:"history_lost_by_redis_restart"`
	EpochChanges       uint64 `json:"epoch_changes_seen"`
	ClientsBehind      uint64 `json:"clients_behind_at_end"`
	RecoveredMessages  uint64 `json:"recovered_messages"` // delivered by a resubscribe, not live
	Unparsed           uint64 `json:"unparsed_frames"`

	ClosedByClient        uint64   `json:"closed_by_client"` // the churn
	ClosedByServer        uint64   `json:"closed_by_server"` // 1012 on SIGTERM, dead sockets
	Reconnects            uint64   `json:"reconnects"`       // resubscribed connections
	RecoveredTrue         uint64   `json:"recovered_true"`
	RecoveredFalse        uint64   `json:"recovered_false"`
	ReconnectFailures     uint64   `json:"reconnect_failures"` // attempts that failed and were retried
	FirstReconnectError   string   `json:"first_reconnect_error,omitempty"`
	RecoveryChurn         *Latency `json:"recovery_after_churn,omitempty"`        // own close to resubscribed
	RecoveryServerClose   *Latency `json:"recovery_after_server_close,omitempty"` // server's close to resubscribed
	PublishFailures       uint64   `json:"publish_failures"`                      // retried with the same idempotency key
	LongestPublishStallMS float64  `json:"longest_publish_stall_ms"`

	NodesView json.RawMessage `json:"nodes_view,omitempty"` // GET /api/nodes at the end figures

	Bars *SoakBars `json:"bars,omitempty"`
}

// SoakBars are the bars, judged.
type SoakBars struct {
	ZeroLost             bool    `json:"zero_lost"`
	GoroutinesWithin2Pct bool    `json:"goroutines_within_2pct"`
	FDsWithin2Pct        bool    `json:"fds_within_2pct"`
	HeapUnder1MBPer10Min bool    `json:"heap_growth_under_1mb_per_10min"`
	WorstHeapPer10MinMB  float64 `json:"worst_heap_growth_per_10min_mb"`
}

// SoakEvent is a restart during the run.
type SoakEvent struct {
	Name     string  `json:"name"`
	Target   string  `json:"target"`
	AtS      float64 `json:"at_s"`
	StoppedS float64 `json:"stopped_after_s,omitempty"` // SIGTERM to exit
	AwayS    float64 `json:"away_s"`                    // to ready again (an instance) or answering (Redis)
	ReadyS   float64 `json:"instances_ready_s,omitempty"`
	Note     string  `json:"note"`
}

// SoakInstance is one instance's figures.
type SoakInstance struct {
	ID         string          `json:"id,omitempty"`
	URL        string          `json:"url"`
	Restarted  bool            `json:"restarted"`
	Start      InstanceSample  `json:"start"`
	Rebalanced *InstanceSample `json:"refilled,omitempty"` // the restarted one's new process, once refilled
	End        InstanceSample  `json:"end"`

	Baseline            string   `json:"baseline"` // start, or refilled
	GoroutinesChangePct float64  `json:"goroutines_change_pct"`
	FDsChangePct        float64  `json:"fds_change_pct"`
	HeapPer10MinBytes   *float64 `json:"heap_growth_per_10min_bytes,omitempty"` // live heap (after a GC) when known, else heap in use
	HeapInusePer10Min   *float64 `json:"heap_inuse_growth_per_10min_bytes,omitempty"`
	CPUSec              float64  `json:"cpu_s,omitempty"` // baseline to end
}

// InstanceSample is an instance's figures at one moment, with every client
// connected.
type InstanceSample struct {
	AtS         float64 `json:"at_s"` // since publishing began
	PID         int     `json:"pid,omitempty"`
	Clients     int     `json:"clients"`     // this run's clients on it
	Connections int64   `json:"connections"` // switchboard_connections
	Goroutines  int64   `json:"goroutines"`  // switchboard_goroutines
	FDs         int     `json:"fds,omitempty"`
	RSSKB       int64   `json:"rss_kb,omitempty"`
	HeapInuse   int64   `json:"heap_inuse_bytes"`          // switchboard_heap_inuse_bytes
	LiveHeap    int64   `json:"live_heap_bytes,omitempty"` // HeapAlloc right after a forced GC
	CPUSec      float64 `json:"cpu_s,omitempty"`           // the process's CPU time so far
}

func pctChange(a, b float64) float64 {
	if a == 0 {
		return 0
	}
	return math.Round((b-a)/a*10000) / 100
}

// compare fills n's changes from its baseline to its end. The baseline is
// the start, or for the restarted instance its new process once refilled;
// without that, only the counts are compared (a new process's heap is
// not the old one's).
func (n *SoakInstance) compare() {
	base, sameProc := n.Start, !n.Restarted
	n.Baseline = "start"
	if n.Restarted {
		n.Baseline = "start (the process before the restart)"
		if n.Rebalanced != nil {
			base, sameProc = *n.Rebalanced, true
			n.Baseline = "refilled after the restart"
		}
	}
	if n.End.AtS == 0 {
		return
	}
	n.GoroutinesChangePct = pctChange(float64(base.Goroutines), float64(n.End.Goroutines))
	n.FDsChangePct = pctChange(float64(base.FDs), float64(n.End.FDs))
	span := n.End.AtS - base.AtS
	if !sameProc || span <= 0 {
		return
	}
	n.CPUSec = round3(n.End.CPUSec - base.CPUSec)
	per10 := func(a, b int64) *float64 {
		v := math.Round(float64(b-a) / span * 600)
		return &v
	}
	n.HeapInusePer10Min = per10(base.HeapInuse, n.End.HeapInuse)
	n.HeapPer10MinBytes = n.HeapInusePer10Min
	if base.LiveHeap > 0 && n.End.LiveHeap > 0 {
		n.HeapPer10MinBytes = per10(base.LiveHeap, n.End.LiveHeap)
	}
}

// judge sets the bars from the result.
func (rep *SoakReport) judge(r *Result) {
	b := &SoakBars{ZeroLost: r.Lost == 0 && rep.SilentGaps == 0, GoroutinesWithin2Pct: true, FDsWithin2Pct: true, HeapUnder1MBPer10Min: true}
	for _, n := range rep.Nodes {
		if n.End.AtS == 0 {
			b.GoroutinesWithin2Pct, b.FDsWithin2Pct, b.HeapUnder1MBPer10Min = false, false, false
			continue
		}
		if math.Abs(n.GoroutinesChangePct) > 2 {
			b.GoroutinesWithin2Pct = false
		}
		if n.End.FDs > 0 && math.Abs(n.FDsChangePct) > 2 {
			b.FDsWithin2Pct = false
		}
		if n.HeapPer10MinBytes != nil {
			mb := *n.HeapPer10MinBytes / (1 << 20)
			b.WorstHeapPer10MinMB = math.Max(b.WorstHeapPer10MinMB, math.Round(mb*1000)/1000)
			if mb >= 1 {
				b.HeapUnder1MBPer10Min = false
			}
		}
	}
	rep.Bars = b
}

// sampleLine is a one-line summary of samples, for progress lines.
func sampleLine(ss []InstanceSample) string {
	var parts []string
	for _, s := range ss {
		parts = append(parts, fmt.Sprintf("[pid %d: %d clients, %d goroutines, %d fds, heap in use %.1f MB, live %.1f MB]",
			s.PID, s.Clients, s.Goroutines, s.FDs, float64(s.HeapInuse)/(1<<20), float64(s.LiveHeap)/(1<<20)))
	}
	return strings.Join(parts, " ")
}

// nodeView is what the soak prints of one GET /api/nodes entry.
type nodeView struct {
	ID                   string  `json:"id"`
	Version              string  `json:"version"`
	Address              string  `json:"address"`
	State                string  `json:"state"`
	Connections          int64   `json:"connections"`
	Subscriptions        int64   `json:"subscriptions"`
	Channels             int     `json:"channels"`
	MessagesInPerSecond  float64 `json:"messages_in_per_second"`
	MessagesOutPerSecond float64 `json:"messages_out_per_second"`
	BrokerLatencyMS      float64 `json:"broker_latency_ms"`
	UptimeSeconds        float64 `json:"uptime_seconds"`
}

func mb(b int64) string { return fmt.Sprintf("%.1f", float64(b)/(1<<20)) }

func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "NO"
}

// writeSoakSummary writes a soak result as a few lines of text and tables.
func writeSoakSummary(w io.Writer, r *Result) {
	rep := r.Soak
	if rep == nil {
		return
	}
	redis := "Redis with the append-only file, fsync always"
	if !rep.RedisPersistence {
		redis = "Redis without persistence"
	}
	label := ""
	if r.Label != "" {
		label = " " + r.Label
	}
	fmt.Fprintf(w, "soak%s: %d instances, %d native clients on %d channels (%d each, history %d), %s msg/s published = %s deliveries/s asked, %.1f%% of clients reconnecting each second, %.0f s (warm-up %s s); %s\n",
		label, rep.Instances, rep.Clients, rep.Channels, r.RoomSize, rep.HistorySize, f1(r.Rate), f1(rep.DeliveriesPerSecTarget), rep.ReconnectPercent, r.DurationS, f1(rep.WarmupS), redis)
	l := r.Latency
	if l == nil {
		l = &Latency{}
	}
	fmt.Fprintf(w, "  deliveries %d of %d expected (%s/s); lost %d, duplicated %d, out of order %d; live latency p50 %s / p99 %s / max %s ms\n",
		r.Delivered, r.Expected, f1(r.DeliveriesPerSec), r.Lost, r.Duplicated, r.OutOfOrder, f3(l.P50MS), f3(l.P99MS), f3(l.MaxMS))
	fmt.Fprintf(w, "  history lost by the Redis restart (told: recovered:false or a new epoch): %d messages; recovered:false %d; epoch changes seen %d; silent gaps %d\n",
		rep.HistoryLostByRedis, rep.RecoveredFalse, rep.EpochChanges, rep.SilentGaps)
	fmt.Fprintf(w, "  reconnects %d (closed by the client %d, by the server %d), recovered:true %d, %d messages recovered; %d attempts failed and retried\n",
		rep.Reconnects, rep.ClosedByClient, rep.ClosedByServer, rep.RecoveredTrue, rep.RecoveredMessages, rep.ReconnectFailures)
	for _, x := range []struct {
		what string
		l    *Latency
	}{{"after its own disconnect", rep.RecoveryChurn}, {"after the server closed it", rep.RecoveryServerClose}} {
		if x.l != nil {
			fmt.Fprintf(w, "  recovery %s (to the resubscribe reply): %d, p50 %s / p99 %s / max %s ms\n", x.what, x.l.Count, f3(x.l.P50MS), f3(x.l.P99MS), f3(x.l.MaxMS))
		}
	}
	fmt.Fprintf(w, "  publishes %d, %d failed attempts retried (same idempotency key), longest wait for one %s ms; bench CPU %s s\n",
		r.Sent, rep.PublishFailures, f1(rep.LongestPublishStallMS), f1(r.BenchCPUSec))
	for _, e := range rep.Events {
		fmt.Fprintf(w, "  event at %.0f s: %s %s: %s\n", e.AtS, e.Name, e.Target, e.Note)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  instance\tbaseline\tclients\tgoroutines\tΔ\tfds\tΔ\tRSS MB\theap in use MB\tlive heap MB\theap growth /10 min\tCPU s")
	for _, n := range rep.Nodes {
		base := n.Start
		if n.Rebalanced != nil {
			base = *n.Rebalanced
		}
		growth := "-"
		if n.HeapPer10MinBytes != nil {
			growth = fmt.Sprintf("%+.3f MB", *n.HeapPer10MinBytes/(1<<20))
		}
		name := n.ID
		if name == "" {
			name = n.URL
		}
		if n.Restarted {
			name += " (restarted)"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%d→%d\t%d→%d\t%+.2f%%\t%d→%d\t%+.2f%%\t%s→%s\t%s→%s\t%s→%s\t%s\t%s\n",
			name, n.Baseline, base.Clients, n.End.Clients, base.Goroutines, n.End.Goroutines, n.GoroutinesChangePct,
			base.FDs, n.End.FDs, n.FDsChangePct, mb(base.RSSKB<<10), mb(n.End.RSSKB<<10),
			mb(base.HeapInuse), mb(n.End.HeapInuse), mb(base.LiveHeap), mb(n.End.LiveHeap), growth, f1(n.CPUSec))
	}
	_ = tw.Flush()
	if b := rep.Bars; b != nil {
		fmt.Fprintf(w, "  bars: zero lost %s; goroutines within 2%% %s; fds within 2%% %s; heap growth under 1 MB per 10 min %s (worst %+.3f MB)\n",
			yes(b.ZeroLost), yes(b.GoroutinesWithin2Pct), yes(b.FDsWithin2Pct), yes(b.HeapUnder1MBPer10Min), b.WorstHeapPer10MinMB)
	}
	writeNodesView(w, rep.NodesView)
	fmt.Fprintln(w)
}

// writeNodesView prints GET /api/nodes as the dashboard shows it.
func writeNodesView(w io.Writer, raw json.RawMessage) {
	if len(raw) == 0 {
		return
	}
	var v struct {
		Nodes []nodeView `json:"nodes"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		fmt.Fprintf(w, "  GET /api/nodes: %s\n", raw)
		return
	}
	fmt.Fprintln(w, "  the dashboard's view (GET /api/nodes, at the end figures):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  node\tstate\tconnections\tsubscriptions\tchannels\tin/s\tout/s\tbroker ms\tuptime s\taddress")
	var out float64
	for _, n := range v.Nodes {
		out += n.MessagesOutPerSecond
		fmt.Fprintf(tw, "  %s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t%.0f\t%s\n", n.ID, n.State, n.Connections, n.Subscriptions, n.Channels,
			f1(n.MessagesInPerSecond), f1(n.MessagesOutPerSecond), f3(n.BrokerLatencyMS), n.UptimeSeconds, n.Address)
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "  messages out per second, all nodes: %s\n", f1(out))
}
