package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/internal/redistest"
)

// TestChaosRedisCluster: three instances share a Redis Cluster of three
// primaries with a replica each; 500 native clients are subscribed to 50
// channels with history, spread over the instances, while every channel
// gets a steady stream of numbered publishes. Mid-stream three channels'
// slots move to other primaries, then a primary is killed and its replica
// takes over. Every client must receive every acknowledged message of its
// channel exactly once and in order: the instances resubscribe where the
// slots went and fill what they missed from history. Publishes refused
// meanwhile (503, the channel's primary down) are retried with the same
// idempotency key, so the acknowledged messages are exactly 1..n.
func TestChaosRedisCluster(t *testing.T) {
	const (
		channels = 50
		clients  = 500
		every    = 150 * time.Millisecond
	)
	cluster := redistest.StartCluster(t, 3, 1)
	var insts []*instance
	for i := range 3 {
		insts = append(insts, startInstance(t, "--redis", cluster.URL(), "--history-size", "10000",
			"--node-id", fmt.Sprintf("rc%d", i)))
	}
	for _, in := range insts {
		waitFor(t, 10*time.Second, func() bool { return readyStatus(in) == 200 }, "instance ready on the cluster")
	}
	names := make([]string, channels)
	for i := range names {
		names[i] = fmt.Sprintf("rc:%d", i)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	subs := make([]*clusterSub, clients)
	var readers sync.WaitGroup
	for i := range subs {
		s := &clusterSub{channel: names[i%channels]}
		c := native(t, insts[i%len(insts)].ws("/ws"))
		r, err := c.request(fmt.Sprintf(`{"id":1,"op":"subscribe","channel":%q}`, s.channel), 1, nil)
		if err != nil || r["ok"] != true {
			t.Fatalf("client %d subscribe: %v %v", i, r, err)
		}
		subs[i] = s
		readers.Add(1)
		go func() {
			defer readers.Done()
			s.read(ctx, c)
		}()
	}
	defer readers.Wait()
	defer cancel()

	pubs := make([]*seqPublisher, channels)
	for i, name := range names {
		pubs[i] = &seqPublisher{channel: name, stop: make(chan struct{}), done: make(chan struct{}),
			urls: []string{insts[0].url("/api/publish"), insts[1].url("/api/publish"), insts[2].url("/api/publish")}}
		go pubs[i].run(every)
	}
	defer func() {
		for _, p := range pubs {
			p.finish()
		}
	}()
	waitAll := func(n int64, what string) {
		waitFor(t, 15*time.Second, func() bool {
			for _, p := range pubs {
				if p.acked() < n {
					return false
				}
			}
			return true
		}, what)
	}
	waitAll(5, "5 messages acknowledged on every channel")

	// Fault 1: move three channels' slots to other primaries.
	for _, name := range names[:3] {
		sl := cluster.Slot("sb:{" + name + "}")
		from := cluster.Owner(sl)
		for _, p := range cluster.Primaries() {
			if p != from {
				cluster.MoveSlot(sl, p)
				break
			}
		}
	}
	cluster.WaitSettled()
	mark := minAcked(pubs)
	waitAll(mark+5, "5 more messages on every channel after the slots moved")

	// Fault 2: kill the primary of another channel; its replica takes over.
	victim := cluster.Owner(cluster.Slot("sb:{" + names[3] + "}"))
	killed := time.Now()
	victim.Kill()
	// Until its replica takes over (a second or more), the instances say
	// which primary is down, and stay ready.
	down := fmt.Sprintf(`switchboard_broker_shard_up{shard=%q,addr=%q} 0`, victim.Addr(), victim.Addr())
	waitFor(t, 5*time.Second, func() bool {
		code, body := getBody(insts[0].url("/metrics"))
		_, ready := getBody(insts[0].url("/readyz"))
		return code == 200 && strings.Contains(body, down) && strings.Contains(ready, victim.Addr())
	}, "/metrics and /readyz naming the killed primary")
	t.Logf("killed primary reported down %v after the kill", time.Since(killed).Round(time.Millisecond))
	cluster.WaitSettled()
	t.Logf("replica took over %v after the kill", time.Since(killed).Round(time.Millisecond))
	for _, in := range insts {
		if readyStatus(in) != 200 {
			t.Errorf("instance %s not ready after the failover", in.addr)
		}
	}
	mark = minAcked(pubs)
	waitAll(mark+5, "5 more messages on every channel after the failover")

	var total, refused int64
	last := make(map[string]int64)
	for _, p := range pubs {
		p.finish()
		last[p.channel] = p.acked()
		total += p.acked()
		refused += int64(p.refusals)
		for _, f := range p.failures {
			t.Errorf("%s: publish failed other than with 503: %s", p.channel, f)
		}
	}
	waitFor(t, 20*time.Second, func() bool {
		for _, s := range subs {
			if s.last() < last[s.channel] {
				return false
			}
		}
		return true
	}, "every client to receive its channel's last acknowledged message")
	cancel()
	readers.Wait()

	bad := 0
	for i, s := range subs {
		if p := s.problem(last[s.channel]); p != "" {
			bad++
			if bad <= 5 {
				t.Errorf("client %d (%s): %s", i, s.channel, p)
			}
		}
	}
	if bad > 5 {
		t.Errorf("... %d clients in all did not get every message exactly once in order", bad)
	}
	var filled []string
	for _, in := range insts {
		filled = append(filled, fmt.Sprint(metric(t, in, "switchboard_gaps_filled_total")))
	}
	t.Logf("%d clients on %d channels; %d messages acknowledged, %d publishes refused (503) and retried; gaps filled from history per instance: %s",
		clients, channels, total, refused, strings.Join(filled, ", "))
}

// minAcked returns the fewest messages acknowledged on any channel.
func minAcked(pubs []*seqPublisher) int64 {
	n := int64(-1)
	for _, p := range pubs {
		if a := p.acked(); n < 0 || a < n {
			n = a
		}
	}
	return n
}

// clusterSub is one native client's record of its channel's messages.
type clusterSub struct {
	channel string

	mu   sync.Mutex
	seqs []int64 // guarded by mu: data.seq of each message, in arrival order
	err  error   // guarded by mu: why reading stopped early
}

// read records the client's messages until ctx is done.
func (s *clusterSub) read(ctx context.Context, c *wsClient) {
	for {
		m, err := c.readJSON(ctx)
		if err != nil {
			if ctx.Err() == nil {
				s.mu.Lock()
				s.err = err
				s.mu.Unlock()
			}
			return
		}
		if m["op"] != "message" || m["channel"] != s.channel {
			continue
		}
		d, _ := m["data"].(map[string]any)
		seq, _ := d["seq"].(float64)
		s.mu.Lock()
		s.seqs = append(s.seqs, int64(seq))
		s.mu.Unlock()
	}
}

// last returns the newest seq received.
func (s *clusterSub) last() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.seqs) == 0 {
		return 0
	}
	return s.seqs[len(s.seqs)-1]
}

