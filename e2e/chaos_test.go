package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/internal/redistest"
)

// The chaos tests ("lose nothing") run real processes: redis-server,
// switchboard instances, nginx and 500 subscribers using the real JS client
// in one Node process (clients/js/testing/chaos-subscribers.mjs). A
// publisher posts a numbered message every 10 ms while instances and Redis
// are killed; afterwards every subscriber's record is checked message by
// message.

// chaosScript is the Node subscriber script, relative to e2e/.
const chaosScript = "../clients/js/testing/chaos-subscribers.mjs"

// TestChaosLoseNothing: with history and a persistent Redis, a SIGKILLed
// instance and a Redis restart mid-stream cost no subscriber any
// acknowledged message, and none arrives twice or out of order. The killed
// instance's clients reconnect through nginx to the others and recover what
// they missed (recovered:true); the instances fill what they missed during
// the Redis restart from history.
func TestChaosLoseNothing(t *testing.T) {
	const (
		subscribers = 500
		channel     = "chaos"
	)
	redis := redistest.Start(t, &redistest.Options{Persistence: true})
	var insts []*instance
	for i := range 3 {
		insts = append(insts, startInstance(t, "--redis", redis.URL(), "--history-size", "10000",
			"--ping-interval", "2s", "--node-id", fmt.Sprintf("chaos%d", i)))
	}
	proxy := startNginx(t, insts)
	subs := startJSSubscribers(t, []string{"ws://" + proxy + "/ws"}, channel, subscribers)
	subs.waitReady(30 * time.Second)

	// least_conn spreads the clients; the victim must have some.
	const victim = "chaos2"
	var before jsStatus
	waitFor(t, 10*time.Second, func() bool {
		before = subs.status(0)
		return before.Subscribed == subscribers && before.Nodes[victim] > 0
	}, "every subscriber subscribed, some through the victim instance")
	t.Logf("subscribers per instance: %v", before.Nodes)

	pub := startChaosPublisher(t, []*instance{insts[0], insts[1]}, channel, 10*time.Millisecond)
	waitFor(t, 10*time.Second, func() bool { return pub.acked() >= 100 }, "100 messages published")

	// Fault 1: SIGKILL an instance mid-stream.
	killed := time.Now()
	insts[2].kill()
	insts[2].cmd = nil // dead: nothing to stop
	waitFor(t, 20*time.Second, func() bool {
		st := subs.status(0)
		return st.Nodes[victim] == 0 && st.Subscribed == subscribers
	}, "the killed instance's clients to resubscribe elsewhere")
	t.Logf("all subscribers subscribed again %v after the kill", time.Since(killed).Round(time.Millisecond))
	mark := pub.acked()
	waitFor(t, 10*time.Second, func() bool { return pub.acked() >= mark+100 }, "100 more messages published")

	// Fault 2: restart Redis (it keeps its data) mid-stream.
	refusedBefore := pub.refused()
	redis.Kill()
	redisDown := time.Now()
	for _, in := range insts[:2] {
		waitFor(t, 5*time.Second, func() bool { return readyStatus(in) == 503 }, "/readyz 503 while Redis is down")
	}
	// Keep Redis down for 50 refused publishes (about half a second), so
	// that the instances' reconnection backoff grows and messages published
	// right after the restart miss them until they subscribe again.
	waitFor(t, 10*time.Second, func() bool { return pub.refused() >= refusedBefore+50 }, "50 publishes refused while Redis is down")
	redis.Restart()
	redisUp := time.Now()
	mark = pub.acked()
	waitFor(t, 15*time.Second, func() bool { return pub.acked() > mark }, "a publish acknowledged after Redis restarted")
	t.Logf("Redis down for %v; publishes acknowledged again %v after it restarted; %d refused (503) and retried meanwhile",
		redisUp.Sub(redisDown).Round(time.Millisecond), time.Since(redisUp).Round(time.Millisecond), pub.refused()-refusedBefore)
	mark = pub.acked()
	waitFor(t, 15*time.Second, func() bool { return pub.acked() >= mark+100 }, "100 messages published after Redis restarted")

	last := pub.finish()
	t.Logf("gaps the surviving instances filled from history: %v and %v",
		metric(t, insts[0], "switchboard_gaps_filled_total"), metric(t, insts[1], "switchboard_gaps_filled_total"))
	waitFor(t, 60*time.Second, func() bool { return subs.status(last).AtLeast == subscribers }, fmt.Sprintf("every subscriber to receive message %d", last))
	reports := subs.report()

	var deliveries, reconnects, bad int
	var recoveryMs, detectMs []int64
	unrecovered, withErrors := 0, 0
	dups := map[int64]int{} // seq -> subscribers that got it twice
	var firstErrors []string
	for _, r := range reports {
		deliveries += r.Received
		reconnects += max(0, len(r.Conns)-1)
		p, d := r.exactlyOnce(last)
		for _, seq := range d {
			dups[seq]++
		}
		if p != "" {
			bad++
			if bad <= 5 {
				t.Errorf("subscriber %d: %s", r.I, p)
			}
		}
		if len(r.Gaps) > 0 {
			t.Errorf("subscriber %d reported %d gaps, first %+v", r.I, len(r.Gaps), r.Gaps[0])
		}
		if len(r.Errors) > 0 {
			withErrors++
			if firstErrors == nil {
				firstErrors = r.Errors
			}
		}
		if r.nodeAt(killed.UnixMilli()) != victim {
			continue
		}
		sub, ok := r.subscribedAfter(killed.UnixMilli())
		if !ok {
			t.Errorf("subscriber %d of the killed instance never resubscribed", r.I)
			continue
		}
		if !sub.Recovered {
			unrecovered++
		}
		recoveryMs = append(recoveryMs, sub.T-killed.UnixMilli())
		if d, ok := r.disconnectedAfter(killed.UnixMilli()); ok {
			detectMs = append(detectMs, d)
		}
	}
	if bad > 5 {
		t.Errorf("... %d subscribers in all did not get every message exactly once in order", bad)
	}
	for seq, n := range dups {
		t.Errorf("seq %d arrived twice at %d subscribers (retries carry the same idempotency key); the publisher's attempts: %s", seq, n, pub.attempts(seq))
	}
	if withErrors > 0 {
		t.Logf("%d subscribers saw errors (retried), e.g. %q", withErrors, firstErrors)
	}
	if unrecovered > 0 {
		t.Errorf("%d of %d clients of the killed instance resubscribed with recovered:false", unrecovered, len(recoveryMs))
	}
	if len(recoveryMs) == 0 {
		t.Errorf("no subscriber of the killed instance in the reports")
	}
	t.Logf("subscribers %d, messages %d (all acknowledged, 1..%d), deliveries %d (want %d), reconnects %d, publishes refused and retried %d",
		len(reports), last, last, deliveries, len(reports)*int(last), reconnects, pub.refused())
	t.Logf("instance kill: %d clients; connection loss seen p50 %d ms p99 %d ms; recovered elsewhere (subscribed, recovered:true) p50 %d ms p99 %d ms after the kill",
		len(recoveryMs), percentile(detectMs, 50), percentile(detectMs, 99), percentile(recoveryMs, 50), percentile(recoveryMs, 99))
}

