//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Config is one benchmark run. Zero fields take the defaults filled in by
// (*Config).defaults.
type Config struct {
	Scenario    string        // broadcast, ramp, rooms, idle, connect, soak
	URLs        []string      // server instances, ws://host:port[/prefix]
	Dialect     string        // raw, native, centrifugo, pusher
	Channel     string        // default: "" (raw: "/", the server's default channel), else "bench"
	Subscribers int           // broadcast, ramp; default 100
	Rate        float64       // msg/s: the publisher's (broadcast), each subscriber's (rooms); default 100 (rooms 1)
	Duration    time.Duration // publishing time (broadcast, rooms) or hold time (idle); default 10s
	Size        int           // message size in bytes; default 100
	PublishURL  string        // publish through POST {PublishURL}/api/publish instead of a WebSocket
	APIKey      string        // bearer token for PublishURL
	Token       string        // connection token (native ?token=, centrifugo connect)
	PusherKey   string        // pusher: the app's key (/app/{key}); default "app-key"
	PusherApp   string        // pusher: the app's id, whose channels a native publisher reaches as "{id}:{channel}"; default "app-id"
	ServerPIDs  []int         // server processes to measure
	Readers     int           // epoll reader goroutines; default 2
	Concurrency int           // connections opened at once; default 64
	SrcIPs      int           // loopback source addresses 127.0.0.2...; default: enough for the connection count
	Drain       time.Duration // longest wait for in-flight messages after publishing; default 3s
	DialTimeout time.Duration // per connection; default 10s

	// ramp
	Rates     []float64     // explicit publish rates; default: StartRate × Factor^k up to MaxRate
	StartRate float64       // default 100
	Factor    float64       // default 1.5
	MaxRate   float64       // default 100000
	StepTime  time.Duration // per step; default 3s
	P99Max    time.Duration // a step passes with zero loss and p99 at most this; default 100ms
	KeepGoing int           // steps to run after the first failing one; default 0

	// rooms
	Rooms    int // default 100
	RoomSize int // default 5
	// RoomsPerConn is how many rooms each connection is a member of
	// (rooms; default 1): 10,000 rooms of 10 take 100,000 connections at
	// 1 and 10,000 at 10. Not for raw, whose connections have one channel.
	RoomsPerConn int

	// idle, connect
	Conns  int           // default 1000
	Settle time.Duration // idle: wait after connecting before reading RSS; default 2s

	// soak (Duration defaults to 10m)
	Clients           int           // native subscribers; default 5000
	Channels          int           // channels with history, the clients spread over them; default 100
	DeliveriesPerSec  float64       // in all; default 10000
	ReconnectPercent  float64       // of the clients, dropped and reconnected each second; default 5, negative for none
	Warmup            time.Duration // before the start figures; default Duration/10, at most 30s
	RestartInstanceAt time.Duration // SIGTERM and restart the last instance; default Duration/3, negative for never
	RestartRedisAt    time.Duration // SIGKILL and restart Redis; default 2*Duration/3, negative for never
	RedisDowntime     time.Duration // how long Redis stays down; default 1s
	Instances         int           // default 3
	HistorySize       int           // the instances' --history-size; default 1000
	ServerBin         string        // switchboard binary; default: go build ./cmd/switchboard
	ServerArgs        []string      // more arguments for each instance
	RedisBin          string        // default "redis-server"
	RedisVolatile     bool          // run Redis without persistence (a restart loses history)
	KillInstance      bool          // soak: the instance restart is a crash (SIGKILL), not a deploy (SIGTERM)
	CrowdRestarted    bool          // soak: every client first connects to the instance the run restarts

	Log io.Writer // progress lines; default discard
}

