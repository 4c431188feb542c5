package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/broker/sharded"
	"github.com/switchboard-rt/switchboard/internal/redistest"
)

// readyz returns an instance's /readyz status and its list of unavailable
// shards by name.
func readyz(in *instance) (int, map[string]string) {
	resp, err := http.Get(in.url("/readyz"))
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	var body struct {
		Unavailable []struct {
			Name, Addr, Error string
		} `json:"unavailable_shards"`
	}
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &body)
	down := make(map[string]string)
	for _, s := range body.Unavailable {
		down[s.Name] = s.Addr
	}
	return resp.StatusCode, down
}

// TestShardOutage runs two instances over two standalone Redis servers
// (--redis-shards) with history, clients of both instances on channels of
// both shards, and kills one Redis, then restarts it. During the outage
// both instances stay ready (/readyz 200 naming the dead shard,
// switchboard_broker_shard_up 0 for it), publishes to its channels get
// unavailable, and the other shard's channels keep delivering. After the
// restart every acknowledged message reaches every subscriber once, in one
// order: none lost, none duplicated.
func TestShardOutage(t *testing.T) {
	redis := []*redistest.Server{
		redistest.Start(t, &redistest.Options{Persistence: true}),
		redistest.Start(t, &redistest.Options{Persistence: true}),
	}
	args := []string{"--redis-shards", redis[0].URL() + "," + redis[1].URL(), "--history-size", "1000", "--redis-prefix", "outage"}
	a := startInstance(t, args...)
	b := startInstance(t, args...)
	insts := []*instance{a, b}

	// Two channels on each shard.
	var live, dying []string
	for i := 0; len(live) < 2 || len(dying) < 2; i++ {
		ch := fmt.Sprintf("room%d", i)
		if sharded.Index(ch, 2) == 0 && len(live) < 2 {
			live = append(live, ch)
		} else if sharded.Index(ch, 2) == 1 && len(dying) < 2 {
			dying = append(dying, ch)
		}
	}
	all := append(append([]string{}, live...), dying...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var subs, liveSubs []*subscriber
	for _, ch := range all {
		for i, in := range insts {
			s := connectSubscriber(t, ctx, "ws://"+in.addr, true, ch, i)
			subs = append(subs, s)
			if contains(live, ch) {
				liveSubs = append(liveSubs, s)
			}
		}
	}
	pubs := []*wsClient{native(t, a.ws("/ws")), native(t, b.ws("/ws"))}

	acked := map[string]map[string]bool{}
	for _, ch := range all {
		acked[ch] = map[string]bool{}
	}
	n := 0
	publish := func(ch string) (ok bool, code string) {
		n++
		r, err := pubs[n%2].request(fmt.Sprintf(`{"id":%d,"op":"publish","channel":%q,"data":{"src":"p","n":%d}}`, n, ch, n), float64(n), nil)
		if err != nil {
			t.Fatalf("publish %d: %v", n, err)
		}
		if r["ok"] == true {
			acked[ch][fmt.Sprintf("p:%d", n)] = true
			return true, ""
		}
		e, _ := r["error"].(map[string]any)
		code, _ = e["code"].(string)
		return false, code
	}
	for range 5 {
		for _, ch := range all {
			if ok, code := publish(ch); !ok {
				t.Fatalf("publish to %s before the outage: %s", ch, code)
			}
		}
	}
	// Everything published so far has arrived before the kill.
	for _, s := range subs {
		waitFor(t, 5*time.Second, func() bool { return len(s.received()) == 5 }, "the messages before the outage")
	}

	redis[1].Kill()
	killed := time.Now()
	upMetric := fmt.Sprintf(`switchboard_broker_shard_up{shard="1",addr=%q}`, redis[1].Addr())
	for _, in := range insts {
		waitFor(t, 3*time.Second, func() bool {
			code, down := readyz(in)
			return code == 200 && len(down) == 1 && down["1"] == redis[1].Addr()
		}, "/readyz 200 listing shard 1 as unavailable")
		if got := metric(t, in, upMetric); got != 0 {
			t.Errorf("%s = %v during the outage, want 0", upMetric, got)
		}
		if got := metric(t, in, fmt.Sprintf(`switchboard_broker_shard_up{shard="0",addr=%q}`, redis[0].Addr())); got != 1 {
			t.Errorf("shard 0 up = %v during the outage, want 1", got)
		}
	}
	t.Logf("both instances report shard 1 down %v after the kill", time.Since(killed).Round(time.Millisecond))
	for _, ch := range dying {
		if ok, code := publish(ch); ok || code != "unavailable" {
			t.Fatalf("publish to %s on the dead shard: ok=%v code=%q, want unavailable", ch, ok, code)
		}
	}
	if code, body, err := httpPost(a.url("/api/publish"), fmt.Sprintf(`{"channel":%q,"data":"lost"}`, dying[0])); err != nil || code != 503 {
		t.Fatalf("HTTP publish to the dead shard: %d %s %v, want 503", code, body, err)
	}
	// The live shard's channels are unaffected: published and delivered
	// while the other shard is down.
	for range 5 {
		for _, ch := range live {
			if ok, code := publish(ch); !ok {
				t.Fatalf("publish to %s on the live shard during the outage: %s", ch, code)
			}
		}
	}
	for _, s := range liveSubs {
		waitFor(t, 3*time.Second, func() bool { return len(s.received()) == 10 }, "the live shard's messages during the outage")
	}
	for _, s := range subs {
		s.mu.Lock()
		err := s.err
		s.mu.Unlock()
		if err != nil {
			t.Fatalf("a client lost its connection during the outage: %v", err)
		}
	}

	redis[1].Restart()
	back := time.Now()
	// Publish to the restarted shard as soon as it takes publishes: the
	// instances may not have subscribed again yet, and fill the gap from
	// history.
	waitFor(t, 5*time.Second, func() bool { ok, _ := publish(dying[0]); return ok }, "a publish to the restarted shard")
	t.Logf("the restarted shard takes publishes %v after the restart", time.Since(back).Round(time.Millisecond))
	// An instance that has not reconnected yet answers unavailable: retry
	// as a client would.
	for range 5 {
		for _, ch := range all {
			waitFor(t, 5*time.Second, func() bool {
				ok, code := publish(ch)
				if !ok && code != "unavailable" {
					t.Fatalf("publish to %s after the restart: %s", ch, code)
				}
				return ok
			}, "a publish to "+ch+" after the restart")
		}
	}
	for _, in := range insts {
		waitFor(t, 3*time.Second, func() bool {
			code, down := readyz(in)
			return code == 200 && len(down) == 0
		}, "/readyz 200 with no shard down after the restart")
		if got := metric(t, in, upMetric); got != 1 {
			t.Errorf("%s = %v after the restart, want 1", upMetric, got)
		}
	}
	checkDelivery(t, b.url(""), subs, acked)
	total := 0
	for _, ids := range acked {
		total += len(ids)
	}
	t.Logf("%d acknowledged messages on %d channels reached all %d subscribers once each", total, len(all), len(subs))
}
