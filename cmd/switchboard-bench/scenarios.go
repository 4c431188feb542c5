//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"
)

// Latency summarizes a histogram in milliseconds.
type Latency struct {
	Count  uint64   `json:"count"`
	MeanMS float64  `json:"mean_ms"`
	P50MS  float64  `json:"p50_ms"`
	P90MS  float64  `json:"p90_ms"`
	P99MS  float64  `json:"p99_ms"`
	P999MS float64  `json:"p999_ms"`
	MaxMS  float64  `json:"max_ms"`
	Hist   []Bucket `json:"histogram,omitempty"`
}

func summarize(h *Histogram) Latency {
	ms := func(v uint64) float64 { return math.Round(float64(v)/1e3) / 1e3 }
	return Latency{
		Count:  h.Count(),
		MeanMS: math.Round(h.Mean()/1e3) / 1e3,
		P50MS:  ms(h.Quantile(0.50)),
		P90MS:  ms(h.Quantile(0.90)),
		P99MS:  ms(h.Quantile(0.99)),
		P999MS: ms(h.Quantile(0.999)),
		MaxMS:  ms(h.Max()),
		Hist:   h.Buckets(8),
	}
}

// ServerCPU is one server process's CPU use over a measurement.
type ServerCPU struct {
	PID     int     `json:"pid"`
	CPUSec  float64 `json:"cpu_s"`
	RSSKB   int64   `json:"rss_kb,omitempty"`
	RSSKB0  int64   `json:"rss_before_kb,omitempty"`
	PerConn float64 `json:"bytes_per_conn,omitempty"`
}

// Result is one measurement: a scenario run or one ramp step. Fields that
// do not apply to a scenario are left out of the JSON.
type Result struct {
	Label        string   `json:"label,omitempty"`
	Scenario     string   `json:"scenario"`
	Dialect      string   `json:"dialect"`
	Step         int      `json:"step,omitempty"`
	URLs         []string `json:"urls"`
	Publish      string   `json:"publish,omitempty"` // ws or http
	Subscribers  int      `json:"subscribers,omitempty"`
	Rooms        int      `json:"rooms,omitempty"`
	RoomsPerConn int      `json:"rooms_per_conn,omitempty"`
	RoomSize     int      `json:"room_size,omitempty"`
	Rate         float64  `json:"rate,omitempty"` // target msg/s
	Size         int      `json:"size,omitempty"`
	DurationS    float64  `json:"duration_s"`

	Sent             uint64   `json:"sent,omitempty"`
	SentRate         float64  `json:"sent_per_s,omitempty"`
	Expected         uint64   `json:"expected,omitempty"`
	Delivered        uint64   `json:"delivered"`
	Lost             uint64   `json:"lost"`
	Duplicated       uint64   `json:"duplicated"`
	OutOfOrder       uint64   `json:"out_of_order"`
	DeliveriesPerSec float64  `json:"deliveries_per_s"`
	Latency          *Latency `json:"latency,omitempty"`
	Pass             *bool    `json:"pass,omitempty"`

	Conns            int               `json:"conns,omitempty"`
	ConnErrors       uint64            `json:"conn_errors"`
	FirstError       string            `json:"first_error,omitempty"`
	Disconnects      uint64            `json:"disconnects"`
	CloseCodes       map[string]uint64 `json:"close_codes,omitempty"`
	RequestErrors    uint64            `json:"request_errors"`
	HandshakesPerSec float64           `json:"handshakes_per_s,omitempty"`
	Handshake        *Latency          `json:"handshake,omitempty"`
	BytesPerConn     float64           `json:"server_bytes_per_conn,omitempty"`
	// HoldCPUPercent is the servers' CPU while the idle connections are
	// only held (pings and pongs), in percent of one core.
	HoldCPUPercent float64 `json:"server_hold_cpu_percent,omitempty"`
	// BrokerChannels is, per server, the channels its broker is
	// subscribed to at the end of a rooms run.
	BrokerChannels []int `json:"server_broker_channels,omitempty"`

	BenchCPUSec          float64     `json:"bench_cpu_s"`
	ServerCPUSec         float64     `json:"server_cpu_s"`
	Servers              []ServerCPU `json:"servers,omitempty"`
	ServerCPUUSPerDeliv  float64     `json:"server_cpu_us_per_delivery,omitempty"`
	ServerCPUUSPerHandsh float64     `json:"server_cpu_us_per_handshake,omitempty"`
	// The cause of a CPU figure: the servers' read and write system calls
	// per delivery (/proc/<pid>/io; epoll and futex calls not counted),
	// those that wrote, and the frames each socket write carried
	// (switchboard's /metrics).
	SyscallsPerDeliv      float64 `json:"server_syscalls_per_delivery,omitempty"`
	WriteSyscallsPerDeliv float64 `json:"server_write_syscalls_per_delivery,omitempty"`
	FramesPerWrite        float64 `json:"server_frames_per_write,omitempty"`

	// ramp summary
	SustainedRate          float64 `json:"sustained_rate,omitempty"`
	SustainedDeliveriesSec float64 `json:"sustained_deliveries_per_s,omitempty"`
	P99MaxMS               float64 `json:"p99_max_ms,omitempty"`

	Soak *SoakReport `json:"soak,omitempty"`
}