// problem describes how the seqs received differ from 1..last, or is "".
func (s *clusterSub) problem(last int64) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return fmt.Sprintf("connection ended: %v", s.err)
	}
	want := int64(1)
	for i, seq := range s.seqs {
		if seq != want {
			return fmt.Sprintf("message #%d is seq %d, want %d (a gap, duplicate or reorder); %d received", i, seq, want, len(s.seqs))
		}
		want++
	}
	if want-1 != last {
		return fmt.Sprintf("received 1..%d, want 1..%d", want-1, last)
	}
	return ""
}

// seqPublisher posts {"seq":n} to one channel every interval, round robin
// over its instances, with the idempotency key "<channel>-n"; an answer
// other than 200 is retried with the same n and key, so the acknowledged
// messages are exactly 1..acked, each published once.
type seqPublisher struct {
	channel string
	urls    []string
	stop    chan struct{} // closed by finish
	done    chan struct{} // closed when run returns
	once    sync.Once

	mu       sync.Mutex
	ack      int64    // guarded by mu
	refusals int      // guarded by mu: 503 answers, retried
	failures []string // guarded by mu: other answers, retried
}

func (p *seqPublisher) run(every time.Duration) {
	defer close(p.done)
	client := &http.Client{Timeout: 5 * time.Second}
	tick := time.NewTicker(every)
	defer tick.Stop()
	seq := int64(1)
	for {
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
		body := fmt.Sprintf(`{"channel":%q,"data":{"seq":%d},"idempotency_key":"%s-%d"}`, p.channel, seq, p.channel, seq)
		resp, err := client.Post(p.urls[int(seq)%len(p.urls)], "application/json", strings.NewReader(body))
		code := 0
		if err == nil {
			code = resp.StatusCode
			resp.Body.Close()
		}
		p.mu.Lock()
		switch {
		case code == http.StatusOK:
			p.ack = seq
			seq++
		case code == http.StatusServiceUnavailable:
			p.refusals++
		default:
			// Retried with the same key: published at most once.
			if len(p.failures) < 5 {
				p.failures = append(p.failures, fmt.Sprintf("seq %d: %d %v", seq, code, err))
			}
		}
		p.mu.Unlock()
	}
}

func (p *seqPublisher) acked() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ack
}

// finish stops publishing and waits for the publisher to end.
func (p *seqPublisher) finish() {
	p.once.Do(func() {
		close(p.stop)
		<-p.done
	})
}

// getBody GETs url and returns the status and body (0 and "" on error).
func getBody(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestRedisClusterNodeServed: an instance pointed at one node of a Redis
// Cluster is ready and serves subscribes and publishes (it used to report
// ready and answer every subscribe with internal, logging nothing).
func TestRedisClusterNodeServed(t *testing.T) {
	node := redistest.Start(t, &redistest.Options{Cluster: true})
	in := startInstance(t, "--redis", node.URL(), "--history-size", "10")
	waitFor(t, 10*time.Second, func() bool { return readyStatus(in) == 200 }, "instance ready on the cluster node")
	c := native(t, in.ws("/ws"))
	r, err := c.request(`{"id":1,"op":"subscribe","channel":"news"}`, 1, nil)
	if err != nil || r["ok"] != true {
		t.Fatalf("subscribe: %v %v", r, err)
	}
	got := false
	r, err = c.request(`{"id":2,"op":"publish","channel":"news","data":"hi"}`, 2, func(m map[string]any) {
		got = got || m["op"] == "message" && m["data"] == "hi"
	})
	if err != nil || r["ok"] != true || r["offset"] != float64(1) {
		t.Fatalf("publish: %v %v", r, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for !got {
		m, err := c.readJSON(ctx)
		if err != nil {
			t.Fatalf("waiting for the message: %v", err)
		}
		if m["op"] == "message" && m["data"] == "hi" {
			break
		}
	}
	if strings.Contains(in.logs.String(), "level=ERROR") {
		t.Errorf("errors logged:\n%s", in.logs)
	}
}
