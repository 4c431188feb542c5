package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/internal/redistest"
)

// subscriber records the messages one client receives, in order, as ids:
// "src:n" for {"src":...,"n":...} objects, the text itself for strings.
type subscriber struct {
	c       *wsClient
	native  bool
	channel string
	inst    int

	mu  sync.Mutex
	got []string
	err error
}

func messageID(v any) string {
	switch x := v.(type) {
	case string:
		var obj map[string]any
		if json.Unmarshal([]byte(x), &obj) == nil {
			return messageID(obj)
		}
		return x
	case map[string]any:
		return fmt.Sprintf("%v:%v", x["src"], x["n"])
	default:
		return fmt.Sprint(x)
	}
}

// run reads until ctx ends, recording message ids.
func (s *subscriber) run(ctx context.Context) {
	for {
		text, err := s.c.read(ctx)
		if err != nil {
			s.mu.Lock()
			s.err = err
			s.mu.Unlock()
			return
		}
		var id string
		if s.native {
			var m map[string]any
			if json.Unmarshal([]byte(text), &m) != nil || m["op"] != "message" {
				continue
			}
			id = messageID(m["data"])
		} else {
			id = messageID(text)
		}
		s.mu.Lock()
		s.got = append(s.got, id)
		s.mu.Unlock()
	}
}

func (s *subscriber) received() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.got...)
}

// connectSubscriber opens a client of the given dialect on channel at url
// (ws://host) and, for native, subscribes it.
func connectSubscriber(t *testing.T, ctx context.Context, base string, isNative bool, channel string, inst int) *subscriber {
	t.Helper()
	s := &subscriber{native: isNative, channel: channel, inst: inst}
	if isNative {
		s.c = native(t, base+"/ws")
		r, err := s.c.request(fmt.Sprintf(`{"id":1,"op":"subscribe","channel":%q}`, channel), 1, nil)
		if err != nil || r["ok"] != true {
			t.Fatalf("subscribe: %v %v", r, err)
		}
	} else {
		s.c = dialWS(t, base+"/raw/"+channel)
	}
	go s.run(ctx)
	return s
}

// checkSameOrder asserts that every subscriber of each channel received
// exactly want[channel] (as a set) once each, and all in the same order.
//
// Once every subscriber has them, a barrier message is published to each
// channel through publishURL's HTTP API and awaited: a duplicate of an
// earlier message would have arrived before it.
func checkDelivery(t *testing.T, publishURL string, subs []*subscriber, want map[string]map[string]bool) {
	t.Helper()
	total := 0
	for _, s := range subs {
		total += len(want[s.channel])
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		n := 0
		for _, s := range subs {
			n += min(len(s.received()), len(want[s.channel]))
		}
		if n == total {
			break
		}
		if time.Now().After(deadline) {
			for _, s := range subs {
				if got := len(s.received()); got != len(want[s.channel]) {
					t.Errorf("subscriber on instance %d (native=%v, %s) got %d of %d messages (err %v)", s.inst, s.native, s.channel, got, len(want[s.channel]), s.err)
					break
				}
			}
			t.Fatalf("timed out: %d of %d deliveries", n, total)
		}
		time.Sleep(20 * time.Millisecond)
	}
	barrier(t, publishURL, subs)
	order := map[string][]string{}
	for _, s := range subs {
		got := withoutBarrier(s.received())
		seen := map[string]bool{}
		for _, id := range got {
			if seen[id] {
				t.Fatalf("subscriber on instance %d (native=%v) got %s twice", s.inst, s.native, id)
			}
			if !want[s.channel][id] {
				t.Fatalf("subscriber on instance %d got unexpected %q on %s", s.inst, id, s.channel)
			}
			seen[id] = true
		}
		if len(got) != len(want[s.channel]) {
			t.Fatalf("subscriber on instance %d (native=%v) got %d messages, want %d", s.inst, s.native, len(got), len(want[s.channel]))
		}
		if ref, ok := order[s.channel]; !ok {
			order[s.channel] = got
		} else if strings.Join(ref, ",") != strings.Join(got, ",") {
			t.Fatalf("two subscribers of %s saw different orders:\n%v\n%v", s.channel, ref, got)
		}
	}
}

// barrierID is the id of the barrier message (barrier).
const barrierID = "barrier:0"

// barrier publishes a barrier message to every channel of subs through the
// HTTP API at publishURL and waits until every subscriber has it. Messages
// of one channel arrive in one order, so whatever was published before,
// duplicates included, has arrived by then: the check that follows needs
// no sleep to be sure nothing more comes.
func barrier(t *testing.T, publishURL string, subs []*subscriber) {
	t.Helper()
	done := map[string]bool{}
	for _, s := range subs {
		if done[s.channel] {
			continue
		}
		done[s.channel] = true
		code, body, err := httpPost(publishURL+"/api/publish", fmt.Sprintf(`{"channel":%q,"data":{"src":"barrier","n":0}}`, s.channel))
		if err != nil || code != 200 {
			t.Fatalf("barrier publish to %s: %d %s %v", s.channel, code, body, err)
		}
	}
	for _, s := range subs {
		waitFor(t, 30*time.Second, func() bool { return contains(s.received(), barrierID) }, "the barrier message on "+s.channel)
	}
}

