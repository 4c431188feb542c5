//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"
)

// soakClient is one native subscriber of the soak scenario: it follows
// one channel with history across any number of connections, each
// resubscribing from the position it last saw.
type soakClient struct {
	idx int // in soakRun.clients
	ch  int // channel index

	mu      sync.Mutex
	c       *conn  // the current connection; nil while reconnecting
	gen     int    // connection attempts begun; c belongs to the newest
	epoch   string // the channel's position as last seen: a subscribe reply or a message
	offset  uint64
	last    uint64              // the highest sequence number received
	missing map[uint64]struct{} // sequence numbers skipped by a silent gap, not (yet) received
	noticed bool                // told of a gap (recovered:false or a new epoch) since the last message
	downAt  time.Time           // when the last connection closed
	cause   int                 // its close code (closedByClient: churn)
}

// soakStats are the run's delivery and recovery counts; guarded by mu.
type soakStats struct {
	mu             sync.Mutex
	delivered      uint64 // distinct sequence numbers received
	recoveredMsgs  uint64 // of which recovered after a resubscribe (not live)
	dup            uint64
	ooo            uint64 // received after a later one (filled a silent gap late)
	silentGaps     uint64 // gaps the client was not told of
	declaredLost   uint64 // messages skipped where the client was told (recovered:false, new epoch)
	epochChanges   uint64 // messages whose epoch differed from the client's
	recoveredTrue  uint64
	recoveredFalse uint64
	reconnects     uint64 // resubscribed connections
	dialFailures   uint64 // failed connection attempts (each retried)
	firstDialErr   string
	unparsed       uint64
	live           Histogram // latency of live deliveries
	recoverChurn   Histogram // from the client's own disconnect to its resubscribe reply
	recoverServer  Histogram // from a server-side close (1012, a dead socket) to the reply
}

// soakReply is a subscribe reply's position and recovery answer.
type soakReply struct {
	epoch     string
	offset    uint64
	recovered int // -1 absent, 0 false, 1 true
}

var errNoHistory = errors.New("soak: the subscribe reply has no position: the server keeps no history for the channel (--history-size)")

// parseSoakReply reads `{"id":1,"ok":true,"epoch":"e","offset":9,"recovered":true}`.
func parseSoakReply(b []byte) (soakReply, error) {
	r := soakReply{recovered: -1}
	ep, ok := jsonString(b, `"epoch":"`)
	if !ok {
		return r, errNoHistory
	}
	r.epoch = string(ep)
	r.offset, _ = jsonUint(b, `"offset":`)
	switch {
	case bytes.Contains(b, []byte(`"recovered":true`)):
		r.recovered = 1
	case bytes.Contains(b, []byte(`"recovered":false`)):
		r.recovered = 0
	}
	return r, nil
}

// jsonString returns the string value after key (which ends with the
// opening quote); the soak's values hold no escapes.
func jsonString(b []byte, key string) ([]byte, bool) {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return nil, false
	}
	b = b[i+len(key):]
	j := bytes.IndexByte(b, '"')
	if j < 0 {
		return nil, false
	}
	return b[:j], true
}

// jsonUint returns the number after key.
func jsonUint(b []byte, key string) (uint64, bool) {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return 0, false
	}
	v, n := parseUint(b[i+len(key):])
	return v, n > 0
}

var messagePrefix = []byte(`{"op":"message"`)

// parseSoakMessage reads a native message event carrying a soak payload:
// its sequence number, send time, epoch and offset.
func parseSoakMessage(p []byte) (seq uint64, t int64, epoch []byte, off uint64, ok bool) {
	if !bytes.HasPrefix(p, messagePrefix) {
		return 0, 0, nil, 0, false
	}
	if seq, t, ok = parseJSONPayload(p); !ok {
		return 0, 0, nil, 0, false
	}
	if epoch, ok = jsonString(p, `"epoch":"`); !ok {
		return 0, 0, nil, 0, false
	}
	off, ok = jsonUint(p, `"offset":`)
	return seq, t, epoch, off, ok
}

