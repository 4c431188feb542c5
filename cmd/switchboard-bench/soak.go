//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The soak scenario runs the cluster for a long time under steady load and
// churn, with an instance restart and a Redis restart on the way, and
// reports whether anything was lost and whether the instances hold the
// same goroutines, descriptors and heap at the end as at the start.
//
// Loss is exact: every client follows one channel with history; each
// message carries its channel's sequence number; a client that reconnects
// resubscribes with since = the position it last saw and must receive
// every message it missed, once, in order. A gap the client is told of
// (recovered:false, or a message of a new epoch) is counted apart, as
// history lost by Redis, from a gap it is not told of (lost).

// soakRun is one soak: its clients, publisher and figures. The control
// goroutine (runSoak) owns the timeline; readers, reconnect workers, the
// churn goroutine and the publisher run beside it.
type soakRun struct {
	cfg      *Config
	e        *env
	topo     *topology // nil when --url names the instances
	runID    string
	chans    []string
	clients  []*soakClient
	httpURLs []string // each instance's http://host:port, in target order
	// scrape reads /metrics and /api/nodes, one request at a time, so it
	// holds one keep-alive connection per instance at most; debug reads
	// the profiler without keep-alive: that listener has no idle timeout,
	// and a connection left open would count in the next figures.
	scrape *http.Client
	debug  *http.Client
	start  time.Time // publishing began

	queue    chan *soakClient // clients to reconnect; cap len(clients)
	quitCh   chan struct{}    // closed when the run ends
	quit     atomic.Bool
	churnOn  atomic.Bool
	inflight atomic.Int64 // clients queued or reconnecting

	pickMu   sync.Mutex
	load     []int       // this run's clients on (or connecting to) each target; guarded by pickMu
	downTill []time.Time // guarded by pickMu

	st  soakStats
	pub *soakPublisher
}

func soakDefaults(c *Config) error {
	if c.Dialect != "" && c.Dialect != "raw" && c.Dialect != "native" {
		return fmt.Errorf("soak: --dialect %s: the soak's clients speak native (recovery needs it)", c.Dialect)
	}
	c.Dialect = "native"
	setInt := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	setInt(&c.Clients, 5000)
	setInt(&c.Channels, 100)
	setInt(&c.Instances, 3)
	setInt(&c.HistorySize, 1000)
	if c.DeliveriesPerSec <= 0 {
		c.DeliveriesPerSec = 10000
	}
	if c.ReconnectPercent == 0 {
		c.ReconnectPercent = 5
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Minute
	}
	if c.Warmup <= 0 {
		c.Warmup = min(c.Duration/10, 30*time.Second)
	}
	if c.RestartInstanceAt == 0 {
		c.RestartInstanceAt = c.Duration / 3
	}
	if c.RestartRedisAt == 0 {
		c.RestartRedisAt = 2 * c.Duration / 3
	}
	if c.RedisDowntime <= 0 {
		c.RedisDowntime = time.Second
	}
	if c.RedisBin == "" {
		c.RedisBin = "redis-server"
	}
	switch {
	case c.Channels > c.Clients:
		return fmt.Errorf("soak: --channels %d is more than --clients %d", c.Channels, c.Clients)
	case c.Warmup >= c.Duration:
		return fmt.Errorf("soak: --warmup %v must be shorter than --duration %v", c.Warmup, c.Duration)
	case c.RestartInstanceAt > 0 && (c.RestartInstanceAt <= c.Warmup || c.RestartInstanceAt >= c.Duration):
		return fmt.Errorf("soak: --restart-instance-at %v must fall after the warm-up (%v) and before the end (%v)", c.RestartInstanceAt, c.Warmup, c.Duration)
	case c.RestartRedisAt > 0 && (c.RestartRedisAt <= c.Warmup || c.RestartRedisAt >= c.Duration):
		return fmt.Errorf("soak: --restart-redis-at %v must fall after the warm-up (%v) and before the end (%v)", c.RestartRedisAt, c.Warmup, c.Duration)
	}
	return nil
}