// withoutBarrier returns ids without the barrier message.
func withoutBarrier(ids []string) []string {
	out := ids[:0:0]
	for _, id := range ids {
		if id != barrierID {
			out = append(out, id)
		}
	}
	return out
}

// TestClusterDelivery: one Redis, three instances, 300 clients of both
// dialects spread over them on three channels; messages published from
// every instance (native and raw) and from the HTTP API reach every
// subscriber exactly once, in the same order everywhere.
func TestClusterDelivery(t *testing.T) {
	redis := redistest.Start(t, nil)
	var insts []*instance
	for range 3 {
		insts = append(insts, startInstance(t, "--redis", redis.URL()))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	channels := []string{"room0", "room1", "chat:room2"}
	var subs []*subscriber
	for i := range 300 {
		inst := i % 3
		native := (i/3)%2 == 0
		ch := channels[(i/6)%3]
		subs = append(subs, connectSubscriber(t, ctx, "ws://"+insts[inst].addr, native, ch, inst))
	}
	want := map[string]map[string]bool{}
	for _, ch := range channels {
		want[ch] = map[string]bool{}
	}
	const perSource = 15
	var wg sync.WaitGroup
	var mu sync.Mutex
	add := func(ch, id string) {
		mu.Lock()
		want[ch][id] = true
		mu.Unlock()
	}
	// A native publisher on each instance.
	for k, in := range insts {
		pub := native(t, in.ws("/ws"))
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := 0.0
			for n := range perSource {
				for _, ch := range channels {
					id++
					src := fmt.Sprintf("native%d", k)
					r, err := pub.request(fmt.Sprintf(`{"id":%v,"op":"publish","channel":%q,"data":{"src":%q,"n":%d}}`, id, ch, src, n), id, nil)
					if err != nil || r["ok"] != true {
						t.Errorf("publish: %v %v", r, err)
						return
					}
					add(ch, fmt.Sprintf("%s:%d", src, n))
				}
			}
		}()
	}
	// The HTTP API of instance 0.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := range perSource {
			for _, ch := range channels {
				code, body, err := httpPost(insts[0].url("/api/publish"), fmt.Sprintf(`{"channel":%q,"data":{"src":"api","n":%d}}`, ch, n))
				if err != nil || code != 200 {
					t.Errorf("api publish: %d %s %v", code, body, err)
					return
				}
				add(ch, fmt.Sprintf("api:%d", n))
			}
		}
	}()
	// One raw subscriber per channel and instance also publishes.
	picked := map[string]bool{}
	for _, s := range subs {
		key := fmt.Sprintf("%s/%d", s.channel, s.inst)
		if s.native || picked[key] {
			continue
		}
		picked[key] = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range perSource {
				id := fmt.Sprintf("raw-%d-%s-%d", s.inst, s.channel, n)
				if err := s.c.send(id); err != nil {
					t.Errorf("raw send: %v", err)
					return
				}
				add(s.channel, id)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	checkDelivery(t, insts[0].url(""), subs, want)
}

// TestClusterThroughNginx: clients connect only to nginx, which balances
// them over three instances; messages still reach everyone, and every
// instance serves some of them.
func TestClusterThroughNginx(t *testing.T) {
	redis := redistest.Start(t, nil)
	var insts []*instance
	for range 3 {
		insts = append(insts, startInstance(t, "--redis", redis.URL()))
	}
	proxy := startNginx(t, insts)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var subs []*subscriber
	for i := range 60 {
		subs = append(subs, connectSubscriber(t, ctx, "ws://"+proxy, i%2 == 0, "lobby", -1))
	}
	for _, in := range insts {
		waitFor(t, 5*time.Second, func() bool { return metric(t, in, "switchboard_connections") > 0 }, "connections on every instance")
	}
	want := map[string]map[string]bool{"lobby": {}}
	pub := native(t, "ws://"+proxy+"/ws")
	for n := range 20 {
		r, err := pub.request(fmt.Sprintf(`{"id":%d,"op":"publish","channel":"lobby","data":{"src":"nginx","n":%d}}`, n+1, n), float64(n+1), nil)
		if err != nil || r["ok"] != true {
			t.Fatalf("publish: %v %v", r, err)
		}
		want["lobby"][fmt.Sprintf("nginx:%d", n)] = true
	}
	for n := range 10 {
		code, body, err := httpPost("http://"+proxy+"/api/publish", fmt.Sprintf(`{"channel":"lobby","data":{"src":"api","n":%d}}`, n))
		if err != nil || code != 200 {
			t.Fatalf("api publish through nginx: %d %s %v", code, body, err)
		}
		want["lobby"][fmt.Sprintf("api:%d", n)] = true
	}
	checkDelivery(t, "http://"+proxy, subs, want)
}

// metric reads one value from an instance's /metrics.
func metric(t testing.TB, in *instance, name string) float64 {
	t.Helper()
	resp, err := http.Get(in.url("/metrics"))
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return -1
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	return -1
}
