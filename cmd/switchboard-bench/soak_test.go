//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// buildSwitchboard builds cmd/switchboard for the test, with the race
// detector when the test has it (the binary e2e builds too, so the build
// cache serves both).
func buildSwitchboard(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "switchboard")
	args := []string{"build"}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "-o", bin, "github.com/switchboard-rt/switchboard/cmd/switchboard")
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		t.Fatalf("go %v: %v\n%s", args, err, out)
	}
	return bin
}

// TestSoak runs the soak scenario briefly on its own cluster (Redis and
// three instances it starts): 300 clients, 5% of them reconnecting each
// second, one instance restarted and Redis killed and restarted. Nothing
// may be lost or duplicated, and the report must carry its figures.
func TestSoak(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server not found (%v): the soak starts a real one; install it (apt-get install -y redis-server)", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cfg := Config{
		Scenario: "soak", Clients: 300, Channels: 10, DeliveriesPerSec: 3000,
		Duration: 4 * time.Second, Warmup: 500 * time.Millisecond,
		RestartInstanceAt: time.Second, RestartRedisAt: 2500 * time.Millisecond,
		ServerBin: buildSwitchboard(t), ServerArgs: []string{"--shutdown-timeout", "1s"},
	}
	rs, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].Soak == nil {
		t.Fatalf("results = %+v", rs)
	}
	r, rep := rs[0], rs[0].Soak
	if r.Expected == 0 || r.Delivered != r.Expected || r.Lost != 0 || r.Duplicated != 0 || r.OutOfOrder != 0 {
		t.Errorf("expected %d delivered %d lost %d dup %d ooo %d", r.Expected, r.Delivered, r.Lost, r.Duplicated, r.OutOfOrder)
	}
	if rep.SilentGaps != 0 || rep.HistoryLostByRedis != 0 || rep.RecoveredFalse != 0 || rep.ClientsBehind != 0 || rep.Unparsed != 0 {
		t.Errorf("silent gaps %d, history lost %d, recovered:false %d, behind %d, unparsed %d (Redis keeps its append-only file)",
			rep.SilentGaps, rep.HistoryLostByRedis, rep.RecoveredFalse, rep.ClientsBehind, rep.Unparsed)
	}
	if rep.ClosedByClient == 0 || rep.ClosedByServer == 0 || rep.RecoveredTrue == 0 || rep.Reconnects != rep.ClosedByClient+rep.ClosedByServer {
		t.Errorf("closed by client %d, by server %d, reconnects %d, recovered:true %d", rep.ClosedByClient, rep.ClosedByServer, rep.Reconnects, rep.RecoveredTrue)
	}
	if rep.RecoveryChurn == nil || rep.RecoveryServerClose == nil || r.Latency == nil || r.Latency.Count == 0 {
		t.Errorf("recovery latencies %v %v, delivery latency %v", rep.RecoveryChurn, rep.RecoveryServerClose, r.Latency)
	}
	var names []string
	for _, e := range rep.Events {
		names = append(names, e.Name)
		if e.AwayS <= 0 {
			t.Errorf("event %+v", e)
		}
	}
	if strings.Join(names, ",") != "restart-instance,restart-redis" {
		t.Errorf("events = %v", names)
	}
	if len(rep.Nodes) != 3 {
		t.Fatalf("%d nodes", len(rep.Nodes))
	}
	for _, n := range rep.Nodes {
		for what, s := range map[string]InstanceSample{"start": n.Start, "end": n.End} {
			if s.PID == 0 || s.Goroutines == 0 || s.FDs == 0 || s.RSSKB == 0 || s.HeapInuse == 0 || s.LiveHeap == 0 || s.Connections != int64(s.Clients) {
				t.Errorf("%s %s: %+v", n.ID, what, s)
			}
		}
		if n.Restarted != (n.ID == "soak-3") || n.Restarted == (n.Start.PID == n.End.PID) {
			t.Errorf("%s restarted %v, pid %d then %d", n.ID, n.Restarted, n.Start.PID, n.End.PID)
		}
		if !n.Restarted && n.HeapPer10MinBytes == nil {
			t.Errorf("%s has no heap growth", n.ID)
		}
	}
	if rep.Bars == nil || !rep.Bars.ZeroLost {
		t.Errorf("bars = %+v", rep.Bars)
	}
	var view struct{ Nodes []nodeView }
	if err := json.Unmarshal(rep.NodesView, &view); err != nil || len(view.Nodes) != 3 || view.Nodes[0].ID != "soak-1" {
		t.Errorf("nodes view %s: %v", rep.NodesView, err)
	}
	var out bytes.Buffer
	writeTable(&out, rs)
	for _, want := range []string{"lost 0, duplicated 0", "restart-redis", "soak-3 (restarted)", "the dashboard's view", "bars: zero lost yes"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
	checkOutputs(t, rs)
}

func TestParseSoakFrames(t *testing.T) {
	t.Parallel()
	msg := []byte(`{"op":"message","channel":"soak-a-1","data":{"s":42,"t":1700000000000000000,"p":"xx"},"epoch":"k3x9","offset":17,"ts":1700000000000}`)
	seq, ts, ep, off, ok := parseSoakMessage(msg)
	if !ok || seq != 42 || ts != 1700000000000000000 || string(ep) != "k3x9" || off != 17 {
		t.Errorf("message: %d %d %q %d %v", seq, ts, ep, off, ok)
	}
	for _, bad := range []string{`{"id":1,"ok":true,"epoch":"k","offset":1}`, `{"op":"message","channel":"c","data":{"s":1,"t":2}}`, `{"op":"join"}`} {
		if _, _, _, _, ok := parseSoakMessage([]byte(bad)); ok {
			t.Errorf("%s parsed", bad)
		}
	}
	tests := []struct {
		in        string
		epoch     string
		offset    uint64
		recovered int
		err       bool
	}{
		{`{"id":1,"ok":true,"epoch":"e1","offset":0}`, "e1", 0, -1, false},
		{`{"id":1,"ok":true,"epoch":"e1","offset":9,"recovered":true}`, "e1", 9, 1, false},
		{`{"id":1,"ok":true,"epoch":"e2","offset":3,"recovered":false}`, "e2", 3, 0, false},
		{`{"id":1,"ok":true}`, "", 0, -1, true},
	}
	for _, tt := range tests {
		got, err := parseSoakReply([]byte(tt.in))
		if (err != nil) != tt.err || (!tt.err && (got.epoch != tt.epoch || got.offset != tt.offset || got.recovered != tt.recovered)) {
			t.Errorf("%s: %+v %v", tt.in, got, err)
		}
	}
	page := []byte("# HELP switchboard_goroutines x\n# TYPE switchboard_goroutines gauge\nswitchboard_goroutines 25\nswitchboard_x{a=\"b\"} 3\nswitchboard_heap_inuse_bytes 6.5e+06\n")
	if m := parseMetrics(page); m["switchboard_goroutines"] != 25 || m["switchboard_heap_inuse_bytes"] != 6.5e6 || len(m) != 2 {
		t.Errorf("metrics = %v", m)
	}
	if v := parseHeapAlloc([]byte("heap profile: ...\n# runtime.MemStats\n# Alloc = 10\n# HeapAlloc = 3876543\n# HeapSys = 9\n")); v != 3876543 {
		t.Errorf("HeapAlloc = %d", v)
	}
}