// TestChaosEpochChange: with history but without persistence, a Redis
// restart loses the channel's stream, and its epoch changes. Every
// subscriber must hear of it from the JS client (a gap event), not lose
// messages silently, and must then keep receiving the new epoch's messages.
func TestChaosEpochChange(t *testing.T) {
	const (
		subscribers = 100
		channel     = "chaos-epoch"
	)
	redis := redistest.Start(t, nil)
	var insts []*instance
	var urls []string
	for range 2 {
		in := startInstance(t, "--redis", redis.URL(), "--history-size", "10000", "--ping-interval", "2s")
		insts = append(insts, in)
		urls = append(urls, in.ws("/ws"))
	}
	subs := startJSSubscribers(t, urls, channel, subscribers)
	subs.waitReady(30 * time.Second)

	pub := startChaosPublisher(t, insts, channel, 10*time.Millisecond)
	waitFor(t, 10*time.Second, func() bool { return pub.acked() >= 100 }, "100 messages published")
	redis.Kill()
	for _, in := range insts {
		waitFor(t, 5*time.Second, func() bool { return readyStatus(in) == 503 }, "/readyz 503 while Redis is down")
	}
	beforeRestart := pub.acked()
	redis.Restart()
	waitFor(t, 15*time.Second, func() bool { return pub.acked() >= beforeRestart+100 }, "100 messages published after Redis restarted")
	last := pub.finish()
	waitFor(t, 30*time.Second, func() bool { return subs.status(last).AtLeast == subscribers }, fmt.Sprintf("every subscriber to receive message %d", last))
	reports := subs.report()

	lost, deliveries := 0, 0
	for _, r := range reports {
		deliveries += r.Received
		lost += int(last) - r.Received
		if p := r.gapReported(last); p != "" {
			t.Errorf("subscriber %d: %s", r.I, p)
		}
	}
	t.Logf("subscribers %d, messages %d, deliveries %d; every subscriber got a gap event at the new epoch; %d deliveries lost inside reported gaps",
		len(reports), last, deliveries, lost)
}