// runSoak runs the soak scenario.
func runSoak(ctx context.Context, cfg *Config) ([]Result, error) {
	limit := raiseFDLimit()
	if need := uint64(cfg.Clients + cfg.Clients/5 + 512); limit < need {
		return nil, fmt.Errorf("soak: %d clients need about %d descriptors in this process, which may hold %d (ulimit -n; raise the hard limit)", cfg.Clients, need, limit)
	}
	logf(cfg, "soak: %d clients over %d channels, %.0f deliveries/s, %.1f%% reconnecting per second, %v; descriptors allowed %d",
		cfg.Clients, cfg.Channels, cfg.DeliveriesPerSec, cfg.ReconnectPercent, cfg.Duration, limit)
	s := &soakRun{cfg: cfg, runID: strconv.FormatUint(rand.Uint64()%(36*36*36*36*36*36), 36),
		scrape: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}},
		debug:  &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
		quitCh: make(chan struct{})}
	defer s.scrape.CloseIdleConnections()
	var pids []int
	if len(cfg.URLs) == 0 {
		topo, err := startTopology(ctx, cfg, func(f string, a ...any) { logf(cfg, f, a...) })
		if err != nil {
			return nil, err
		}
		s.topo = topo
		for _, in := range topo.instances {
			cfg.URLs = append(cfg.URLs, in.wsURL())
		}
		logf(cfg, "soak: redis on port %d (%s), %d instances %v; logs in %s", topo.redisPort,
			map[bool]string{false: "append-only file, fsync always", true: "no persistence"}[cfg.RedisVolatile], len(topo.instances), cfg.URLs, topo.dir)
	} else {
		pids = cfg.ServerPIDs
	}
	res, err := s.setupAndRun(ctx, pids)
	if s.topo != nil {
		s.topo.close()
		if err == nil && res.Lost == 0 && res.Duplicated == 0 {
			_ = os.RemoveAll(s.topo.dir)
		} else {
			logf(cfg, "soak: logs kept in %s", s.topo.dir)
		}
	}
	return []Result{res}, err
}

// setupAndRun makes the clients and runs; the readers and connections are
// gone when it returns.
func (s *soakRun) setupAndRun(ctx context.Context, pids []int) (Result, error) {
	cfg := s.cfg
	e, err := newEnv(cfg, false, cfg.Clients)
	if err != nil {
		return Result{Scenario: "soak"}, err
	}
	s.e = e
	defer e.close()
	for _, t := range e.targets {
		s.httpURLs = append(s.httpURLs, "http://"+t.host+t.base)
	}
	if s.topo == nil && len(pids) != 0 && len(pids) != len(e.targets) {
		return Result{Scenario: "soak"}, fmt.Errorf("soak: give one --server-pid per --url (%d and %d)", len(pids), len(e.targets))
	}
	for _, r := range e.readers {
		r.mu.Lock()
		r.onMessage, r.onClose = s.onMessage, s.onClose
		r.mu.Unlock()
	}
	s.load = make([]int, len(e.targets))
	s.downTill = make([]time.Time, len(e.targets))
	for i := range cfg.Channels {
		s.chans = append(s.chans, "soak-"+s.runID+"-"+strconv.Itoa(i))
	}
	for i := range cfg.Clients {
		s.clients = append(s.clients, &soakClient{idx: i, ch: i % cfg.Channels})
	}
	s.queue = make(chan *soakClient, len(s.clients))
	return s.run(ctx, pids)
}