// onMessage handles a message on a soak connection; the reader's lock is
// held.
func (s *soakRun) onMessage(c *conn, p []byte, now int64) {
	cl := c.owner
	seq, t, epoch, off, ok := parseSoakMessage(p)
	st := &s.st
	if !ok || cl == nil {
		st.mu.Lock()
		st.unparsed++
		st.mu.Unlock()
		return
	}
	cl.mu.Lock()
	newEpoch := cl.epoch != "" && string(epoch) != cl.epoch
	if newEpoch {
		cl.noticed = true
	}
	if string(epoch) != cl.epoch {
		cl.epoch = string(epoch)
	}
	cl.offset = off
	var dup, ooo, gap bool
	var skipped uint64
	noticed := cl.noticed
	switch {
	case seq == cl.last+1:
	case seq > cl.last+1:
		skipped = seq - cl.last - 1
		if !noticed {
			gap = true
			if cl.missing == nil {
				cl.missing = map[uint64]struct{}{}
			}
			for m := cl.last + 1; m < seq && len(cl.missing) < 1<<16; m++ {
				cl.missing[m] = struct{}{}
			}
		}
	default:
		if _, late := cl.missing[seq]; late {
			delete(cl.missing, seq)
			ooo = true
		} else {
			dup = true
		}
	}
	if seq > cl.last {
		cl.last = seq
		cl.noticed = false
	}
	cl.mu.Unlock()

	recovered := c.recoverEp == string(epoch) && off <= c.recoverTo
	st.mu.Lock()
	switch {
	case dup:
		st.dup++
	default:
		st.delivered++
		if ooo {
			st.ooo++
		}
		if recovered {
			st.recoveredMsgs++
		} else {
			st.live.Record(now - t)
		}
	}
	if newEpoch {
		st.epochChanges++
	}
	if gap {
		st.silentGaps++
	} else if skipped > 0 {
		st.declaredLost += skipped
	}
	st.mu.Unlock()
}

// onClose hears that a soak connection closed (the server closed it, it
// died, or churn dropped it) and queues its client to reconnect; the
// reader's lock is held.
func (s *soakRun) onClose(c *conn, code int) {
	cl := c.owner
	if cl == nil {
		return
	}
	s.pickMu.Lock()
	s.load[c.target]--
	s.pickMu.Unlock()
	cl.mu.Lock()
	if cl.c == c {
		cl.c = nil
	}
	cl.downAt, cl.cause = time.Now(), code
	cl.mu.Unlock()
	if s.quit.Load() {
		return
	}
	s.inflight.Add(1)
	s.queue <- cl // never blocks: a client is queued at most once (cap = clients)
}

// pick chooses the instance for a new connection, as a least-connections
// balancer would: the one with the fewest of this run's clients among
// those not refused lately, ties broken at random. It counts the client
// there at once.
func (s *soakRun) pick() int {
	s.pickMu.Lock()
	defer s.pickMu.Unlock()
	n := len(s.load)
	now := time.Now()
	first := rand.IntN(n)
	best := -1
	for k := range n {
		i := (first + k) % n
		if now.Before(s.downTill[i]) {
			continue
		}
		if best < 0 || s.load[i] < s.load[best] {
			best = i
		}
	}
	if best < 0 {
		best = first // all refused lately: try one anyway
	}
	s.load[best]++
	return best
}

// pickFirst picks the instance of a client's first connection: the least
// loaded, or with CrowdRestarted the last instance (the one the run
// restarts), so that its restart sends every client to the others at once.
func (s *soakRun) pickFirst() int {
	if !s.cfg.CrowdRestarted {
		return s.pick()
	}
	s.pickMu.Lock()
	defer s.pickMu.Unlock()
	last := len(s.load) - 1
	s.load[last]++
	return last
}

// unpick takes back a pick whose connection failed, and keeps the instance
// out of picks for a second unless the failure was the broker's (which
// every instance shares).
func (s *soakRun) unpick(i int, err error) {
	s.pickMu.Lock()
	defer s.pickMu.Unlock()
	s.load[i]--
	if !errors.Is(err, errUnavailable) {
		s.downTill[i] = time.Now().Add(time.Second)
	}
}

var errUnavailable = errors.New("soak: subscribe refused: unavailable")

