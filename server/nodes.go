package server

import (
	"context"
	"encoding/json"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultNodeInterval is how often a node announces itself by default.
const DefaultNodeInterval = time.Second

// NodeInfo is what a node announces about itself every NodeInterval, and
// what GET /api/nodes lists. Rates are over the last interval.
type NodeInfo struct {
	ID                   string  `json:"id"`
	Version              string  `json:"version"`
	Address              string  `json:"address"`      // the address it listens on
	StartedAt            int64   `json:"started_at"`   // ms since the epoch
	AnnouncedAt          int64   `json:"announced_at"` // ms since the epoch
	ExpiresAfterMS       int64   `json:"expires_after_ms"`
	UptimeSeconds        float64 `json:"uptime_seconds"`
	State                string  `json:"state"` // "ready", or why the node is not
	Connections          int64   `json:"connections"`
	Subscriptions        int64   `json:"subscriptions"`
	Channels             int     `json:"channels"`
	MessagesInPerSecond  float64 `json:"messages_in_per_second"`  // publishes through this node
	MessagesOutPerSecond float64 `json:"messages_out_per_second"` // message frames to its clients
	BrokerLatencyMS      float64 `json:"broker_latency_ms"`       // the last announcement's time through the broker
}

// announcer keeps the node's entry in the cluster's list of nodes fresh.
// Its goroutine is the Server's: started by Start, ended by Shutdown.
type announcer struct {
	s         *Server
	started   time.Time
	addr      atomic.Pointer[string]
	last      atomic.Pointer[NodeInfo]
	stop      chan struct{}
	kick      chan struct{} // announce now: the address is known
	done      sync.WaitGroup
	stopOnce  sync.Once
	startOnce sync.Once
	// brokerLatency is the last announcement's time through the broker
	// (nanoseconds), written by the loop, read by /metrics too.
	brokerLatency atomic.Int64

	// owned by the loop
	prevAt          time.Time
	prevIn, prevOut uint64
}

func newAnnouncer(s *Server) *announcer {
	return &announcer{s: s, started: time.Now(), stop: make(chan struct{}), kick: make(chan struct{}, 1)}
}

// info makes the node's NodeInfo now, its rates since the previous one.
func (a *announcer) info(now time.Time) *NodeInfo {
	s := a.s
	st := s.hub.Stats()
	ttl := 3 * s.cfg.NodeInterval
	n := &NodeInfo{
		ID: s.hub.NodeID(), Version: s.cfg.Version, StartedAt: a.started.UnixMilli(), AnnouncedAt: now.UnixMilli(),
		ExpiresAfterMS: ttl.Milliseconds(), UptimeSeconds: now.Sub(a.started).Seconds(), State: "ready",
		Connections: st.Connections, Subscriptions: st.Subscriptions, Channels: len(s.hub.Channels()),
		BrokerLatencyMS: float64(time.Duration(a.brokerLatency.Load()).Microseconds()) / 1000,
	}
	if p := a.addr.Load(); p != nil {
		n.Address = *p
	}
	if err := s.hub.Ready(); err != nil {
		n.State = err.Error()
	}
	if !a.prevAt.IsZero() {
		if d := now.Sub(a.prevAt).Seconds(); d > 0 {
			n.MessagesInPerSecond = float64(st.MessagesPublished-a.prevIn) / d
			n.MessagesOutPerSecond = float64(st.MessagesDelivered-a.prevOut) / d
		}
	}
	a.prevAt, a.prevIn, a.prevOut = now, st.MessagesPublished, st.MessagesDelivered
	return n
}

// listening records the node's address and announces it at once.
func (a *announcer) listening(addr string) {
	a.addr.Store(&addr)
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// start begins announcing, once.
func (a *announcer) start() {
	a.startOnce.Do(func() {
		a.done.Add(1)
		go a.loop()
	})
}

func (a *announcer) loop() {
	defer a.done.Done()
	t := time.NewTicker(a.s.cfg.NodeInterval)
	defer t.Stop()
	for {
		a.announce()
		select {
		case <-a.stop:
			return
		case <-t.C:
		case <-a.kick:
		}
	}
}

// announce sends the node's info through the broker once.
func (a *announcer) announce() {
	n := a.info(time.Now())
	a.last.Store(n)
	b, _ := json.Marshal(n)
	ctx, cancel := context.WithTimeout(context.Background(), a.s.cfg.Hub.RequestTimeout)
	defer cancel()
	began := time.Now()
	if err := a.s.hub.AnnounceNode(ctx, b, 3*a.s.cfg.NodeInterval); err != nil {
		a.s.log.Debug("cannot announce the node", "err", err)
		return
	}
	a.brokerLatency.Store(int64(time.Since(began)))
}

// close stops announcing and withdraws the node's entry.
func (a *announcer) close(ctx context.Context) {
	a.stopOnce.Do(func() { close(a.stop) })
	a.done.Wait()
	if err := a.s.hub.WithdrawNode(ctx); err != nil {
		a.s.log.Debug("cannot withdraw the node", "err", err)
	}
}

// nodes lists the cluster's nodes by id: the others as they last
// announced, this one as its last announcement (or now, before the first).
func (a *announcer) nodes(ctx context.Context) ([]json.RawMessage, error) {
	all, err := a.s.hub.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	if all == nil {
		all = map[string]json.RawMessage{}
	}
	self := a.last.Load()
	if self == nil {
		self = &NodeInfo{ID: a.s.hub.NodeID(), Version: a.s.cfg.Version, StartedAt: a.started.UnixMilli(), State: "starting"}
	}
	b, _ := json.Marshal(self)
	all[self.ID] = b
	ids := make([]string, 0, len(all))
	for id := range all {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := make([]json.RawMessage, len(ids))
	for i, id := range ids {
		out[i] = all[id]
	}
	return out, nil
}