// run connects the clients, runs the timeline and gathers the result.
func (s *soakRun) run(ctx context.Context, pids []int) (Result, error) {
	cfg := s.cfg
	r := Result{Scenario: "soak", Subscribers: cfg.Clients, Rooms: cfg.Channels, RoomSize: cfg.Clients / cfg.Channels}
	s.e.base(&r)
	r.Publish = "http"
	rep := &SoakReport{Instances: len(s.e.targets), Clients: cfg.Clients, Channels: cfg.Channels,
		DeliveriesPerSecTarget: cfg.DeliveriesPerSec, ReconnectPercent: cfg.ReconnectPercent,
		RedisPersistence: !cfg.RedisVolatile, HistorySize: cfg.HistorySize, OwnTopology: s.topo != nil,
		WarmupS: cfg.Warmup.Seconds()}
	rep.FDLimit = raiseFDLimit()
	r.Soak = rep
	pubRate := cfg.DeliveriesPerSec * float64(cfg.Channels) / float64(cfg.Clients)
	r.Rate = math.Round(pubRate*10) / 10

	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		s.churnOn.Store(false)
		s.quit.Store(true)
		close(s.quitCh)
		cancel()
		wg.Wait()
	}()

	logf(cfg, "soak: connecting %d clients", len(s.clients))
	var failed atomic.Uint64
	parallel(len(s.clients), cfg.Concurrency, time.Now().Add(2*time.Minute), func(i int) {
		cl := s.clients[i]
		var err error
		for range 5 {
			ti := s.pickFirst()
			if err = s.connect(runCtx, cl, ti); err == nil {
				return
			}
			s.unpick(ti, err)
			sleepCtx(runCtx, 100*time.Millisecond)
		}
		failed.Add(1)
		s.e.noteErr(err)
	})
	if n := failed.Load(); n > 0 {
		r.ConnErrors = n
		return r, fmt.Errorf("soak: %d of %d clients could not connect: %v", n, len(s.clients), s.e.first.Load())
	}
	// Enough reconnect workers that an instance restart (a third of the
	// clients at once, each first waiting up to 250 ms as clients do) does
	// not queue behind them: the recovery times are the server's.
	for range 256 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.worker(runCtx)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.churn()
	}()

	instPID := func(i int) int {
		if s.topo != nil {
			return s.topo.instances[i].proc.pid()
		}
		if i < len(pids) {
			return pids[i]
		}
		return 0
	}
	nodes := make([]*SoakInstance, len(s.e.targets))
	for i, t := range s.e.targets {
		nodes[i] = &SoakInstance{URL: "ws://" + t.host + t.base}
		if s.topo != nil {
			nodes[i].ID = s.topo.instances[i].id
		}
	}
	rep.Nodes = nodes

	s.pub = newSoakPublisher(s, pubRate)
	cpu0 := selfCPU()
	s.start = time.Now()
	s.pub.start(runCtx)
	s.churnOn.Store(true)
	logf(cfg, "soak: publishing %.1f msg/s (%.0f deliveries/s), warm-up %v", pubRate, cfg.DeliveriesPerSec, cfg.Warmup)

	type event struct {
		at   time.Duration
		name string
	}
	var events []event
	switch {
	case s.topo == nil:
		logf(cfg, "soak: the instances are not this tool's (--url): no instance or Redis restart")
	default:
		if cfg.RestartInstanceAt > 0 {
			events = append(events, event{cfg.RestartInstanceAt, "restart-instance"})
		}
		if cfg.RestartRedisAt > 0 {
			events = append(events, event{cfg.RestartRedisAt, "restart-redis"})
		}
		if len(events) == 2 && events[1].at < events[0].at {
			events[0], events[1] = events[1], events[0]
		}
	}
	restarted := -1
	var restartedAt time.Time
	startTaken := false
	var runErr error
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for ctx.Err() == nil {
		el := time.Since(s.start)
		if el >= cfg.Duration && len(events) == 0 {
			break
		}
		if !startTaken && el >= cfg.Warmup {
			startTaken = true
			samples, _ := s.checkpoint(instPID, false)
			for i, sm := range samples {
				nodes[i].Start = sm
			}
			logf(cfg, "soak: start figures taken at %.0f s: %s", el.Seconds(), sampleLine(samples))
		}
		if len(events) > 0 && el >= events[0].at {
			ev := events[0]
			events = events[1:]
			sev := SoakEvent{Name: ev.name, AtS: round3(el.Seconds())}
			if late := el - ev.at; late > time.Second {
				// The one before took that long: it still runs, late.
				logf(cfg, "soak: %s runs %.1f s late", ev.name, late.Seconds())
			}
			switch ev.name {
			case "restart-instance":
				restarted = len(s.topo.instances) - 1
				in := s.topo.instances[restarted]
				oldPID := in.proc.pid()
				sig, sigName := syscall.SIGTERM, "SIGTERM"
				if cfg.KillInstance {
					sig, sigName = syscall.SIGKILL, "SIGKILL"
				}
				logf(cfg, "soak: %.0f s: %s to %s (pid %d), %d clients on it", el.Seconds(), sigName, in.id, oldPID, s.loadOf(restarted))
				stopped, away, err := s.topo.restartInstance(runCtx, in, sig)
				sev.Target, sev.StoppedS, sev.AwayS = in.id, round3(stopped.Seconds()), round3(away.Seconds())
				sev.Note = fmt.Sprintf("pid %d ended %.1f s after %s; pid %d ready %.1f s after it", oldPID, stopped.Seconds(), sigName, in.proc.pid(), away.Seconds())
				nodes[restarted].Restarted = true
				restartedAt = time.Now()
				if err != nil {
					runErr = err
				}
			case "restart-redis":
				logf(cfg, "soak: %.0f s: SIGKILL to redis-server", el.Seconds())
				back, ready, err := s.topo.restartRedis(runCtx, cfg.RedisDowntime)
				sev.Target, sev.AwayS, sev.ReadyS = "redis", round3(back.Seconds()), round3(ready.Seconds())
				sev.Note = fmt.Sprintf("redis answered again %.1f s after the kill (down %v on purpose); every instance ready %.1f s after it", back.Seconds(), cfg.RedisDowntime, ready.Seconds())
				if err != nil {
					runErr = err
				}
			}
			logf(cfg, "soak: %s", sev.Note)
			rep.Events = append(rep.Events, sev)
			if runErr != nil {
				break
			}
			continue
		}
		// The restarted instance's own baseline: once least-connections
		// has filled it to its share again, as the others hold (or a
		// minute on), before the next event.
		if restarted >= 0 && nodes[restarted].Rebalanced == nil {
			fair := float64(len(s.clients)) / float64(len(s.load))
			nextSoon := len(events) > 0 && el+5*time.Second >= events[0].at
			if !nextSoon && el+5*time.Second < cfg.Duration &&
				(float64(s.loadOf(restarted)) >= fair-2 || time.Since(restartedAt) > time.Minute) {
				samples, _ := s.checkpoint(instPID, false)
				sm := samples[restarted]
				nodes[restarted].Rebalanced = &sm
				logf(cfg, "soak: %s refilled at %.0f s: %s", nodes[restarted].ID, el.Seconds(), sampleLine(samples[restarted:restarted+1]))
			}
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
	if !startTaken && ctx.Err() == nil {
		runErr = fmt.Errorf("soak: ended before the warm-up was over")
	}
	if runErr == nil && ctx.Err() == nil {
		samples, view := s.checkpoint(instPID, true)
		for i, sm := range samples {
			nodes[i].End = sm
		}
		rep.NodesView = view
		logf(cfg, "soak: end figures taken at %.0f s: %s", time.Since(s.start).Seconds(), sampleLine(samples))
	}
	s.churnOn.Store(false)

	// Stop publishing, then wait for every client to have everything.
	s.pub.stop()
	pubWall := time.Since(s.start)
	finals := make([]uint64, len(s.chans))
	for i := range finals {
		finals[i] = s.pub.acked[i].Load()
	}
	drain := max(cfg.Drain, 15*time.Second)
	deadline := time.Now().Add(drain)
	for time.Now().Before(deadline) && ctx.Err() == nil && !s.caughtUp(finals) {
		time.Sleep(50 * time.Millisecond)
	}
	s.finish(&r, finals, pubWall)
	r.BenchCPUSec = round3((selfCPU() - cpu0).Seconds())
	r.Disconnects = rep.ClosedByClient + rep.ClosedByServer
	for _, n := range nodes {
		n.compare()
	}
	rep.judge(&r)
	if ctx.Err() != nil && runErr == nil {
		runErr = ctx.Err()
	}
	return r, runErr
}

// loadOf returns how many of this run's clients target i holds.
func (s *soakRun) loadOf(i int) int {
	s.pickMu.Lock()
	defer s.pickMu.Unlock()
	return s.load[i]
}

// caughtUp reports whether no client is reconnecting and every client has
// its channel's last acknowledged message.
func (s *soakRun) caughtUp(finals []uint64) bool {
	if s.inflight.Load() != 0 {
		return false
	}
	for _, cl := range s.clients {
		cl.mu.Lock()
		behind := cl.last < finals[cl.ch] || len(cl.missing) > 0
		cl.mu.Unlock()
		if behind {
			return false
		}
	}
	return true
}

// finish fills the result's delivery figures once the run is over.
func (s *soakRun) finish(r *Result, finals []uint64, pubWall time.Duration) {
	var expected, lost, behind uint64
	for _, cl := range s.clients {
		cl.mu.Lock()
		f := finals[cl.ch]
		expected += f
		lost += uint64(len(cl.missing))
		if cl.last < f {
			lost += f - cl.last
			behind++
		}
		cl.mu.Unlock()
	}
	st := &s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	rep := r.Soak
	r.Sent = s.pub.sent.Load()
	r.DurationS = round3(pubWall.Seconds())
	r.SentRate = math.Round(float64(r.Sent) / pubWall.Seconds())
	r.Expected = expected
	r.Delivered = st.delivered
	r.Lost = lost
	r.Duplicated = st.dup
	r.OutOfOrder = st.ooo
	r.DeliveriesPerSec = math.Round(float64(st.delivered) / pubWall.Seconds())
	lat := summarize(&st.live)
	r.Latency = &lat
	r.ConnErrors = s.e.connErr.Load()
	r.RequestErrors = s.pub.failures.Load()
	if f, ok := s.pub.firstErr.Load().(string); ok {
		r.FirstError = "publish: " + f
	}
	r.CloseCodes = s.e.closeCodes()
	for code, n := range r.CloseCodes {
		if code == strconv.Itoa(closedByClient) {
			rep.ClosedByClient += n
		} else {
			rep.ClosedByServer += n
		}
	}
	rep.ClientsBehind = behind
	rep.SilentGaps = st.silentGaps
	rep.HistoryLostByRedis = st.declaredLost
	rep.EpochChanges = st.epochChanges
	rep.RecoveredTrue = st.recoveredTrue
	rep.RecoveredFalse = st.recoveredFalse
	rep.RecoveredMessages = st.recoveredMsgs
	rep.Reconnects = st.reconnects
	rep.ReconnectFailures = st.dialFailures
	rep.FirstReconnectError = st.firstDialErr
	rep.Unparsed = st.unparsed
	if st.recoverChurn.Count() > 0 {
		l := summarize(&st.recoverChurn)
		l.Hist = nil
		rep.RecoveryChurn = &l
	}
	if st.recoverServer.Count() > 0 {
		l := summarize(&st.recoverServer)
		l.Hist = nil
		rep.RecoveryServerClose = &l
	}
	rep.PublishFailures = s.pub.failures.Load()
	rep.LongestPublishStallMS = float64(s.pub.maxStall.Load()) / 1e6
}

// checkpoint pauses the churn, waits until every client is connected and
// every instance has seen the closes, samples each instance (and, when
// asked, GET /api/nodes), and resumes the churn. Publishing goes on.
func (s *soakRun) checkpoint(pid func(int) int, withNodes bool) ([]InstanceSample, json.RawMessage) {
	was := s.churnOn.Swap(false)
	defer s.churnOn.Store(was)
	deadline := time.Now().Add(60 * time.Second)
	for s.inflight.Load() != 0 && time.Now().Before(deadline) && !s.quit.Load() {
		time.Sleep(20 * time.Millisecond)
	}
	// The servers count a connection until they have seen it close.
	deadline = time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		settled := true
		for i := range s.e.targets {
			m, err := s.metrics(i)
			if err != nil || int(m["switchboard_connections"]) != s.loadOf(i) {
				settled = false
				break
			}
		}
		if settled {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	out := make([]InstanceSample, len(s.e.targets))
	for i := range s.e.targets {
		out[i] = s.sample(i, pid(i))
	}
	var view json.RawMessage
	if withNodes {
		view = s.nodesView()
	}
	return out, view
}

// sample reads instance i's figures: the least of five readings 200 ms
// apart for goroutines, descriptors and heap in use (a leak holds on, a
// request in flight does not), then RSS, CPU and the heap live after a
// forced GC.
func (s *soakRun) sample(i, pid int) InstanceSample {
	sm := InstanceSample{AtS: round3(time.Since(s.start).Seconds()), PID: pid, Clients: s.loadOf(i)}
	first := true
	for k := range 5 {
		if k > 0 {
			time.Sleep(200 * time.Millisecond)
		}
		m, err := s.metrics(i)
		if err != nil {
			continue
		}
		g, h := int64(m["switchboard_goroutines"]), int64(m["switchboard_heap_inuse_bytes"])
		fds := 0
		if pid > 0 {
			if ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd"); err == nil {
				fds = len(ents)
			}
		}
		if first || g < sm.Goroutines {
			sm.Goroutines = g
		}
		if first || h < sm.HeapInuse {
			sm.HeapInuse = h
		}
		if first || fds < sm.FDs {
			sm.FDs = fds
		}
		sm.Connections = int64(m["switchboard_connections"])
		first = false
	}
	if pid > 0 {
		if rss, err := procRSS(pid); err == nil {
			sm.RSSKB = rss / 1024
		}
		if cpu, err := procCPU(pid); err == nil {
			sm.CPUSec = cpu.Seconds()
		}
	}
	if s.topo != nil {
		sm.LiveHeap = s.liveHeap(s.topo.instances[i].debugURL())
	}
	return sm
}

// metrics reads instance i's /metrics: the unlabelled samples by name.
func (s *soakRun) metrics(i int) (map[string]float64, error) {
	resp, err := s.scrape.Get(s.httpURLs[i] + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return parseMetrics(b), nil
}

// parseMetrics returns the unlabelled samples of a Prometheus text page.
func parseMetrics(b []byte) map[string]float64 {
	out := map[string]float64{}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		name, val, ok := bytes.Cut(line, []byte(" "))
		if !ok || bytes.ContainsRune(name, '{') {
			continue
		}
		if v, err := strconv.ParseFloat(string(bytes.TrimSpace(val)), 64); err == nil {
			out[string(name)] = v
		}
	}
	return out
}

// liveHeap returns HeapAlloc right after a forced GC, from the instance's
// profiler (/debug/pprof/heap?gc=1&debug=1 ends with the MemStats), or 0.
func (s *soakRun) liveHeap(debugURL string) int64 {
	resp, err := s.debug.Get(debugURL + "/debug/pprof/heap?gc=1&debug=1")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0
	}
	return parseHeapAlloc(b)
}