// connect opens a connection for cl on target ti and subscribes to cl's
// channel, from cl's last position when it has one, then hands the
// connection to a reader.
func (s *soakRun) connect(ctx context.Context, cl *soakClient, ti int) error {
	t := s.e.targets[ti]
	sc, err := s.e.d.connect(ctx, t, t.base+"/ws")
	if err != nil {
		return err
	}
	rep, resumed, err := s.subscribe(sc, cl)
	if err != nil {
		_ = sc.nc.Close()
		return err
	}
	// detach closes sc.nc; c owns a duplicate of its socket.
	c, err := detach(sc)
	if err != nil {
		return err
	}
	c.owner, c.target = cl, ti
	if rep.recovered == 1 {
		c.recoverEp, c.recoverTo = rep.epoch, rep.offset
	}
	cl.mu.Lock()
	cl.gen++
	gen := cl.gen
	if !resumed || rep.recovered == 0 {
		// A first subscribe, or history that could not cover the gap: go
		// on from the current position; the next message shows the gap.
		cl.epoch, cl.offset = rep.epoch, rep.offset
		if resumed {
			cl.noticed = true
		}
	}
	downAt, cause := cl.downAt, cl.cause
	cl.mu.Unlock()

	if resumed {
		lat := int64(time.Since(downAt))
		st := &s.st
		st.mu.Lock()
		st.reconnects++
		switch rep.recovered {
		case 1:
			st.recoveredTrue++
		case 0:
			st.recoveredFalse++
		}
		if cause == closedByClient {
			st.recoverChurn.Record(lat)
		} else {
			st.recoverServer.Record(lat)
		}
		st.mu.Unlock()
	}
	r := s.e.readers[cl.idx%len(s.e.readers)]
	if err := r.add(c); err != nil {
		return err
	}
	cl.mu.Lock()
	if cl.gen == gen {
		cl.c = c
	}
	cl.mu.Unlock()
	return nil
}

// subscribe reads the welcome and subscribes sc to cl's channel, with
// since when cl has seen a position. It reports whether it resumed.
func (s *soakRun) subscribe(sc *setupConn, cl *soakClient) (soakReply, bool, error) {
	w, err := sc.readMessage()
	if err != nil {
		return soakReply{}, false, fmt.Errorf("welcome: %w", err)
	}
	if !bytes.Contains(w, []byte(`"welcome"`)) {
		return soakReply{}, false, fmt.Errorf("first frame %s, want welcome", w)
	}
	cl.mu.Lock()
	epoch, off := cl.epoch, cl.offset
	cl.mu.Unlock()
	req := `{"id":1,"op":"subscribe","channel":` + strconv.Quote(s.chans[cl.ch])
	resumed := epoch != ""
	if resumed {
		req += `,"since":{"epoch":` + strconv.Quote(epoch) + `,"offset":` + strconv.FormatUint(off, 10) + `}`
	}
	req += `}`
	sc.id = 1
	line, err := sc.request([]byte(req), 1)
	if err != nil {
		if strings.Contains(err.Error(), `"unavailable"`) {
			return soakReply{}, resumed, fmt.Errorf("%w: %v", errUnavailable, err)
		}
		return soakReply{}, resumed, err
	}
	rep, err := parseSoakReply(line)
	return rep, resumed, err
}

// reconnect connects cl again until it succeeds or the run ends, backing
// off a little after each failure and trying the instance picked next.
func (s *soakRun) reconnect(ctx context.Context, cl *soakClient) {
	defer s.inflight.Add(-1)
	cl.mu.Lock()
	cause := cl.cause
	cl.mu.Unlock()
	if cause != closedByClient {
		// The server closed it (1012 asks for "a short random delay") or
		// it died: wait up to 250 ms, as clients do, so that a restart's
		// clients do not all come back in the same instant.
		sleepCtx(ctx, time.Duration(rand.Int64N(int64(250*time.Millisecond))))
	}
	for attempt := 0; ; attempt++ {
		if ctx.Err() != nil || s.quit.Load() {
			return
		}
		ti := s.pick()
		err := s.connect(ctx, cl, ti)
		if err == nil {
			return
		}
		s.unpick(ti, err)
		st := &s.st
		st.mu.Lock()
		st.dialFailures++
		if st.firstDialErr == "" {
			st.firstDialErr = err.Error()
		}
		st.mu.Unlock()
		back := min(50*time.Millisecond<<min(attempt, 5), time.Second)
		sleepCtx(ctx, back/2+time.Duration(rand.Int64N(int64(back/2))))
	}
}

// worker reconnects queued clients until the run ends.
func (s *soakRun) worker(ctx context.Context) {
	for {
		select {
		case cl := <-s.queue:
			s.reconnect(ctx, cl)
		case <-s.quitCh:
			return
		}
	}
}

// churn drops, every tenth of a second, a tenth of ReconnectPercent of the
// clients, picked at random among those connected, while churning is on.
func (s *soakRun) churn() {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	per := float64(len(s.clients)) * s.cfg.ReconnectPercent / 100 / 10
	acc := 0.0
	for {
		select {
		case <-s.quitCh:
			return
		case <-t.C:
		}
		if !s.churnOn.Load() {
			continue
		}
		acc += per
		for ; acc >= 1; acc-- {
			cl := s.clients[rand.IntN(len(s.clients))]
			cl.mu.Lock()
			c := cl.c
			cl.mu.Unlock()
			if c != nil {
				c.r.drop(c)
			}
		}
	}
}