func (e *env) base(r *Result) {
	r.Dialect = e.cfg.Dialect
	r.URLs = e.cfg.URLs
	r.Size = e.cfg.Size
	r.Publish = "ws"
	if e.cfg.PublishURL != "" {
		r.Publish = "http"
	}
}

func (r *Result) setCPU(u cpuUse, pids []int) {
	r.BenchCPUSec = u.Bench.Seconds()
	r.ServerCPUSec = u.Server.Seconds()
	r.Servers = nil
	for i, p := range pids {
		r.Servers = append(r.Servers, ServerCPU{PID: p, CPUSec: u.PerServer[i].Seconds()})
	}
	if r.Delivered > 0 && len(pids) > 0 {
		r.ServerCPUUSPerDeliv = math.Round(float64(u.Server.Microseconds())/float64(r.Delivered)*1000) / 1000
	}
	if r.Delivered > 0 && u.SysOK {
		r.SyscallsPerDeliv = round3(float64(u.SysRead+u.SysWrite) / float64(r.Delivered))
		r.WriteSyscallsPerDeliv = round3(float64(u.SysWrite) / float64(r.Delivered))
	}
	if u.WritesOK && u.Writes > 0 {
		r.FramesPerWrite = round3(float64(u.Frames) / float64(u.Writes))
	}
}

// fill completes a delivery result from step k's counts.
func (e *env) fill(r *Result, k int, expected uint64, wall time.Duration) {
	st, disc, errs, _ := e.snapshot(k, true)
	r.Expected = expected
	r.Delivered = st.delivered
	r.Duplicated = st.dup
	r.OutOfOrder = st.ooo
	if expected > st.delivered {
		r.Lost = expected - st.delivered
	}
	if wall > 0 {
		r.DeliveriesPerSec = math.Round(float64(st.delivered) / wall.Seconds())
	}
	lat := summarize(&st.hist)
	r.Latency = &lat
	r.Disconnects = disc
	r.RequestErrors = errs
	r.ConnErrors = e.connErr.Load()
	if f, ok := e.first.Load().(string); ok {
		r.FirstError = f
	}
	if disc > 0 {
		r.CloseCodes = e.closeCodes()
	}
}

// seqBits sizes each subscriber's duplicate bitmap; 0 disables it when the
// bitmaps would take more than 256 MB in all.
func seqBits(msgs uint64, subs int) uint64 {
	if msgs*uint64(subs)/8 > 256<<20 {
		return 0
	}
	return msgs + 1024
}

// Run runs cfg's scenario and returns its results (several for ramp: one
// per step, then the summary).
func Run(ctx context.Context, cfg Config) ([]Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	raiseFDLimit()
	switch cfg.Scenario {
	case "broadcast":
		return runBroadcast(ctx, &cfg)
	case "ramp":
		return runRamp(ctx, &cfg)
	case "rooms":
		return runRooms(ctx, &cfg)
	case "idle":
		return runIdle(ctx, &cfg)
	case "connect":
		return runConnect(ctx, &cfg)
	case "soak":
		return runSoak(ctx, &cfg)
	}
	return nil, fmt.Errorf("unknown scenario %q (broadcast, ramp, rooms, idle, connect, soak)", cfg.Scenario)
}

func logf(cfg *Config, format string, args ...any) {
	fmt.Fprintf(cfg.Log, format+"\n", args...)
}

// setupBroadcast opens the subscribers and the publisher.
func setupBroadcast(ctx context.Context, cfg *Config, msgs uint64) (*env, error) {
	e, err := newEnv(cfg, true, cfg.Subscribers)
	if err != nil {
		return nil, err
	}
	logf(cfg, "opening %d subscribers (%s) over %d instance(s)", cfg.Subscribers, cfg.Dialect, len(e.targets))
	if err := e.openSubs(ctx, cfg.Subscribers, func(int) []string { return []string{cfg.Channel} }, seqBits(msgs, cfg.Subscribers)); err != nil {
		e.close()
		return nil, err
	}
	if err := e.openPublisher(ctx); err != nil {
		e.close()
		return nil, err
	}
	logf(cfg, "%d subscribers connected (%d failed)", len(e.subs), e.connErr.Load())
	return e, nil
}