// BenchmarkPublishHistory measures what history costs a publish: native
// publishes per second into one instance (built without -race) on a local
// Redis, from 4×GOMAXPROCS connections publishing one after another, with
// --history-size 0 and 10000.
func BenchmarkPublishHistory(b *testing.B) {
	bin := filepath.Join(b.TempDir(), "switchboard")
	build := exec.Command("go", "build", "-o", bin, "../cmd/switchboard")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	for _, size := range []int{0, 10000} {
		b.Run(fmt.Sprintf("history=%d", size), func(b *testing.B) {
			redis := redistest.Start(b, nil)
			addr := startPlain(b, bin, "--redis", redis.URL(), "--history-size", strconv.Itoa(size), "--log-level", "warn")
			const par = 4
			conns := make(chan *wsClient, par*runtime.GOMAXPROCS(0))
			for range cap(conns) {
				conns <- native(b, "ws://"+addr+"/ws")
			}
			pad := strings.Repeat("x", 80)
			b.SetParallelism(par)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				c := <-conns
				id := 0
				for pb.Next() {
					id++
					r, err := c.request(fmt.Sprintf(`{"id":%d,"op":"publish","channel":"bench","data":{"seq":%d,"pad":%q}}`, id, id, pad), float64(id), nil)
					if err != nil || r["ok"] != true {
						b.Errorf("publish: %v %v", r, err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "publishes/s")
		})
	}
}

// startPlain starts bin (a switchboard binary) on a free port with args and
// returns its address; the process is killed when tb ends.
func startPlain(tb testing.TB, bin string, args ...string) string {
	tb.Helper()
	cmd := exec.Command(bin, append(args, "--addr", "127.0.0.1:0")...)
	logs := &logBuffer{}
	cmd.Stderr = logs
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := listeningRE.FindStringSubmatch(sc.Text()); m != nil {
				addrc <- m[1]
			}
		}
		_ = cmd.Wait()
		close(done)
	}()
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	select {
	case addr := <-addrc:
		return addr
	case <-done:
		tb.Fatalf("switchboard exited at start:\n%s", logs)
	case <-time.After(30 * time.Second):
		tb.Fatalf("switchboard did not start:\n%s", logs)
	}
	return ""
}

// percentile returns the p-th percentile (nearest rank) of ms, 0 if empty.
func percentile(ms []int64, p int) int64 {
	if len(ms) == 0 {
		return 0
	}
	s := slices.Clone(ms)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(0, min(len(s)-1, i-1))]
}

// chaosPublisher posts {"seq":n} to the HTTP API every interval, round
// robin over its instances, one request at a time, with the idempotency key
// "seq-n". A 503 (Redis away) is retried with the same n and key, so the
// acknowledged messages are exactly 1..acked, each published once even when
// a 503 answered a publish that had reached Redis before it died.
type chaosPublisher struct {
	t       *testing.T
	urls    []string
	channel string
	every   time.Duration
	client  *http.Client
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once

	mu       sync.Mutex
	ack      int64              // guarded by mu: 1..ack were acknowledged (HTTP 200)
	refusals int                // guarded by mu: 503 answers, retried
	failures []string           // guarded by mu: other failures; the message may have been published
	retried  map[int64][]string // guarded by mu: the answers to each seq that was not acknowledged at once
}

func startChaosPublisher(t *testing.T, insts []*instance, channel string, every time.Duration) *chaosPublisher {
	p := &chaosPublisher{
		t: t, channel: channel, every: every,
		client:  &http.Client{Timeout: 5 * time.Second},
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		retried: make(map[int64][]string),
	}
	for _, in := range insts {
		p.urls = append(p.urls, in.url("/api/publish"))
	}
	go p.run()
	t.Cleanup(func() { p.finish() })
	return p
}