func (c *Config) defaults() error {
	if c.Scenario == "soak" {
		if err := soakDefaults(c); err != nil {
			return err
		}
	}
	if c.Dialect == "" {
		c.Dialect = "raw"
	}
	switch c.Dialect {
	case "raw", "native", "centrifugo", "pusher":
	default:
		return fmt.Errorf("unknown --dialect %q (raw, native, centrifugo, pusher)", c.Dialect)
	}
	if c.Dialect == "pusher" {
		if c.PusherKey == "" {
			c.PusherKey = "app-key"
		}
		if c.PusherApp == "" {
			c.PusherApp = "app-id"
		}
		if c.Scenario == "rooms" && c.PublishURL == "" {
			// Pusher clients publish only client events, on private
			// channels, which need a signature per subscription.
			return errors.New("--dialect pusher: the rooms scenario needs --publish-url (Pusher clients do not publish)")
		}
	}
	if c.Channel == "" && c.Dialect != "raw" {
		c.Channel = "bench"
	}
	setInt := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	setDur := func(p *time.Duration, v time.Duration) {
		if *p <= 0 {
			*p = v
		}
	}
	setF := func(p *float64, v float64) {
		if *p <= 0 {
			*p = v
		}
	}
	setInt(&c.Subscribers, 100)
	if c.Scenario == "rooms" {
		setF(&c.Rate, 1)
	}
	setF(&c.Rate, 100)
	setDur(&c.Duration, 10*time.Second)
	setInt(&c.Size, 100)
	setInt(&c.Readers, 2)
	setInt(&c.Concurrency, 64)
	setDur(&c.Drain, 3*time.Second)
	setDur(&c.DialTimeout, 10*time.Second)
	setF(&c.StartRate, 100)
	setF(&c.Factor, 1.5)
	setF(&c.MaxRate, 100000)
	setDur(&c.StepTime, 3*time.Second)
	setDur(&c.P99Max, 100*time.Millisecond)
	setInt(&c.Rooms, 100)
	setInt(&c.RoomSize, 5)
	setInt(&c.RoomsPerConn, 1)
	setInt(&c.Conns, 1000)
	setDur(&c.Settle, 2*time.Second)
	if c.Factor <= 1 {
		return errors.New("--factor must be above 1")
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	return nil
}

// env is the shared machinery of one run: targets, dialer and readers.
type env struct {
	cfg     *Config
	targets []target
	d       *dialer
	readers []*reader
	stop    atomic.Bool
	wg      sync.WaitGroup
	subs    []*conn
	pub     *conn
	httpc   *http.Client
	seq     uint64 // the next sequence number; owned by the run
	buf     []byte // publish batch buffer; owned by the publisher
	scratch []byte
	connErr atomic.Uint64
	first   atomic.Value // first connection error
}

func newEnv(cfg *Config, order bool, conns int) (*env, error) {
	ts, err := parseTargets(cfg.URLs)
	if err != nil {
		return nil, err
	}
	e := &env{cfg: cfg, targets: ts, seq: 1}
	e.d = &dialer{dialect: cfg.Dialect, token: cfg.Token, pusherKey: cfg.PusherKey, timeout: cfg.DialTimeout}
	e.d.srcs = sourceAddrs(cfg.SrcIPs, conns, ts)
	bufSize := 256<<10 + 4*cfg.Size
	for range cfg.Readers {
		r, err := newReader(cfg.Dialect, order, bufSize, &e.stop)
		if err != nil {
			e.close()
			return nil, err
		}
		e.readers = append(e.readers, r)
	}
	for _, r := range e.readers {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			r.run()
		}()
	}
	return e, nil
}

// sourceAddrs returns the loopback source addresses to spread conns over:
// n of them when n > 0, else one per 20,000 connections beyond the first
// (none: let the kernel choose) when every target is on loopback.
func sourceAddrs(n, conns int, ts []target) []*net.TCPAddr {
	if n <= 0 {
		n = (conns + 19999) / 20000
		if n <= 1 {
			return nil
		}
	}
	for _, t := range ts {
		h, _, _ := net.SplitHostPort(t.host)
		ip := net.ParseIP(h)
		if ip == nil || !ip.IsLoopback() {
			return nil
		}
	}
	var out []*net.TCPAddr
	for i := range min(n, 250) {
		out = append(out, &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i))})
	}
	return out
}

// close stops the readers and closes every connection.
func (e *env) close() {
	e.stop.Store(true)
	e.wg.Wait()
	for _, r := range e.readers {
		r.closeAll()
	}
	if e.httpc != nil {
		e.httpc.CloseIdleConnections()
	}
}

func (e *env) noteErr(err error) {
	e.connErr.Add(1)
	e.first.CompareAndSwap(nil, err.Error())
}

// parallel runs fn(i) for i in [0,n) on conc goroutines, starting no new
// call after deadline.
func parallel(n, conc int, deadline time.Time, fn func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(conc, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || time.Now().After(deadline) {
					return
				}
				fn(i)
			}
		}()
	}
	wg.Wait()
}