// measureStep runs one broadcast step at rate for dur.
func (e *env) measureStep(ctx context.Context, rate float64, dur time.Duration) (Result, error) {
	r := Result{Rate: rate, Subscribers: len(e.subs)}
	e.base(&r)
	alive := uint64(e.aliveSubs())
	k := e.newStep()
	m := startCPU(e.cfg.ServerPIDs, e.cfg.URLs)
	start := time.Now()
	sent, err := e.broadcastStep(ctx, rate, dur)
	pubWall := time.Since(start)
	expected := sent * alive
	e.drain(ctx, k, expected)
	u := m.stop()
	r.Sent = sent
	r.DurationS = math.Round(pubWall.Seconds()*1000) / 1000
	r.SentRate = math.Round(float64(sent) / pubWall.Seconds())
	e.fill(&r, k, expected, pubWall)
	r.setCPU(u, e.cfg.ServerPIDs)
	return r, err
}

func runBroadcast(ctx context.Context, cfg *Config) ([]Result, error) {
	msgs := uint64(cfg.Rate*cfg.Duration.Seconds()) + 1
	e, err := setupBroadcast(ctx, cfg, msgs)
	if err != nil {
		return nil, err
	}
	defer e.close()
	logf(cfg, "publishing %.0f msg/s for %s", cfg.Rate, cfg.Duration)
	r, err := e.measureStep(ctx, cfg.Rate, cfg.Duration)
	r.Scenario = "broadcast"
	return []Result{r}, err
}

// rampRates returns the ramp's publish rates.
func rampRates(cfg *Config) []float64 {
	if len(cfg.Rates) > 0 {
		return cfg.Rates
	}
	var out []float64
	for r := cfg.StartRate; r <= cfg.MaxRate && len(out) < 64; r *= cfg.Factor {
		out = append(out, math.Round(r))
	}
	return out
}

func runRamp(ctx context.Context, cfg *Config) ([]Result, error) {
	rates := rampRates(cfg)
	var msgs float64
	for _, r := range rates {
		msgs += r * cfg.StepTime.Seconds()
	}
	e, err := setupBroadcast(ctx, cfg, uint64(msgs)+1)
	if err != nil {
		return nil, err
	}
	defer e.close()
	var out []Result
	best := -1
	failures := 0
	for i, rate := range rates {
		if ctx.Err() != nil {
			break
		}
		disc0 := e.aliveSubs()
		r, err := e.measureStep(ctx, rate, cfg.StepTime)
		r.Scenario = "ramp"
		r.Step = i + 1
		pass := err == nil && r.Lost == 0 && r.Duplicated == 0 && e.aliveSubs() == disc0 &&
			r.Latency.P99MS <= float64(cfg.P99Max)/1e6 && r.SentRate >= 0.95*rate
		r.Pass = &pass
		r.Latency.Hist = nil // keep step lines short; the summary has none either
		out = append(out, r)
		logf(cfg, "step %d: %.0f msg/s -> %.0f deliveries/s, lost %d, p99 %.1f ms, pass %v",
			r.Step, rate, r.DeliveriesPerSec, r.Lost, r.Latency.P99MS, pass)
		if pass {
			if best < 0 || r.DeliveriesPerSec > out[best].DeliveriesPerSec {
				best = len(out) - 1
			}
		} else {
			failures++
			if failures > cfg.KeepGoing {
				break
			}
		}
		if err != nil {
			break
		}
	}
	sum := Result{Scenario: "ramp-summary", Subscribers: len(e.subs), P99MaxMS: float64(cfg.P99Max) / 1e6}
	e.base(&sum)
	if best >= 0 {
		sum.SustainedRate = out[best].Rate
		sum.SustainedDeliveriesSec = out[best].DeliveriesPerSec
		sum.ServerCPUUSPerDeliv = out[best].ServerCPUUSPerDeliv
	}
	return append(out, sum), nil
}

