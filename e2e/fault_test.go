package e2e

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/internal/redistest"
)

// readyStatus returns an instance's /readyz status code.
func readyStatus(in *instance) int {
	resp, err := http.Get(in.url("/readyz"))
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestRedisRestart kills redis-server mid-stream and restarts it on the
// same port. Instances keep their clients, refuse publishes with a clear
// error while Redis is away (native unavailable, HTTP 503), report not
// ready, and deliver again within 2 s of Redis being back.
//
// Without history, delivery is at-most-once across the fault: a publish
// acknowledged after Redis returned but before a node re-subscribed may
// miss that node's clients, so those are allowed to be missing (never
// duplicated); every other acknowledged publish must arrive. With history
// (and Redis persisting), nothing acknowledged may be missing at all: the
// nodes fill their gaps from the stream.
func TestRedisRestart(t *testing.T) {
	for _, history := range []bool{false, true} {
		t.Run(fmt.Sprintf("history=%v", history), func(t *testing.T) { testRedisRestart(t, history) })
	}
}

func testRedisRestart(t *testing.T, history bool) {
	redis := redistest.Start(t, &redistest.Options{Persistence: history})
	args := []string{"--redis", redis.URL()}
	if history {
		args = append(args, "--history-size", "1000")
	}
	a := startInstance(t, args...)
	b := startInstance(t, args...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var subs []*subscriber
	for i, in := range []*instance{a, b, a, b} {
		subs = append(subs, connectSubscriber(t, ctx, "ws://"+in.addr, i < 2, "stream", i%2))
	}
	pub := native(t, a.ws("/ws"))

	required := map[string]bool{} // acknowledged: must arrive
	optional := map[string]bool{} // acknowledged while nodes re-subscribed: may be missing without history
	inWindow := false
	n := 0
	publish := func() (ok bool, code string) {
		n++
		r, err := pub.request(fmt.Sprintf(`{"id":%d,"op":"publish","channel":"stream","data":{"src":"p","n":%d}}`, n, n), float64(n), nil)
		if err != nil {
			t.Fatalf("publish %d: %v", n, err)
		}
		if r["ok"] == true {
			id := fmt.Sprintf("p:%d", n)
			if inWindow && !history {
				optional[id] = true
			} else {
				required[id] = true
			}
			return true, ""
		}
		e, _ := r["error"].(map[string]any)
		code, _ = e["code"].(string)
		return false, code
	}
	for range 20 {
		if ok, code := publish(); !ok {
			t.Fatalf("publish refused before the outage: %s", code)
		}
	}

	// Let the first messages reach everyone before the kill: without
	// history, a message Redis acknowledged but had not yet pushed to its
	// subscribers when it died is lost (at-most-once), which is not what
	// this part checks.
	for _, sub := range subs {
		waitFor(t, 10*time.Second, func() bool { return contains(sub.received(), fmt.Sprintf("p:%d", n)) },
			"the messages published before the outage")
	}
	redis.Kill()
	killed := time.Now()
	for _, in := range []*instance{a, b} {
		waitFor(t, 3*time.Second, func() bool { return readyStatus(in) == 503 }, "/readyz 503 during the outage")
	}
	t.Logf("both instances not ready %v after the kill", time.Since(killed).Round(time.Millisecond))
	for range 5 {
		if ok, code := publish(); ok || code != "unavailable" {
			t.Fatalf("publish during the outage: ok=%v code=%q, want unavailable", ok, code)
		}
	}
	code, body, err := httpPost(a.url("/api/publish"), `{"channel":"stream","data":"lost"}`)
	if err != nil || code != 503 {
		t.Fatalf("HTTP publish during the outage: %d %s %v, want 503", code, body, err)
	}
	for _, s := range subs {
		s.mu.Lock()
		err := s.err
		s.mu.Unlock()
		if err != nil {
			t.Fatalf("a client lost its connection during the outage: %v", err)
		}
	}

	redis.Restart()
	back := time.Now()
	inWindow = true
	// Publish until a message goes through and reaches a subscriber on
	// each instance.
	var flowing time.Duration
	for flowing == 0 {
		if ok, _ := publish(); ok {
			id := fmt.Sprintf("p:%d", n)
			deadline := time.Now().Add(500 * time.Millisecond)
			for time.Now().Before(deadline) && !(contains(subs[0].received(), id) && contains(subs[1].received(), id)) {
				time.Sleep(5 * time.Millisecond)
			}
			if contains(subs[0].received(), id) && contains(subs[1].received(), id) {
				flowing = time.Since(back)
			}
		}
		if time.Since(back) > 10*time.Second {
			t.Fatal("messages did not flow again within 10 s of Redis restarting")
		}
		time.Sleep(10 * time.Millisecond)
	}
	inWindow = false
	t.Logf("messages flow again %v after Redis restarted", flowing.Round(time.Millisecond))
	if flowing > 2*time.Second {
		t.Errorf("messages flowed again after %v, want within 2 s", flowing)
	}
	for _, in := range []*instance{a, b} {
		waitFor(t, 2*time.Second, func() bool { return readyStatus(in) == 200 }, "/readyz 200 after the restart")
	}
	for range 20 {
		if ok, code := publish(); !ok {
			t.Fatalf("publish refused after the restart: %s", code)
		}
	}
	checkAtMostOptional(t, a.url(""), subs, required, optional)
	if metric(t, a, "switchboard_publish_errors_total") < 5 {
		t.Errorf("publish errors not counted")
	}
}

// checkAtMostOptional waits until every subscriber has every required id,
// then checks that none got an id twice or one outside required and
// optional, and that all saw the required ids in the same order.
func checkAtMostOptional(t *testing.T, publishURL string, subs []*subscriber, required, optional map[string]bool) {
	t.Helper()
	for _, s := range subs {
		deadline := time.Now().Add(30 * time.Second)
		for {
			got := map[string]bool{}
			for _, id := range s.received() {
				got[id] = true
			}
			var missing []string
			for id := range required {
				if !got[id] {
					missing = append(missing, id)
				}
			}
			if len(missing) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("instance %d (native=%v) lacks acknowledged messages %v", s.inst, s.native, missing)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	barrier(t, publishURL, subs)
	var ref []string
	for _, s := range subs {
		seen := map[string]bool{}
		var order []string
		for _, id := range withoutBarrier(s.received()) {
			if seen[id] {
				t.Fatalf("instance %d (native=%v) got %s twice", s.inst, s.native, id)
			}
			seen[id] = true
			if !required[id] && !optional[id] {
				t.Fatalf("instance %d got %s, which was never acknowledged", s.inst, id)
			}
			if required[id] {
				order = append(order, id)
			}
		}
		if ref == nil {
			ref = order
		} else if fmt.Sprint(ref) != fmt.Sprint(order) {
			t.Fatalf("subscribers saw different orders:\n%v\n%v", ref, order)
		}
	}
	t.Logf("%d acknowledged messages delivered to all %d subscribers; %d more acknowledged while re-subscribing", len(required), len(subs), len(optional))
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestInstanceKill SIGKILLs one of three instances: its clients lose their
// connection, and the others and their clients are unaffected.
func TestInstanceKill(t *testing.T) {
	redis := redistest.Start(t, nil)
	var insts []*instance
	for range 3 {
		insts = append(insts, startInstance(t, "--redis", redis.URL()))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var subs []*subscriber
	for i := range 30 {
		subs = append(subs, connectSubscriber(t, ctx, "ws://"+insts[i%3].addr, i%2 == 0, "k", i%3))
	}
	insts[2].kill()
	var victims, survivors []*subscriber
	for _, s := range subs {
		if s.inst == 2 {
			victims = append(victims, s)
		} else {
			survivors = append(survivors, s)
		}
	}
	for _, s := range victims {
		waitFor(t, 5*time.Second, func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.err != nil
		}, "the killed instance's clients to see their connection end")
	}
	want := map[string]map[string]bool{"k": {}}
	for k, in := range insts[:2] {
		pub := native(t, in.ws("/ws"))
		for n := range 20 {
			r, err := pub.request(fmt.Sprintf(`{"id":%d,"op":"publish","channel":"k","data":{"src":"i%d","n":%d}}`, n+1, k, n), float64(n+1), nil)
			if err != nil || r["ok"] != true {
				t.Fatalf("publish on a surviving instance: %v %v", r, err)
			}
			want["k"][fmt.Sprintf("i%d:%d", k, n)] = true
		}
	}
	checkDelivery(t, insts[0].url(""), survivors, want)
	insts[2].cmd = nil // already dead: nothing to stop
}