// open dials, sets up and registers one connection to channel ch (and any
// more channels) on target i%len(targets).
func (e *env) open(ctx context.Context, i int, ch string, more []string, sub bool, seqBits uint64) (*conn, error) {
	t := e.targets[i%len(e.targets)]
	s, err := e.d.connect(ctx, t, e.d.path(t, ch))
	if err != nil {
		return nil, err
	}
	if err := e.d.setup(s, ch, more...); err != nil {
		_ = s.nc.Close()
		return nil, err
	}
	c, err := detach(s)
	if err != nil {
		return nil, err
	}
	c.sub = sub
	if sub && seqBits > 0 {
		c.seen = make([]uint64, seqBits/64+1)
	}
	if err := e.readers[i%len(e.readers)].add(c); err != nil {
		return nil, err
	}
	return c, nil
}

// openSubs opens n subscribers; chOf names each one's channels (one, or
// more where the dialect allows).
func (e *env) openSubs(ctx context.Context, n int, chOf func(i int) []string, seqBits uint64) error {
	subs := make([]*conn, n)
	parallel(n, e.cfg.Concurrency, time.Now().Add(max(60*time.Second, time.Duration(n)*5*time.Millisecond)), func(i int) {
		chs := chOf(i)
		c, err := e.open(ctx, i, chs[0], chs[1:], true, seqBits)
		if err != nil {
			e.noteErr(err)
			return
		}
		subs[i] = c
	})
	for _, c := range subs {
		if c != nil {
			e.subs = append(e.subs, c)
		}
	}
	if len(e.subs) == 0 {
		return fmt.Errorf("no subscriber connected: %v", e.first.Load())
	}
	return nil
}

// openPublisher opens the publisher: a WebSocket connection on the first
// target (draining what it receives, not counted), or an HTTP client.
func (e *env) openPublisher(ctx context.Context) error {
	if e.cfg.PublishURL != "" {
		e.httpc = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
		return nil
	}
	ch := e.cfg.Channel
	if e.cfg.Dialect != "raw" {
		ch = "" // native, centrifugo and pusher publishers need not subscribe
	}
	d := e.d
	if e.cfg.Dialect == "pusher" {
		// Pusher clients do not publish: a native connection publishes
		// into the app's channel, which is what a backend on the same
		// hub does.
		d = &dialer{dialect: "native", token: e.cfg.Token, timeout: e.cfg.DialTimeout}
	}
	t := e.targets[0]
	s, err := d.connect(ctx, t, d.path(t, e.cfg.Channel))
	if err != nil {
		return fmt.Errorf("publisher: %w", err)
	}
	if err := d.setup(s, ch); err != nil {
		_ = s.nc.Close()
		return fmt.Errorf("publisher: %w", err)
	}
	c, err := detach(s)
	if err != nil {
		return err
	}
	c.sub = false
	e.pub = c
	return e.readers[0].add(c)
}

// httpChannel is the hub channel publishes go to: the raw default
// channel's name, or a Pusher app's channel as the hub names it.
func (e *env) httpChannel(ch string) string {
	switch {
	case ch == "":
		return "chat_messages" // the raw default channel, the seed's
	case e.cfg.Dialect == "pusher":
		return e.cfg.PusherApp + ":" + ch
	}
	return ch
}

// appendPublish appends one publish of seq to ch, as c would send it
// (a masked frame), or the HTTP body when c is nil.
func (e *env) appendPublish(dst []byte, c *conn, ch string, seq uint64, now int64) []byte {
	p := e.scratch[:0]
	size := e.cfg.Size
	switch {
	case c == nil && e.cfg.Dialect == "raw":
		p = append(p, `{"channel":`...)
		p = strconv.AppendQuote(p, e.httpChannel(ch))
		p = append(p, `,"data":"`...)
		p = appendRawPayload(p, seq, now, size)
		p = append(p, `"}`...)
		e.scratch = p
		return append(dst, p...)
	case c == nil:
		p = append(p, `{"channel":`...)
		p = strconv.AppendQuote(p, e.httpChannel(ch))
		p = append(p, `,"data":`...)
		p = appendJSONPayload(p, seq, now, size)
		p = append(p, '}')
		e.scratch = p
		return append(dst, p...)
	case e.cfg.Dialect == "raw":
		p = appendRawPayload(p, seq, now, size)
	case e.cfg.Dialect == "native" || e.cfg.Dialect == "pusher":
		c.id++
		p = append(p, `{"id":`...)
		p = strconv.AppendInt(p, int64(c.id), 10)
		p = append(p, `,"op":"publish","channel":`...)
		p = strconv.AppendQuote(p, e.httpChannel(ch))
		p = append(p, `,"data":`...)
		p = appendJSONPayload(p, seq, now, size)
		p = append(p, '}')
	default: // centrifugo
		c.id++
		p = append(p, `{"id":`...)
		p = strconv.AppendInt(p, int64(c.id), 10)
		p = append(p, `,"publish":{"channel":`...)
		p = strconv.AppendQuote(p, ch)
		p = append(p, `,"data":`...)
		p = appendJSONPayload(p, seq, now, size)
		p = append(p, `}}`...)
	}
	e.scratch = p
	return appendFrame(dst, opText, p, c.nextMask())
}