// parseHeapAlloc finds "# HeapAlloc = N" in a debug=1 heap profile.
func parseHeapAlloc(b []byte) int64 {
	v, ok := jsonUint(b, "\n# HeapAlloc = ")
	if !ok {
		return 0
	}
	return int64(v)
}

// nodesView returns GET /api/nodes from the first instance that answers:
// what the dashboard shows.
func (s *soakRun) nodesView() json.RawMessage {
	for _, u := range s.httpURLs {
		req, err := http.NewRequest(http.MethodGet, u+"/api/nodes", nil)
		if err != nil {
			continue
		}
		if s.cfg.APIKey != "" {
			req.Header.Set("Authorization", "Bearer "+s.cfg.APIKey)
		}
		resp, err := s.scrape.Do(req)
		if err != nil {
			continue
		}
		b, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err == nil && resp.StatusCode == http.StatusOK && json.Valid(b) {
			return json.RawMessage(bytes.TrimSpace(b))
		}
	}
	return nil
}

// soakPublisher publishes numbered messages to every channel through
// POST /api/publish, spreading requests over the instances. One goroutine
// owns each channel and publishes its next message only once the last
// one is acknowledged, retrying a failed publish (on the next instance)
// with the same idempotency key, so that a retry never duplicates.
type soakPublisher struct {
	s        *soakRun
	clients  []*http.Client // one per goroutine: one connection per instance each, a steady count
	rate     float64
	acked    []atomic.Uint64 // per channel: the last acknowledged sequence number
	stopped  atomic.Bool
	wg       sync.WaitGroup
	rr       atomic.Uint64
	sent     atomic.Uint64
	failures atomic.Uint64
	firstErr atomic.Value
	maxStall atomic.Int64 // longest time one message took to be acknowledged, ns
}