func (p *chaosPublisher) run() {
	defer close(p.done)
	tick := time.NewTicker(p.every)
	defer tick.Stop()
	seq := int64(1)
	for {
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
		sent := time.Now()
		code, body, err := p.post(p.urls[int(seq)%len(p.urls)], fmt.Sprintf(`{"channel":%q,"data":{"seq":%d},"idempotency_key":"seq-%d"}`, p.channel, seq, seq))
		p.mu.Lock()
		if _, ok := p.retried[seq]; ok || code != http.StatusOK {
			p.retried[seq] = append(p.retried[seq], fmt.Sprintf("%s +%v: %d %s %v",
				sent.Format("15:04:05.000"), time.Since(sent).Round(time.Millisecond), code, strings.TrimSpace(body), err))
		}
		switch {
		case err == nil && code == http.StatusOK:
			p.ack = seq
			seq++
		case err == nil && code == http.StatusServiceUnavailable:
			p.refusals++
		default:
			p.failures = append(p.failures, fmt.Sprintf("seq %d: %d %s %v", seq, code, body, err))
		}
		p.mu.Unlock()
	}
}

func (p *chaosPublisher) post(url, body string) (int, string, error) {
	resp, err := p.client.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func (p *chaosPublisher) acked() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ack
}

// attempts describes the answers to seq when it was not acknowledged at
// once.
func (p *chaosPublisher) attempts(seq int64) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if a, ok := p.retried[seq]; ok {
		return strings.Join(a, "; ")
	}
	return "acknowledged at the first attempt"
}

func (p *chaosPublisher) refused() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refusals
}

// finish stops publishing and returns the last acknowledged sequence number.
// A publish that failed other than with 503 fails the test: its message
// might have been delivered, which breaks the count.
func (p *chaosPublisher) finish() int64 {
	p.once.Do(func() {
		close(p.stop)
		<-p.done
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, f := range p.failures {
			p.t.Errorf("publish failed other than with 503: %s", f)
		}
	})
	return p.acked()
}

// jsSubscribers is chaos-subscribers.mjs running in Node.
type jsSubscribers struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan []byte // stdout, one JSON object per line; closed at EOF
	stderr *logBuffer
	done   chan struct{}
}

// jsStatus is the script's answer to "status N".
type jsStatus struct {
	Clients    int            `json:"clients"`
	Subscribed int            `json:"subscribed"`
	Nodes      map[string]int `json:"nodes"`
	AtLeast    int            `json:"atLeast"` // clients whose newest message is N or later
	MinLast    int64          `json:"minLast"`
}

// jsPos is a stream position as the JS client reports it.
type jsPos struct {
	Epoch  string `json:"epoch"`
	Offset int64  `json:"offset"`
}

// jsClientReport is what one JS client's application saw (see the script).
type jsClientReport struct {
	I        int        `json:"i"`
	Runs     [][4]int64 `json:"runs"` // seq, offset, length, index in Epochs
	Epochs   []string   `json:"epochs"`
	Received int        `json:"received"`
	Gaps     []struct {
		At   int    `json:"at"` // messages received before the gap event
		From *jsPos `json:"from"`
		To   *jsPos `json:"to"`
		T    int64  `json:"t"`
	} `json:"gaps"`
	Conns []struct {
		T    int64  `json:"t"`
		Node string `json:"node"`
	} `json:"conns"`
	Disconnects []struct {
		T    int64 `json:"t"`
		Code int   `json:"code"`
	} `json:"disconnects"`
	Subs   []jsSubscribed `json:"subs"`
	Errors []string       `json:"errors"`
}

// jsSubscribed is one subscribed event of a JS client.
type jsSubscribed struct {
	T            int64  `json:"t"`
	Resubscribed bool   `json:"resubscribed"`
	Recovered    bool   `json:"recovered"`
	Epoch        string `json:"epoch"`
	Offset       int64  `json:"offset"`
	Node         string `json:"node"`
}

// each calls fn for every message in arrival order.
func (r *jsClientReport) each(fn func(i int, seq, offset int64, epoch string)) {
	i := 0
	for _, run := range r.Runs {
		for k := range run[2] {
			fn(i, run[0]+k, run[1]+k, r.Epochs[run[3]])
			i++
		}
	}
}