func runRooms(ctx context.Context, cfg *Config) ([]Result, error) {
	// Memberships m = 0..M-1: room m/RoomSize, held by connection m%n, so
	// that each connection is in RoomsPerConn rooms and a room's members
	// are consecutive connections, on different instances (round-robin).
	members := cfg.Rooms * cfg.RoomSize
	per := max(1, cfg.RoomsPerConn)
	if members%per != 0 || members/per < cfg.RoomSize {
		return nil, fmt.Errorf("--rooms-per-conn %d must divide rooms x room-size (%d) and leave at least room-size connections", per, members)
	}
	if per > 1 && cfg.Dialect == "raw" {
		return nil, errors.New("--rooms-per-conn above 1 needs a dialect with subscriptions (native, centrifugo, pusher)")
	}
	n := members / per
	total := uint64(math.Round(cfg.Rate * float64(members) * cfg.Duration.Seconds()))
	e, err := newEnv(cfg, false, n)
	if err != nil {
		return nil, err
	}
	defer e.close()
	prefix := "bench-room-"
	if cfg.Channel != "" {
		// Several bench processes share the servers: each its own rooms.
		prefix = cfg.Channel + "-"
	}
	room := func(m int) string { return prefix + strconv.Itoa(m/cfg.RoomSize) }
	logf(cfg, "opening %d rooms x %d members on %d connections", cfg.Rooms, cfg.RoomSize, n)
	err = e.openSubs(ctx, n, func(i int) []string {
		chs := make([]string, per)
		for j := range chs {
			chs[j] = room(i + j*n)
		}
		return chs
	}, seqBits(total, n))
	if err != nil {
		return nil, err
	}
	if len(e.subs) != n {
		return nil, fmt.Errorf("only %d of %d room members connected: %v", len(e.subs), n, e.first.Load())
	}
	if cfg.PublishURL != "" {
		if err := e.openPublisher(ctx); err != nil {
			return nil, err
		}
	}
	r := Result{Scenario: "rooms", Rooms: cfg.Rooms, RoomSize: cfg.RoomSize, Subscribers: n, Rate: cfg.Rate}
	if per > 1 {
		r.RoomsPerConn = per
	}
	e.base(&r)
	k := e.newStep()
	m := startCPU(cfg.ServerPIDs, cfg.URLs)
	start := time.Now()
	var sendErrs uint64
	sent, err := pace(ctx, cfg.Rate*float64(members), total, cfg.Duration+2*time.Second, func(from, to uint64) error {
		now := time.Now().UnixNano()
		for i := from; i < to; i++ {
			mb := int(i % uint64(members))
			c, ch := e.subs[mb%n], room(mb)
			if e.httpc != nil {
				e.buf = e.appendPublish(e.buf[:0], nil, ch, e.seq+i, now)
				if err := e.postPublish(e.buf); err != nil {
					return err
				}
				continue
			}
			e.buf = e.appendPublish(e.buf[:0], c, ch, e.seq+i, now)
			if err := c.write(e.buf); err != nil {
				sendErrs++
			}
		}
		return nil
	})
	pubWall := time.Since(start)
	e.seq += sent
	expected := (sent - min(sendErrs, sent)) * uint64(cfg.RoomSize)
	e.drain(ctx, k, expected)
	u := m.stop()
	r.Sent = sent
	r.DurationS = math.Round(pubWall.Seconds()*1000) / 1000
	r.SentRate = math.Round(float64(sent) / pubWall.Seconds())
	e.fill(&r, k, expected, pubWall)
	r.RequestErrors += sendErrs
	r.setCPU(u, cfg.ServerPIDs)
	for _, mu := range metricsURLs(cfg.URLs) {
		if v, ok := scrapeMetrics(mu, "switchboard_broker_channels"); ok {
			r.BrokerChannels = append(r.BrokerChannels, int(v[0]))
		}
	}
	return []Result{r}, err
}

func rssAll(pids []int) []int64 {
	out := make([]int64, len(pids))
	for i, p := range pids {
		out[i], _ = procRSS(p)
	}
	return out
}

