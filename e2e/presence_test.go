package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/internal/redistest"
)

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode
}

type presenceReply struct {
	Clients []struct{ Client, Node string }
}

type channelsReply struct {
	Channels []struct {
		Channel     string
		Subscribers int
	}
}

func (c channelsReply) count(ch string) int {
	for _, e := range c.Channels {
		if e.Channel == ch {
			return e.Subscribers
		}
	}
	return 0
}

// TestPresenceAcrossInstances: presence and channel counts span the
// instances, join events cross them, and a killed instance's clients leave
// presence by themselves within the presence TTL.
func TestPresenceAcrossInstances(t *testing.T) {
	redis := redistest.Start(t, nil)
	args := []string{"--redis", redis.URL(), "--presence", "--join-leave", "--presence-ttl", "1s"}
	a := startInstance(t, append(args, "--node-id", "node-a")...)
	b := startInstance(t, append(args, "--node-id", "node-b")...)
	ca := native(t, a.ws("/ws"))
	if r, err := ca.request(`{"id":1,"op":"subscribe","channel":"lobby"}`, 1, nil); err != nil || r["ok"] != true {
		t.Fatalf("subscribe: %v %v", r, err)
	}
	cb := native(t, b.ws("/ws"))
	if r, err := cb.request(`{"id":1,"op":"subscribe","channel":"lobby"}`, 1, nil); err != nil || r["ok"] != true {
		t.Fatalf("subscribe: %v %v", r, err)
	}
	var bID string
	var before presenceReply
	getJSON(t, a.url("/api/presence?channel=lobby"), &before)
	for _, e := range before.Clients {
		if e.Node == "node-b" {
			bID = e.Client
		}
	}
	if len(before.Clients) != 2 || bID == "" {
		t.Fatalf("presence from a: %+v", before)
	}
	// a hears b join, through Redis.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		m, err := ca.readJSON(ctx)
		if err != nil {
			t.Fatalf("waiting for b's join: %v", err)
		}
		if m["op"] == "join" && m["channel"] == "lobby" && m["client"] == bID {
			break
		}
	}
	var p presenceReply
	if code := getJSON(t, b.url("/api/presence?channel=lobby"), &p); code != 200 || len(p.Clients) != 2 || p.Clients[0].Node == p.Clients[1].Node {
		t.Fatalf("presence from b: %d %+v", code, p)
	}
	// Other nodes report their counts every TTL/3.
	waitFor(t, 3*time.Second, func() bool {
		var ch channelsReply
		getJSON(t, a.url("/api/channels"), &ch)
		return ch.count("lobby") == 2
	}, "cluster-wide channel counts")
	b.kill()
	b.cmd = nil
	killed := time.Now()
	waitFor(t, 5*time.Second, func() bool {
		var p presenceReply
		getJSON(t, a.url("/api/presence?channel=lobby"), &p)
		return len(p.Clients) == 1 && p.Clients[0].Node == "node-a"
	}, "the killed instance's client to leave presence")
	t.Logf("a dead instance's client left presence %v after the kill (TTL 1s)", time.Since(killed).Round(10*time.Millisecond))
	waitFor(t, 5*time.Second, func() bool {
		var ch channelsReply
		getJSON(t, a.url("/api/channels"), &ch)
		return ch.count("lobby") == 1
	}, "the killed instance's counts to expire")
}