// exactlyOnce describes how the messages received differ from 1..last, each
// once and in order, or returns "", and lists the seqs received twice.
func (r *jsClientReport) exactlyOnce(last int64) (string, []int64) {
	seen := make([]bool, last+1)
	next := int64(1)
	var problems []string
	note := func(format string, args ...any) {
		if len(problems) < 5 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	var dups []int64
	foreign, breaks := 0, 0
	r.each(func(i int, seq, offset int64, epoch string) {
		switch {
		case seq < 1 || seq > last:
			foreign++
			note("message #%d has seq %d, never acknowledged (offset %d)", i, seq, offset)
		case seen[seq]:
			dups = append(dups, seq)
			note("message #%d: seq %d again (offset %s/%d)", i, seq, epoch, offset)
		default:
			seen[seq] = true
			if seq != next {
				breaks++
				note("message #%d: seq %d where %d was next (offset %s/%d)", i, seq, next, epoch, offset)
			}
			next = seq + 1
		}
	})
	var missing []int64
	for s := int64(1); s <= last; s++ {
		if !seen[s] {
			missing = append(missing, s)
		}
	}
	if len(missing)+len(dups)+foreign+breaks == 0 {
		return "", nil
	}
	return fmt.Sprintf("%d missing %s, %d duplicated, %d unknown, %d out of order; %s; connections %+v; subscriptions %+v",
		len(missing), spans(missing), len(dups), foreign, breaks, strings.Join(problems, "; "), r.Conns, r.Subs), dups
}

// gapReported checks a subscriber across an epoch change: messages in
// order, none twice, one gap event where the new epoch starts, every
// message it did not get inside that gap, and every message after it
// received through last. It returns "" or what is wrong.
func (r *jsClientReport) gapReported(last int64) string {
	type msg struct {
		seq   int64
		epoch string
	}
	var msgs []msg
	r.each(func(_ int, seq, _ int64, epoch string) { msgs = append(msgs, msg{seq, epoch}) })
	if len(r.Gaps) != 1 {
		return fmt.Sprintf("%d gap events, want 1: %+v", len(r.Gaps), r.Gaps)
	}
	g := r.Gaps[0]
	if g.At <= 0 || g.At >= len(msgs) {
		return fmt.Sprintf("gap event after message #%d of %d, want one between the epochs", g.At, len(msgs))
	}
	before, after := msgs[g.At-1], msgs[g.At]
	if before.epoch == after.epoch {
		return fmt.Sprintf("gap event between two messages of epoch %s (seq %d, %d)", before.epoch, before.seq, after.seq)
	}
	if g.To == nil || g.To.Epoch != after.epoch || g.From == nil || g.From.Epoch != before.epoch {
		return fmt.Sprintf("gap %+v→%+v does not span epochs %s→%s", g.From, g.To, before.epoch, after.epoch)
	}
	for i, m := range msgs {
		want := int64(i + 1) // before the gap: 1, 2, ...
		if i >= g.At {
			want = after.seq + int64(i-g.At)
		}
		if m.seq != want {
			return fmt.Sprintf("message #%d is seq %d, want %d (gap after #%d: seq %d → %d)", i, m.seq, want, g.At, before.seq, after.seq)
		}
		if (i < g.At && m.epoch != before.epoch) || (i >= g.At && m.epoch != after.epoch) {
			return fmt.Sprintf("message #%d (seq %d) in epoch %s, outside its side of the gap", i, m.seq, m.epoch)
		}
	}
	if msgs[len(msgs)-1].seq != last {
		return fmt.Sprintf("last message is seq %d, want %d", msgs[len(msgs)-1].seq, last)
	}
	return ""
}

// nodeAt returns the node the client was connected to at ms.
func (r *jsClientReport) nodeAt(ms int64) string {
	node := ""
	for _, c := range r.Conns {
		if c.T <= ms {
			node = c.Node
		}
	}
	return node
}

// subscribedAfter returns the first resubscription at or after ms.
func (r *jsClientReport) subscribedAfter(ms int64) (jsSubscribed, bool) {
	for _, s := range r.Subs {
		if s.T >= ms && s.Resubscribed {
			return s, true
		}
	}
	return jsSubscribed{}, false
}

// disconnectedAfter returns how long after ms the client saw its
// connection end.
func (r *jsClientReport) disconnectedAfter(ms int64) (int64, bool) {
	for _, d := range r.Disconnects {
		if d.T >= ms {
			return d.T - ms, true
		}
	}
	return 0, false
}

// spans formats sorted numbers as ranges: "[3-5 9]".
func spans(ns []int64) string {
	var b strings.Builder
	b.WriteByte('[')
	for i := 0; i < len(ns); {
		j := i
		for j+1 < len(ns) && ns[j+1] == ns[j]+1 {
			j++
		}
		if b.Len() > 1 {
			b.WriteByte(' ')
		}
		if b.Len() > 200 {
			b.WriteString("...")
			break
		}
		if i == j {
			fmt.Fprintf(&b, "%d", ns[i])
		} else {
			fmt.Fprintf(&b, "%d-%d", ns[i], ns[j])
		}
		i = j + 1
	}
	b.WriteByte(']')
	return b.String()
}

// startJSSubscribers starts count JS clients subscribed to channel, spread
// over urls, and stops them when t ends.
func startJSSubscribers(t *testing.T, urls []string, channel string, count int) *jsSubscribers {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed: the chaos tests run the JS client in Node 20 (apt-get install -y nodejs)")
	}
	if _, err := os.Stat("../clients/js/node_modules/ws"); err != nil {
		t.Fatal("clients/js/node_modules/ws is missing: run `cd clients/js && npm ci` (make tools does it)")
	}
	cmd := exec.Command(node, chaosScript, "--url", strings.Join(urls, ","), "--channel", channel, "--count", strconv.Itoa(count))
	s := &jsSubscribers{t: t, cmd: cmd, stderr: &logBuffer{}, lines: make(chan []byte, 16), done: make(chan struct{})}
	cmd.Stderr = s.stderr
	if s.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 64<<20)
		for sc.Scan() {
			s.lines <- slices.Clone(sc.Bytes())
		}
		close(s.lines)
		_ = cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		_ = s.stdin.Close() // the script exits at the end of its input
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			go func() {
				for range s.lines {
				}
			}()
			<-s.done
		}
		if t.Failed() {
			t.Logf("chaos-subscribers stderr:\n%s", s.stderr)
		}
	})
	return s
}

