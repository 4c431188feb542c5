package e2e

import (
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/internal/redistest"
)

type nodesReply struct {
	Nodes []struct {
		ID                   string  `json:"id"`
		Version              string  `json:"version"`
		Address              string  `json:"address"`
		State                string  `json:"state"`
		Connections          int64   `json:"connections"`
		Subscriptions        int64   `json:"subscriptions"`
		MessagesOutPerSecond float64 `json:"messages_out_per_second"`
		ExpiresAfterMS       int64   `json:"expires_after_ms"`
	}
}

// TestNodesAcrossInstances: every node lists every other through Redis
// with its figures; a node that stops gracefully leaves the list at once,
// one killed leaves it when its announcement expires.
func TestNodesAcrossInstances(t *testing.T) {
	redis := redistest.Start(t, nil)
	a := startInstance(t, "--redis", redis.URL(), "--node-id", "node-a")
	b := startInstance(t, "--redis", redis.URL(), "--node-id", "node-b")
	c := startInstance(t, "--redis", redis.URL(), "--node-id", "node-c")
	var r nodesReply
	// A node announces itself as soon as it starts, and its address once
	// it listens: wait for every node's announcement with its address.
	waitFor(t, 10*time.Second, func() bool {
		getJSON(t, a.url("/api/nodes"), &r)
		if len(r.Nodes) != 3 {
			return false
		}
		for _, n := range r.Nodes {
			if n.Address == "" || n.State != "ready" {
				return false
			}
		}
		return true
	}, "three ready nodes with their addresses listed by node-a")
	for i, want := range []string{"node-a", "node-b", "node-c"} {
		n := r.Nodes[i]
		if n.ID != want || n.State != "ready" || n.Address == "" || n.Version == "" || n.ExpiresAfterMS <= 0 {
			t.Errorf("node %d: %+v, want %s, ready, with an address, a version and an expiry", i, n, want)
		}
	}
	// A client of node-b, subscribed and receiving, shows in node-a's list.
	cb := native(t, b.ws("/ws"))
	if resp, err := cb.request(`{"id":1,"op":"subscribe","channel":"news"}`, 1, nil); err != nil || resp["ok"] != true {
		t.Fatalf("subscribe: %v %v", resp, err)
	}
	waitFor(t, 10*time.Second, func() bool {
		getJSON(t, a.url("/api/nodes"), &r)
		for _, n := range r.Nodes {
			if n.ID == "node-b" {
				return n.Connections == 1 && n.Subscriptions == 1
			}
		}
		return false
	}, "node-b's connection and subscription, seen from node-a")
	c.stop()
	c.cmd = nil
	waitFor(t, 2*time.Second, func() bool {
		getJSON(t, a.url("/api/nodes"), &r)
		return len(r.Nodes) == 2
	}, "a node that shut down to leave the list at once")
	expiry := time.Duration(r.Nodes[1].ExpiresAfterMS) * time.Millisecond
	b.kill()
	b.cmd = nil
	killed := time.Now()
	waitFor(t, expiry+5*time.Second, func() bool {
		getJSON(t, a.url("/api/nodes"), &r)
		return len(r.Nodes) == 1 && r.Nodes[0].ID == "node-a"
	}, "a killed node to leave the list when its announcement expires")
	t.Logf("a killed node left the list %v after the kill (expiry %v)", time.Since(killed).Round(10*time.Millisecond), expiry)
}