func runIdle(ctx context.Context, cfg *Config) ([]Result, error) {
	e, err := newEnv(cfg, false, cfg.Conns)
	if err != nil {
		return nil, err
	}
	defer e.close()
	before := rssAll(cfg.ServerPIDs)
	m := startCPU(cfg.ServerPIDs, cfg.URLs)
	logf(cfg, "opening %d idle connections", cfg.Conns)
	start := time.Now()
	if err := e.openSubs(ctx, cfg.Conns, func(int) []string { return []string{cfg.Channel} }, 0); err != nil {
		return nil, err
	}
	open := time.Since(start)
	sleepCtx(ctx, cfg.Settle)
	after := rssAll(cfg.ServerPIDs)
	logf(cfg, "%d connected in %s; holding %s", len(e.subs), open.Round(time.Millisecond), cfg.Duration)
	hold := startCPU(cfg.ServerPIDs, nil)
	sleepCtx(ctx, cfg.Duration)
	held := hold.stop()
	u := m.stop()
	r := Result{Scenario: "idle", Conns: len(e.subs)}
	e.base(&r)
	r.Publish = ""
	r.Size = 0
	r.DurationS = cfg.Duration.Seconds()
	_, disc, errs, _ := e.snapshot(0, false)
	r.Disconnects, r.RequestErrors, r.ConnErrors = disc, errs, e.connErr.Load()
	if f, ok := e.first.Load().(string); ok {
		r.FirstError = f
	}
	r.setCPU(u, cfg.ServerPIDs)
	if open > 0 {
		r.HandshakesPerSec = math.Round(float64(len(e.subs)) / open.Seconds())
	}
	if held.Wall > 0 && len(cfg.ServerPIDs) > 0 {
		// What holding the connections costs: pings, their pongs, the
		// poller's timeouts.
		r.HoldCPUPercent = math.Round(held.Server.Seconds()/held.Wall.Seconds()*10000) / 100
	}
	var delta int64
	for i := range cfg.ServerPIDs {
		s := &r.Servers[i]
		s.RSSKB0, s.RSSKB = before[i]/1024, after[i]/1024
		// Connections were spread evenly over the URLs, which the
		// --server-pid list is expected to follow one for one.
		per := len(e.subs) / max(1, len(cfg.ServerPIDs))
		if per > 0 {
			s.PerConn = math.Round(float64(after[i]-before[i]) / float64(per))
		}
		delta += after[i] - before[i]
	}
	if len(e.subs) > 0 && len(cfg.ServerPIDs) > 0 {
		r.BytesPerConn = math.Round(float64(delta) / float64(len(e.subs)))
	}
	return []Result{r}, nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func runConnect(ctx context.Context, cfg *Config) ([]Result, error) {
	ts, err := parseTargets(cfg.URLs)
	if err != nil {
		return nil, err
	}
	d := &dialer{dialect: cfg.Dialect, token: cfg.Token, pusherKey: cfg.PusherKey, timeout: cfg.DialTimeout, srcs: sourceAddrs(cfg.SrcIPs, cfg.Conns, ts)}
	hists := make([]Histogram, cfg.Concurrency)
	conns := make([]*setupConn, cfg.Conns)
	var (
		mu    sync.Mutex
		errs  uint64
		first error
	)
	logf(cfg, "opening %d connections, %d at a time", cfg.Conns, cfg.Concurrency)
	m := startCPU(cfg.ServerPIDs, cfg.URLs)
	start := time.Now()
	// Each worker records into its own histogram, found by a token.
	wid := make(chan int, cfg.Concurrency)
	for i := range cfg.Concurrency {
		wid <- i
	}
	parallel(cfg.Conns, cfg.Concurrency, time.Now().Add(2*time.Minute), func(i int) {
		w := <-wid
		defer func() { wid <- w }()
		t := ts[i%len(ts)]
		t0 := time.Now()
		s, err := d.connect(ctx, t, d.path(t, cfg.Channel))
		if err != nil {
			mu.Lock()
			errs++
			if first == nil {
				first = err
			}
			mu.Unlock()
			return
		}
		hists[w].Record(int64(time.Since(t0)))
		conns[i] = s
	})
	wall := time.Since(start)
	u := m.stop()
	var h Histogram
	for i := range hists {
		h.Merge(&hists[i])
	}
	for _, s := range conns {
		if s != nil {
			_ = s.nc.Close()
		}
	}
	r := Result{Scenario: "connect", Conns: int(h.Count())}
	r.Dialect, r.URLs = cfg.Dialect, cfg.URLs
	r.DurationS = math.Round(wall.Seconds()*1000) / 1000
	r.HandshakesPerSec = math.Round(float64(h.Count()) / wall.Seconds())
	lat := summarize(&h)
	r.Handshake = &lat
	r.ConnErrors = errs
	if first != nil {
		r.FirstError = first.Error()
	}
	r.setCPU(u, cfg.ServerPIDs)
	if h.Count() > 0 && len(cfg.ServerPIDs) > 0 {
		r.ServerCPUUSPerHandsh = math.Round(float64(u.Server.Microseconds())/float64(h.Count())*10) / 10
	}
	if h.Count() == 0 {
		return []Result{r}, errors.Join(errors.New("no connection succeeded"), first)
	}
	return []Result{r}, nil
}