func newSoakPublisher(s *soakRun, rate float64) *soakPublisher {
	return &soakPublisher{s: s, rate: rate, acked: make([]atomic.Uint64, len(s.chans))}
}

// start runs four publishing goroutines (fewer with fewer channels), each
// owning every fourth channel.
func (p *soakPublisher) start(ctx context.Context) {
	n := min(4, len(p.s.chans))
	for g := range n {
		var owned []int
		for ch := g; ch < len(p.s.chans); ch += n {
			owned = append(owned, ch)
		}
		hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
		p.clients = append(p.clients, hc)
		p.wg.Add(1)
		go p.loop(ctx, hc, owned, p.rate*float64(len(owned))/float64(len(p.s.chans)))
	}
}

// stop ends publishing once the publishes in flight are acknowledged.
func (p *soakPublisher) stop() {
	p.stopped.Store(true)
	p.wg.Wait()
	for _, hc := range p.clients {
		hc.CloseIdleConnections()
	}
}

// loop publishes to owned channels in turn at rate msg/s, catching up
// after a stall (a Redis restart) as fast as the server answers.
func (p *soakPublisher) loop(ctx context.Context, hc *http.Client, owned []int, rate float64) {
	defer p.wg.Done()
	start := time.Now()
	var i uint64
	var body []byte
	for !p.stopped.Load() && ctx.Err() == nil {
		due := uint64(time.Since(start).Seconds()*rate) + 1
		if i >= due {
			next := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
			time.Sleep(max(time.Millisecond, min(time.Until(next), 10*time.Millisecond)))
			continue
		}
		ch := owned[int(i%uint64(len(owned)))]
		if !p.publish(ctx, hc, ch, &body) {
			return
		}
		i++
	}
}