// read returns the next line from the script, of type typ.
func (s *jsSubscribers) read(typ string, timeout time.Duration) []byte {
	s.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case line, ok := <-s.lines:
			if !ok {
				s.t.Fatalf("chaos-subscribers exited (waiting for %q):\n%s", typ, s.stderr)
			}
			var head struct {
				Type string `json:"type"`
			}
			if err := json.Unmarshal(line, &head); err != nil {
				s.t.Fatalf("chaos-subscribers wrote %q: %v", line, err)
			}
			if head.Type == typ {
				return line
			}
			s.t.Logf("chaos-subscribers: unexpected %s", line)
		case <-deadline:
			s.t.Fatalf("chaos-subscribers: no %q within %v:\n%s", typ, timeout, s.stderr)
		}
	}
}

func (s *jsSubscribers) send(cmd string) {
	s.t.Helper()
	if _, err := io.WriteString(s.stdin, cmd+"\n"); err != nil {
		s.t.Fatalf("chaos-subscribers: %s: %v\n%s", cmd, err, s.stderr)
	}
}

// waitReady waits until every client is subscribed.
func (s *jsSubscribers) waitReady(timeout time.Duration) {
	s.t.Helper()
	s.read("ready", timeout)
}

// status asks how many clients have received message seq or later.
func (s *jsSubscribers) status(seq int64) jsStatus {
	s.t.Helper()
	s.send(fmt.Sprintf("status %d", seq))
	var st jsStatus
	if err := json.Unmarshal(s.read("status", 10*time.Second), &st); err != nil {
		s.t.Fatal(err)
	}
	return st
}

// report ends the clients and returns what each saw.
func (s *jsSubscribers) report() []*jsClientReport {
	s.t.Helper()
	s.send("report")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var reports []*jsClientReport
	for {
		select {
		case line, ok := <-s.lines:
			if !ok {
				s.t.Fatalf("chaos-subscribers exited during its report:\n%s", s.stderr)
			}
			if strings.HasPrefix(string(line), `{"type":"end"`) {
				return reports
			}
			r := &jsClientReport{}
			if err := json.Unmarshal(line, r); err != nil {
				s.t.Fatalf("chaos-subscribers report %.200q: %v", line, err)
			}
			reports = append(reports, r)
		case <-ctx.Done():
			s.t.Fatalf("chaos-subscribers: no complete report within 30 s:\n%s", s.stderr)
		}
	}
}