// postPublish sends one HTTP publish body.
func (e *env) postPublish(body []byte) error {
	req, err := http.NewRequest(http.MethodPost, e.cfg.PublishURL+"/api/publish", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if e.cfg.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+e.cfg.APIKey)
	}
	resp, err := e.httpc.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST /api/publish: %s", resp.Status)
	}
	return nil
}

// maxBatch bounds the messages sent in one write.
const maxBatch = 512

// pace calls send for consecutive batches of [0,total) so that message i
// goes out at about start + i/rate. It stops after maxWall even if the
// sender could not keep up, and returns how many were sent.
func pace(ctx context.Context, rate float64, total uint64, maxWall time.Duration, send func(from, to uint64) error) (uint64, error) {
	start := time.Now()
	var sent uint64
	for sent < total {
		el := time.Since(start)
		if el > maxWall || ctx.Err() != nil {
			break
		}
		due := min(uint64(el.Seconds()*rate)+1, total)
		if due > sent {
			to := min(due, sent+maxBatch)
			if err := send(sent, to); err != nil {
				return sent, err
			}
			sent = to
			continue
		}
		next := start.Add(time.Duration(float64(sent) / rate * float64(time.Second)))
		time.Sleep(min(time.Until(next), 10*time.Millisecond))
	}
	return sent, nil
}

// broadcastStep publishes at rate for dur to the channel and returns the
// number sent; seqs start at e.seq.
func (e *env) broadcastStep(ctx context.Context, rate float64, dur time.Duration) (uint64, error) {
	total := uint64(math.Round(rate * dur.Seconds()))
	base := e.seq
	sent, err := pace(ctx, rate, total, dur+2*time.Second, func(from, to uint64) error {
		now := time.Now().UnixNano()
		if e.pub == nil {
			for i := from; i < to; i++ {
				e.buf = e.appendPublish(e.buf[:0], nil, e.cfg.Channel, base+i, now)
				if err := e.postPublish(e.buf); err != nil {
					return err
				}
			}
			return nil
		}
		e.buf = e.buf[:0]
		for i := from; i < to; i++ {
			e.buf = e.appendPublish(e.buf, e.pub, e.cfg.Channel, base+i, now)
		}
		return e.pub.write(e.buf)
	})
	e.seq += sent
	return sent, err
}

// snapshot sums step k's counts over the readers.
func (e *env) snapshot(k int, withHist bool) (st recvStats, disconnects, errs, unparsed uint64) {
	for _, r := range e.readers {
		r.mu.Lock()
		if k < len(r.steps) {
			s := r.steps[k]
			st.delivered += s.delivered
			st.dup += s.dup
			st.ooo += s.ooo
			if withHist {
				st.hist.Merge(&s.hist)
			}
		}
		disconnects += r.disconnects
		errs += r.errors
		unparsed += r.unparsed
		r.mu.Unlock()
	}
	return st, disconnects, errs, unparsed
}

// closeCodes merges the readers' close codes.
func (e *env) closeCodes() map[string]uint64 {
	out := map[string]uint64{}
	for _, r := range e.readers {
		r.mu.Lock()
		for c, n := range r.closeCodes {
			out[strconv.Itoa(c)] += n
		}
		r.mu.Unlock()
	}
	return out
}

// newStep starts measurement step k on every reader; it returns k.
func (e *env) newStep() int {
	for _, r := range e.readers {
		r.newStep(e.seq)
	}
	return len(e.readers[0].steps) - 1
}

// drain waits until step k has delivered expected messages, or for at
// most e.cfg.Drain.
func (e *env) drain(ctx context.Context, k int, expected uint64) {
	deadline := time.Now().Add(e.cfg.Drain)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		st, _, _, _ := e.snapshot(k, false)
		if st.delivered+st.dup >= expected {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// aliveSubs counts subscribers still connected.
func (e *env) aliveSubs() int {
	n := 0
	for _, r := range e.readers {
		r.mu.Lock()
		for _, c := range r.conns {
			if c.sub && !c.closed {
				n++
			}
		}
		r.mu.Unlock()
	}
	return n
}