// publish publishes channel ch's next message until it is acknowledged
// or ctx ends.
func (p *soakPublisher) publish(ctx context.Context, hc *http.Client, ch int, body *[]byte) bool {
	s := p.s
	seq := p.acked[ch].Load() + 1
	key := s.runID + "-" + strconv.Itoa(ch) + "-" + strconv.FormatUint(seq, 10)
	began := time.Now()
	for attempt := 0; ; attempt++ {
		b := append((*body)[:0], `{"channel":`...)
		b = strconv.AppendQuote(b, s.chans[ch])
		b = append(b, `,"data":`...)
		b = appendJSONPayload(b, seq, time.Now().UnixNano(), s.cfg.Size)
		b = append(b, `,"idempotency_key":`...)
		b = strconv.AppendQuote(b, key)
		b = append(b, '}')
		*body = b
		u := s.httpURLs[int(p.rr.Add(1)%uint64(len(s.httpURLs)))]
		err := p.post(ctx, hc, u, b)
		if err == nil {
			p.acked[ch].Store(seq)
			p.sent.Add(1)
			d := int64(time.Since(began))
			for m := p.maxStall.Load(); d > m && !p.maxStall.CompareAndSwap(m, d); m = p.maxStall.Load() {
			}
			return true
		}
		p.failures.Add(1)
		p.firstErr.CompareAndSwap(nil, err.Error())
		if ctx.Err() != nil {
			return false
		}
		sleepCtx(ctx, min(20*time.Millisecond*time.Duration(attempt+1), 250*time.Millisecond))
	}
}

func (p *soakPublisher) post(ctx context.Context, hc *http.Client, base string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/publish", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if p.s.cfg.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+p.s.cfg.APIKey)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s/api/publish: %s %s", base, resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }
