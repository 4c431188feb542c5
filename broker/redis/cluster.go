package redis

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/switchboard-rt/switchboard/broker"
)

var _ broker.ShardReadier = (*Broker)(nil)

// numSlots is the number of hash slots of a Redis Cluster.
const numSlots = 16384

// clusterSubs holds the sharded subscriptions of a Redis Cluster: one
// dedicated pub/sub connection to each primary, on which the channels of
// that primary's slots are subscribed with SSUBSCRIBE, one command per
// slot (a command naming channels of two slots is refused, CROSSSLOT).
//
// Its goroutine (run) owns every field above evMu: it serves Subscribe and
// Unsubscribe, reads the topology (CLUSTER SLOTS) every HealthInterval,
// PINGs each primary, and moves the channels of a slot that changed
// primary (a reshard, a failover) or whose connection broke to where the
// slot lives now, telling the Handler which channels lost their
// subscription and when they have it back (broker.ChannelStateHandler, or
// broker.StateHandler for all of them), so that it fills their gap from
// history. Redis tells a slot's move by pushing SUNSUBSCRIBE, which the
// connection's reader hands over through events; the topology read catches
// what a push does not say (a primary killed, a replica promoted).
//
// The state that Ready, ReadyFor and Shards read (view, owners) is
// published by run under viewMu. Locks: evMu and viewMu are leaves; never
// hold one while taking the other.
//
// Messages are handed to the Handler by each connection's reader. While a
// channel moves, the old primary's connection may still hand over a
// message already in flight while the new one hands over newer ones: the
// offsets of a channel with history order them (the hub drops what it has
// already delivered). run does its network work itself, each step bounded
// by Config.Timeout: a primary that hangs (rather than refusing
// connections) slows Subscribe on the others by up to that much per turn.
type clusterSubs struct {
	b *Broker

	want      map[string]*chanSub   // the channels subscribed, or to subscribe
	shards    map[string]*shardConn // by address: every primary's connection
	slots     []string              // [numSlots]: the primary of each slot ("" none)
	primaries []string              // the primaries' addresses, sorted
	// unsubs counts the SUNSUBSCRIBE replies still to come for channels
	// this node unsubscribed itself, by address and pub/sub channel, so
	// that they are not taken for pushes of a moved slot.
	unsubs  map[[2]string]int
	topoErr error // why the last topology read failed, or nil
	// topoGen counts the changes of slots; viewGen and viewErrs are what
	// publish last published, so that it rebuilds the slot table only
	// when something changed.
	topoGen, viewGen uint64
	viewErrs         string
	// lost and restored gather the channels that lost or regained their
	// subscription during one turn of run; report hands them over.
	lost, restored []string
	lostErr        error
	down           bool   // a StateHandler was told SubscriptionsLost
	downSlots      int    // slots without a reachable primary, as last logged
	topo           string // the topology last logged

	evMu   sync.Mutex
	events []pushEvent    // guarded by evMu
	wake   chan struct{}  // cap 1: events are waiting
	viewMu sync.RWMutex   // guards view, owners, topoErrView
	view   []broker.Shard // one per primary, sorted by address
	// owners maps each slot to its primary's index in view, -1 for none.
	owners      []int16
	topoErrView error
}

// chanSub is the state of one wanted channel.
type chanSub struct {
	addr string // the primary it is subscribed on, while live
	live bool
	// lost is set once the Handler was told the channel lost its
	// subscription, until it is told it has it back.
	lost bool
}

// shardConn is the pub/sub connection to one primary.
type shardConn struct {
	addr   string
	client rueidis.Client          // nil while disconnected
	conn   rueidis.DedicatedClient // nil while disconnected
	lost   <-chan error
	err    error     // why it is down, nil while up
	fails  int       // failed attempts in a row
	next   time.Time // when to try again
}

// pushEvent is a SUNSUBSCRIBE that a primary sent.
type pushEvent struct{ addr, channel string }

func newClusterSubs(b *Broker) *clusterSubs {
	return &clusterSubs{
		b:      b,
		want:   make(map[string]*chanSub),
		shards: make(map[string]*shardConn),
		slots:  make([]string, numSlots),
		unsubs: make(map[[2]string]int),
		wake:   make(chan struct{}, 1),
	}
}

// connect reads the topology and connects to every primary; it fails when
// the topology cannot be read or no primary can be reached.
func (s *clusterSubs) connect() error {
	if err := s.refresh(); err != nil {
		return err
	}
	s.dial(true)
	s.publish()
	if err := s.ready(); err != nil {
		s.closeAll()
		return err
	}
	return nil
}

// run serves requests and keeps the subscriptions where their slots live
// until Close; Broker.wg counts it.
func (s *clusterSubs) run() {
	defer s.b.wg.Done()
	defer s.closeAll()
	tick := time.NewTicker(s.b.cfg.HealthInterval)
	defer tick.Stop()
	for {
		select {
		case <-s.b.stop:
			return
		case r := <-s.b.reqs:
			s.serve(r)
		case <-s.wake:
			s.takeEvents()
			s.place()
		case <-tick.C:
			s.check()
			if err := s.refresh(); err != nil && !s.b.closed.Load() {
				s.b.log.Debug("redis cluster: cannot read the topology", "err", err)
			}
			s.dial(false)
			s.place()
		}
		s.report()
	}
}

// closeAll closes every primary's connection.
func (s *clusterSubs) closeAll() {
	for _, sh := range s.shards {
		sh.close()
	}
}

func (sh *shardConn) close() {
	if sh.conn != nil {
		sh.conn.Close()
	}
	if sh.client != nil {
		sh.client.Close()
	}
	sh.conn, sh.client, sh.lost = nil, nil, nil
}

// refresh reads the slots' primaries with CLUSTER SLOTS, from any node
// that answers, and adds or retires primaries' connections to match.
func (s *clusterSubs) refresh() error {
	slots, err := s.readSlots()
	s.topoErr = err
	if err != nil {
		return err
	}
	if !slices.Equal(s.slots, slots) {
		s.slots = slots
		s.topoGen++
	}
	seen := make(map[string]bool)
	for _, a := range slots {
		if a != "" {
			seen[a] = true
		}
	}
	prims := make([]string, 0, len(seen))
	for a := range seen {
		prims = append(prims, a)
		if s.shards[a] == nil {
			s.shards[a] = &shardConn{addr: a, err: fmt.Errorf("redis cluster: %s not connected yet: %w", a, broker.ErrUnavailable)}
		}
	}
	slices.Sort(prims)
	s.primaries = prims
	for a, sh := range s.shards {
		if !seen[a] {
			// No longer a primary (failed over, or its slots moved away):
			// its channels are placed again by place.
			s.drop(sh, fmt.Errorf("redis cluster: %s owns no slot any more: %w", a, broker.ErrUnavailable))
			delete(s.shards, a)
		}
	}
	if topo := strings.Join(prims, ","); topo != s.topo && !s.b.closed.Load() {
		if s.topo != "" {
			s.b.log.Info("redis cluster: the primaries changed", "primaries", topo, "before", s.topo)
		}
		s.topo = topo
	}
	return nil
}

// readSlots asks the cluster client's nodes, in random order, for CLUSTER
// SLOTS and returns the first answer as each slot's primary.
func (s *clusterSubs) readSlots() ([]string, error) {
	nodes := s.b.client.Nodes()
	addrs := make([]string, 0, len(nodes))
	for a := range nodes {
		addrs = append(addrs, a)
	}
	rand.Shuffle(len(addrs), func(i, j int) { addrs[i], addrs[j] = addrs[j], addrs[i] })
	err := errors.New("no node known")
	for _, a := range addrs {
		var slots []string
		if slots, err = s.slotsFrom(a, nodes[a]); err == nil {
			return slots, nil
		}
	}
	return nil, fmt.Errorf("redis cluster: read the topology (CLUSTER SLOTS) from %d nodes: %w: %w", len(addrs), broker.ErrUnavailable, err)
}

// slotsFrom reads CLUSTER SLOTS from one node. A node that does not know
// itself the cluster is up (cluster_state:fail) still answers; its view is
// as good as any during a failover.
func (s *clusterSubs) slotsFrom(addr string, c rueidis.Client) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), min(s.b.cfg.Timeout, 2*s.b.cfg.HealthInterval))
	defer cancel()
	ranges, err := c.Do(ctx, c.B().ClusterSlots().Build()).ToArray()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", addr, err)
	}
	slots := make([]string, numSlots)
	for _, r := range ranges {
		e, err := r.ToArray()
		if err != nil || len(e) < 3 {
			return nil, fmt.Errorf("%s: bad CLUSTER SLOTS entry", addr)
		}
		lo, err1 := e[0].AsInt64()
		hi, err2 := e[1].AsInt64()
		node, err3 := e[2].ToArray()
		if err1 != nil || err2 != nil || err3 != nil || len(node) < 2 || lo < 0 || hi >= numSlots || lo > hi {
			return nil, fmt.Errorf("%s: bad CLUSTER SLOTS entry", addr)
		}
		host, _ := node[0].ToString()
		port, err := node[1].AsInt64()
		if err != nil {
			return nil, fmt.Errorf("%s: bad CLUSTER SLOTS port", addr)
		}
		if host == "" || host == "?" {
			// The node does not know its own address: the one we reached.
			host = strings.Trim(addr[:max(strings.LastIndexByte(addr, ':'), 0)], "[]")
		}
		a := joinHostPort(host, port)
		for i := lo; i <= hi; i++ {
			slots[i] = a
		}
	}
	return slots, nil
}

// joinHostPort joins host and port as rueidis names cluster nodes.
func joinHostPort(host string, port int64) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]:" + strconv.FormatInt(port, 10)
	}
	return host + ":" + strconv.FormatInt(port, 10)
}

// dial connects to the primaries not connected whose wait is over (all of
// them when now is set).
func (s *clusterSubs) dial(now bool) {
	for _, a := range s.primaries {
		sh := s.shards[a]
		if sh.conn != nil || (!now && time.Now().Before(sh.next)) {
			continue
		}
		if err := s.open(sh); err != nil {
			sh.fails++
			sh.next = time.Now().Add(jitter(min(25*time.Millisecond<<min(sh.fails-1, 16), s.b.cfg.ReconnectDelay)))
			sh.err = fmt.Errorf("redis cluster: primary %s: %w: %w", a, broker.ErrUnavailable, err)
			continue
		}
		sh.fails, sh.err = 0, nil
	}
}

// open opens sh's pub/sub connection and PINGs it.
func (s *clusterSubs) open(sh *shardConn) error {
	opt := s.b.opt
	opt.InitAddress = []string{sh.addr}
	opt.ForceSingleClient = true
	client, err := rueidis.NewClient(opt)
	if err != nil {
		if client != nil {
			client.Close()
		}
		return err
	}
	conn, _ := client.Dedicate()
	addr := sh.addr
	lost := conn.SetPubSubHooks(rueidis.PubSubHooks{
		OnMessage: s.b.onMessage,
		OnSubscription: func(p rueidis.PubSubSubscription) {
			if p.Kind == "sunsubscribe" {
				s.push(pushEvent{addr: addr, channel: p.Channel})
			}
		},
	})
	sh.client, sh.conn, sh.lost = client, conn, lost
	if err := s.ping(sh); err != nil {
		sh.close()
		return err
	}
	return nil
}

// push queues a SUNSUBSCRIBE for run. rueidis calls it from a
// connection's reader: it never blocks.
func (s *clusterSubs) push(e pushEvent) {
	s.evMu.Lock()
	s.events = append(s.events, e)
	s.evMu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// takeEvents handles the queued SUNSUBSCRIBEs: each one this node did not
// ask for means that the channel's slot left that primary, so the channel
// has lost its subscription until place puts it where the slot is now.
func (s *clusterSubs) takeEvents() {
	s.evMu.Lock()
	evs := s.events
	s.events = nil
	s.evMu.Unlock()
	moved := 0
	for _, e := range evs {
		k := [2]string{e.addr, e.channel}
		if n := s.unsubs[k]; n > 0 {
			if n == 1 {
				delete(s.unsubs, k)
			} else {
				s.unsubs[k] = n - 1
			}
			continue
		}
		name, ok := s.b.keys.channelOf(e.channel)
		if !ok {
			continue
		}
		if c := s.want[name]; c != nil && c.live && c.addr == e.addr {
			c.live = false
			s.markLost(name, c, fmt.Errorf("redis cluster: %s unsubscribed %q (its slot moved): %w", e.addr, name, broker.ErrUnavailable))
			moved++
		}
	}
	if moved > 0 {
		// Where the slots went: the topology may not say it yet, and a
		// MOVED reply to SSUBSCRIBE will.
		if err := s.refresh(); err != nil {
			s.b.log.Debug("redis cluster: cannot read the topology", "err", err)
		}
		s.b.log.Info("redis cluster: slots moved; subscribing where they are now", "channels", moved)
	}
}

// markLost records that channel c lost its subscription.
func (s *clusterSubs) markLost(name string, c *chanSub, err error) {
	if c.lost {
		return
	}
	c.lost = true
	s.lost = append(s.lost, name)
	s.lostErr = err
}

// check PINGs every connected primary and drops the connections that
// broke or do not answer.
func (s *clusterSubs) check() {
	for _, sh := range s.shards {
		if sh.conn == nil {
			continue
		}
		var err error
		select {
		case err = <-sh.lost:
			if err == nil {
				err = errors.New("connection closed")
			}
		default:
			err = s.ping(sh)
		}
		if err != nil {
			s.drop(sh, fmt.Errorf("redis cluster: primary %s: %w: %w", sh.addr, broker.ErrUnavailable, err))
		}
	}
}

// ping PINGs sh's connection.
func (s *clusterSubs) ping(sh *shardConn) error {
	ctx, cancel := context.WithTimeout(context.Background(), min(s.b.cfg.Timeout, 2*s.b.cfg.HealthInterval))
	defer cancel()
	return sh.conn.Do(ctx, sh.conn.B().Ping().Build()).Error()
}

// drop closes sh's connection: its channels lose their subscription.
func (s *clusterSubs) drop(sh *shardConn, err error) {
	sh.close()
	sh.err = err
	sh.next = time.Time{}
	for k := range s.unsubs {
		if k[0] == sh.addr {
			delete(s.unsubs, k)
		}
	}
	for name, c := range s.want {
		if c.live && c.addr == sh.addr {
			c.live = false
			s.markLost(name, c, err)
		}
	}
}

// slotOf returns the hash slot of a channel's pub/sub channel (and keys).
func (s *clusterSubs) slotOf(channel string) int { return slot(s.b.keys.channel(channel)) }

// place subscribes every wanted channel that is not live on its slot's
// primary there, one SSUBSCRIBE per slot, all in one round trip per
// primary, and unsubscribes it from a primary that no longer owns its
// slot. Channels whose primary is down stay lost until a later turn.
func (s *clusterSubs) place() {
	bySlot := make(map[string]map[int][]string) // primary -> slot -> channels
	old := make(map[string][]string)            // live on a primary that lost the slot
	for name, c := range s.want {
		sl := s.slotOf(name)
		owner := s.slots[sl]
		if c.live && c.addr == owner {
			continue
		}
		if c.live {
			if sh := s.shards[c.addr]; sh != nil && sh.conn != nil {
				old[c.addr] = append(old[c.addr], name)
			}
			c.live = false
			s.markLost(name, c, fmt.Errorf("redis cluster: slot %d moved from %s to %s: %w", sl, c.addr, owner, broker.ErrUnavailable))
		}
		if owner == "" || s.shards[owner] == nil || s.shards[owner].conn == nil {
			continue
		}
		if bySlot[owner] == nil {
			bySlot[owner] = make(map[int][]string)
		}
		bySlot[owner][sl] = append(bySlot[owner][sl], name)
	}
	for owner, slots := range bySlot {
		s.subscribeOn(s.shards[owner], slots)
	}
	// Leave the old primaries, after joining the new ones: messages the
	// old one still sends meanwhile are dropped by offset, not lost.
	for addr, names := range old {
		if sh := s.shards[addr]; sh != nil && sh.conn != nil {
			s.unsubscribeOn(sh, names)
		}
	}
}

// subscribeOn sends one SSUBSCRIBE per slot to sh and marks the channels
// live as each succeeds. A MOVED reply teaches the slot's new primary; a
// failed connection is dropped.
func (s *clusterSubs) subscribeOn(sh *shardConn, slots map[int][]string) {
	type batch struct {
		slot  int
		names []string
	}
	var batches []batch
	cmds := make(rueidis.Commands, 0, len(slots))
	for sl, names := range slots {
		for len(names) > 0 {
			n := min(len(names), s.b.cfg.SubscribeBatch)
			chs := make([]string, n)
			for i, name := range names[:n] {
				chs[i] = s.b.keys.channel(name)
			}
			cmds = append(cmds, sh.conn.B().Ssubscribe().Channel(chs...).Build())
			batches = append(batches, batch{sl, names[:n]})
			names = names[n:]
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.b.cfg.Timeout)
	defer cancel()
	for i, res := range sh.conn.DoMulti(ctx, cmds...) {
		sl, names := batches[i].slot, batches[i].names
		err := res.Error()
		if err == nil {
			for _, name := range names {
				c := s.want[name]
				if c == nil {
					continue
				}
				c.addr, c.live = sh.addr, true
				if c.lost {
					c.lost = false
					s.restored = append(s.restored, name)
				}
			}
			continue
		}
		if rerr, ok := rueidis.IsRedisErr(err); ok {
			if addr, moved := rerr.IsMoved(); moved {
				s.slots[sl] = addr
				s.topoGen++
				if s.shards[addr] == nil {
					s.shards[addr] = &shardConn{addr: addr, err: fmt.Errorf("redis cluster: %s not connected yet: %w", addr, broker.ErrUnavailable)}
					s.primaries = append(s.primaries, addr)
					slices.Sort(s.primaries)
				}
			}
			s.b.log.Debug("redis cluster: SSUBSCRIBE refused", "addr", sh.addr, "slot", sl, "err", err)
			continue
		}
		s.drop(sh, fmt.Errorf("redis cluster: SSUBSCRIBE on %s: %w: %w", sh.addr, broker.ErrUnavailable, err))
		return
	}
}

// unsubscribeOn sends SUNSUBSCRIBE for names to sh, one command per slot.
// Redis errors (the slot moved already) are ignored; a broken connection
// is dropped.
func (s *clusterSubs) unsubscribeOn(sh *shardConn, names []string) {
	bySlot := make(map[int][]string)
	for _, n := range names {
		sl := s.slotOf(n)
		bySlot[sl] = append(bySlot[sl], s.b.keys.channel(n))
	}
	cmds := make(rueidis.Commands, 0, len(bySlot))
	var sent [][]string
	for _, chs := range bySlot {
		for len(chs) > 0 {
			n := min(len(chs), s.b.cfg.SubscribeBatch)
			cmds = append(cmds, sh.conn.B().Sunsubscribe().Channel(chs[:n]...).Build())
			sent = append(sent, chs[:n])
			for _, c := range chs[:n] {
				s.unsubs[[2]string{sh.addr, c}]++
			}
			chs = chs[n:]
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.b.cfg.Timeout)
	defer cancel()
	for i, res := range sh.conn.DoMulti(ctx, cmds...) {
		err := res.Error()
		if err == nil {
			continue
		}
		for _, c := range sent[i] {
			k := [2]string{sh.addr, c}
			if s.unsubs[k] <= 1 {
				delete(s.unsubs, k)
			} else {
				s.unsubs[k]--
			}
		}
		if _, ok := rueidis.IsRedisErr(err); !ok {
			s.drop(sh, fmt.Errorf("redis cluster: SUNSUBSCRIBE on %s: %w: %w", sh.addr, broker.ErrUnavailable, err))
			return
		}
	}
}

// serve answers r and the requests queued behind it.
func (s *clusterSubs) serve(r *subReq) {
	batch := []*subReq{r}
drain:
	for len(batch) < maxBatchReqs {
		select {
		case r := <-s.b.reqs:
			batch = append(batch, r)
		default:
			break drain
		}
	}
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.done <- err
			continue
		}
		if r.subscribe {
			r.done <- s.subscribe(r.channels)
		} else {
			s.unsubscribe(r.channels)
			r.done <- nil
		}
	}
}

// subscribe subscribes to channels and returns once they are live, or an
// error wrapping broker.ErrUnavailable when one of them cannot be: then the
// channels it added are forgotten again.
func (s *clusterSubs) subscribe(channels []string) error {
	var added []string
	for _, ch := range channels {
		if s.want[ch] == nil {
			s.want[ch] = &chanSub{}
			added = append(added, ch)
		}
	}
	// A MOVED reply teaches a slot's new primary: try there at once.
	for range 3 {
		s.place()
		if s.allLive(channels) {
			return nil
		}
		s.dial(false)
	}
	for _, ch := range channels {
		if c := s.want[ch]; c != nil && c.live {
			continue
		}
		err := s.readyFor(ch)
		if err == nil {
			err = fmt.Errorf("redis cluster: SSUBSCRIBE %q failed: %w", ch, broker.ErrUnavailable)
		}
		s.unsubscribe(added)
		return err
	}
	return nil
}

// allLive reports whether every one of channels is live.
func (s *clusterSubs) allLive(channels []string) bool {
	for _, ch := range channels {
		if c := s.want[ch]; c == nil || !c.live {
			return false
		}
	}
	return true
}

// unsubscribe forgets channels and unsubscribes the live ones.
func (s *clusterSubs) unsubscribe(channels []string) {
	by := make(map[string][]string)
	for _, ch := range channels {
		c := s.want[ch]
		if c == nil {
			continue
		}
		delete(s.want, ch)
		if c.live {
			by[c.addr] = append(by[c.addr], ch)
		}
	}
	for addr, names := range by {
		if sh := s.shards[addr]; sh != nil && sh.conn != nil {
			s.unsubscribeOn(sh, names)
		}
	}
}

// report hands the turn's lost and restored channels to the Handler,
// publishes the shards' state for Ready, ReadyFor and Shards, and logs
// what changed.
func (s *clusterSubs) report() {
	lost, restored := s.lost, s.restored
	s.lost, s.restored = nil, nil
	closed := s.b.closed.Load()
	if cs, ok := s.b.handler.(broker.ChannelStateHandler); ok && !closed {
		if len(lost) > 0 {
			cs.ChannelsLost(lost, s.lostErr)
		}
		if len(restored) > 0 {
			cs.ChannelsRestored(restored)
		}
	} else if s.b.state != nil && !closed {
		if len(lost) > 0 && !s.down {
			s.down = true
			s.b.state.SubscriptionsLost(s.lostErr)
		}
		if s.down && !s.anyLost() {
			s.down = false
			s.b.state.SubscriptionsRestored()
		}
	}
	s.publish()
}

// anyLost reports whether a wanted channel has lost its subscription.
func (s *clusterSubs) anyLost() bool {
	for _, c := range s.want {
		if c.lost {
			return true
		}
	}
	return false
}

// publish publishes the shards' state and logs each change once.
func (s *clusterSubs) publish() {
	view := make([]broker.Shard, len(s.primaries))
	index := make(map[string]int16, len(s.primaries))
	var errs strings.Builder
	for i, a := range s.primaries {
		view[i] = broker.Shard{Name: a, Addr: a, Err: s.shards[a].err}
		index[a] = int16(i)
		fmt.Fprintf(&errs, "%s=%t,", a, view[i].Err == nil)
	}
	if s.owners != nil && s.viewGen == s.topoGen && s.viewErrs == errs.String() {
		// Only the errors' texts may have changed.
		s.viewMu.Lock()
		s.view, s.topoErrView = view, s.topoErr
		s.viewMu.Unlock()
		return
	}
	s.viewGen, s.viewErrs = s.topoGen, errs.String()
	owners := make([]int16, numSlots)
	down := 0
	for sl, a := range s.slots {
		i, ok := index[a]
		if !ok {
			i = -1
		}
		owners[sl] = i
		if i < 0 || view[i].Err != nil {
			down++
		}
	}
	s.viewMu.Lock()
	prev := s.view
	s.view, s.owners, s.topoErrView = view, owners, s.topoErr
	s.viewMu.Unlock()

	if s.b.closed.Load() {
		return
	}
	was := make(map[string]error, len(prev))
	for _, sh := range prev {
		was[sh.Addr] = sh.Err
	}
	for _, sh := range view {
		before, known := was[sh.Addr]
		switch {
		case sh.Err != nil && (!known || before == nil):
			s.b.log.Warn("redis cluster: primary unreachable; channels of its slots get unavailable until it or its replica is back", "addr", sh.Addr, "err", sh.Err)
		case sh.Err == nil && known && before != nil:
			s.b.log.Info("redis cluster: primary reachable again", "addr", sh.Addr)
		}
	}
	if down != s.downSlots {
		if down > 0 {
			s.b.log.Error("redis cluster: hash slots without a reachable primary", "slots", down, "of", numSlots)
		} else {
			s.b.log.Info("redis cluster: every hash slot has a reachable primary")
		}
		s.downSlots = down
	}
	if s.b.running.Load() {
		// Before the first connection is made, connect reports it.
		s.b.setErr(&s.b.subErr, s.ready())
	}
}

// ready returns nil while at least one primary can be reached.
func (s *clusterSubs) ready() error {
	s.viewMu.RLock()
	defer s.viewMu.RUnlock()
	var errs []string
	for _, sh := range s.view {
		if sh.Err == nil {
			return nil
		}
		errs = append(errs, sh.Err.Error())
	}
	if len(errs) == 0 {
		if s.topoErrView != nil {
			return s.topoErrView
		}
		return fmt.Errorf("%w: no primary owns a slot: %w", ErrCluster, broker.ErrUnavailable)
	}
	return fmt.Errorf("redis cluster: no primary can be reached: %w: %s", broker.ErrUnavailable, strings.Join(errs, "; "))
}

// readyFor returns nil while the primary of channel's slot can be reached.
func (s *clusterSubs) readyFor(channel string) error {
	sl := s.slotOf(channel)
	s.viewMu.RLock()
	defer s.viewMu.RUnlock()
	if s.owners == nil {
		return fmt.Errorf("%w: topology not read yet: %w", ErrCluster, broker.ErrUnavailable)
	}
	i := s.owners[sl]
	if i < 0 {
		return fmt.Errorf("%w: slot %d of %q has no primary: %w", ErrCluster, sl, channel, broker.ErrUnavailable)
	}
	return s.view[i].Err
}

// shardsView returns a copy of the published shards' state.
func (s *clusterSubs) shardsView() []broker.Shard {
	s.viewMu.RLock()
	defer s.viewMu.RUnlock()
	return slices.Clone(s.view)
}

// ReadyFor returns nil while the Redis that owns channel can be reached:
// on one Redis, Ready; on a Redis Cluster, whether the primary of the
// channel's hash slot answers (see broker.ShardReadier).
func (b *Broker) ReadyFor(channel string) error {
	if err := b.Ready(); err != nil || b.cluster == nil {
		return err
	}
	return b.cluster.readyFor(channel)
}

// Shards returns one entry per primary of a Redis Cluster, by address,
// with why it cannot be reached (see broker.ShardReadier); on one Redis,
// or before the first connection, it returns nil.
func (b *Broker) Shards() []broker.Shard {
	if b.usable() != nil || b.cluster == nil {
		return nil
	}
	return b.cluster.shardsView()
}

// retry runs fn, and on a Redis Cluster runs it again while it fails with
// what a failover or a slot's move answers for a while (CLUSTERDOWN,
// TRYAGAIN, a MOVED or ASK left over, a broken connection), until ctx is
// done. Only idempotent work goes through it: a read, or a publish with an
// idempotency key.
func (b *Broker) retry(ctx context.Context, fn func() error) error {
	for {
		err := fn()
		if err == nil || b.cluster == nil || !transient(err) {
			return err
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-b.stop:
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// transient reports whether err is worth retrying on a cluster.
func transient(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, rueidis.ErrClosing) {
		return false
	}
	rerr, ok := rueidis.IsRedisErr(err)
	if !ok {
		return true // the connection broke: the node may have failed over
	}
	msg := rerr.Error()
	for _, p := range []string{"CLUSTERDOWN", "TRYAGAIN", "MOVED", "ASK", "LOADING", "MASTERDOWN", "READONLY"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// slot returns the Redis Cluster hash slot of key: CRC16 of its hash tag
// (the part between the first '{' and the next '}', when not empty) or of
// the whole key, modulo 16384.
func slot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for k := 0; k < len(key); k++ {
		crc = crc<<8 ^ crc16tab[byte(crc>>8)^key[k]]
	}
	return int(crc) % numSlots
}

// crc16tab is the CRC16-CCITT (XMODEM) table Redis Cluster hashes with.
var crc16tab = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i) << 8
		for range 8 {
			if c&0x8000 != 0 {
				c = c<<1 ^ 0x1021
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return t
}()
