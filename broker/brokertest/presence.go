package brokertest

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/broker"
)

func presencer(t *testing.T, n *node) broker.Presencer {
	t.Helper()
	return n.Broker.(broker.Presencer)
}

// presenceOf returns channel's entries sorted by client.
func presenceOf(t *testing.T, p broker.Presencer, ch string) []broker.PresenceEntry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	es, err := p.Presence(ctx, ch)
	if err != nil {
		t.Fatalf("Presence(%q): %v", ch, err)
	}
	slices.SortFunc(es, func(a, b broker.PresenceEntry) int {
		if a.Client < b.Client {
			return -1
		}
		if a.Client > b.Client {
			return 1
		}
		return 0
	})
	return es
}

func testPresence(t *testing.T, s *suite) {
	p := presencer(t, s.node(t))
	ch := channel(t, "p")
	ctx := context.Background()
	if es := presenceOf(t, p, ch); len(es) != 0 {
		t.Fatalf("empty channel has presence %v", es)
	}
	a := broker.PresenceEntry{Client: "c1", User: "ann", Info: json.RawMessage(`{"name":"Ann"}`), Node: "n1"}
	b := broker.PresenceEntry{Client: "c2", Node: "n1"}
	if _, err := p.SetPresence(ctx, ch, []broker.PresenceEntry{a, b}, time.Minute); err != nil {
		t.Fatal(err)
	}
	// Setting again refreshes, it does not duplicate.
	if _, err := p.SetPresence(ctx, ch, []broker.PresenceEntry{a}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if es := presenceOf(t, p, ch); !sameEntries(es, []broker.PresenceEntry{a, b}) {
		t.Fatalf("presence %v, want %v", es, []broker.PresenceEntry{a, b})
	}
	if _, err := p.RemovePresence(ctx, ch, "c1", "unknown"); err != nil {
		t.Fatal(err)
	}
	if es := presenceOf(t, p, ch); !sameEntries(es, []broker.PresenceEntry{b}) {
		t.Fatalf("after remove: %v", es)
	}
	if es := presenceOf(t, p, channel(t, "other")); len(es) != 0 {
		t.Fatalf("presence leaks across channels: %v", es)
	}
}

func testPresenceExpires(t *testing.T, s *suite) {
	p := presencer(t, s.node(t))
	ch := channel(t, "x")
	ctx := context.Background()
	if _, err := p.SetPresence(ctx, ch, []broker.PresenceEntry{{Client: "gone", Node: "dead"}}, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if _, err := p.SetPresence(ctx, ch, []broker.PresenceEntry{{Client: "stays", Node: "live"}}, time.Minute); err != nil {
		t.Fatal(err)
	}
	s.waitFor(t, "the unrefreshed entry to expire", func() bool {
		es := presenceOf(t, p, ch)
		return len(es) == 1 && es[0].Client == "stays"
	})
}

func testSharedPresence(t *testing.T, s *suite) {
	pa, pb := presencer(t, s.node(t)), presencer(t, s.node(t))
	ch := channel(t, "s")
	ctx := context.Background()
	ea := broker.PresenceEntry{Client: "a1", Node: "A"}
	eb := broker.PresenceEntry{Client: "b1", User: "bob", Node: "B"}
	if _, err := pa.SetPresence(ctx, ch, []broker.PresenceEntry{ea}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := pb.SetPresence(ctx, ch, []broker.PresenceEntry{eb}, time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, p := range []broker.Presencer{pa, pb} {
		if es := presenceOf(t, p, ch); !sameEntries(es, []broker.PresenceEntry{ea, eb}) {
			t.Fatalf("presence seen from one node: %v", es)
		}
	}
}

func testNodeCounts(t *testing.T, s *suite) {
	n := s.node(t)
	nc := n.Broker.(broker.NodeCounter)
	ctx := context.Background()
	a, b := channel(t, "a"), channel(t, "b")
	nodeA, nodeB := channel(t, "nodeA"), channel(t, "nodeB")
	if err := nc.SetNodeChannels(ctx, nodeA, map[string]int{a: 2, b: 1}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := nc.SetNodeChannels(ctx, nodeB, map[string]int{a: 3}, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	counts := func() map[string]int {
		all, err := nc.ClusterChannels(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// Other tests may share the backend: look at this test's channels.
		return map[string]int{a: all[a], b: all[b]}
	}
	if got := counts(); !maps.Equal(got, map[string]int{a: 5, b: 1}) {
		t.Fatalf("cluster counts %v", got)
	}
	// A node's new counts replace its old ones.
	if err := nc.SetNodeChannels(ctx, nodeA, map[string]int{b: 4}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if got := counts(); got[a] != 3 || got[b] != 4 {
		t.Fatalf("after replace: %v", got)
	}
	s.waitFor(t, "a node's counts to expire", func() bool {
		got := counts()
		return got[a] == 0 && got[b] == 4
	})
}

// sameEntries reports whether two presence lists hold the same entries in
// the same order.
func sameEntries(a, b []broker.PresenceEntry) bool {
	return slices.EqualFunc(a, b, func(x, y broker.PresenceEntry) bool {
		return x.Client == y.Client && x.User == y.User && x.Node == y.Node && bytes.Equal(x.Info, y.Info)
	})
}

// A user is a member while one entry of theirs is in the channel: the calls
// that change the entries report each arrival and departure once, on
// whichever node makes it (both nodes of a shared backend count together).
func testMembers(t *testing.T, s *suite) {
	pa := presencer(t, s.node(t))
	pb := pa
	if s.f.Shared {
		pb = presencer(t, s.node(t))
	}
	ch := channel(t, "m")
	ctx := context.Background()
	step := func(name string, got []string, err error, want ...string) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Fatalf("%s: %v, want %v", name, got, want)
		}
	}
	got, err := pa.SetPresence(ctx, ch, []broker.PresenceEntry{{Client: "a1", User: "ann", Node: "A"}, {Client: "x", Node: "A"}}, time.Minute)
	step("ann's first client joins", got, err, "ann")
	got, err = pb.SetPresence(ctx, ch, []broker.PresenceEntry{{Client: "b1", User: "ann", Node: "B"}, {Client: "b2", User: "bob", Node: "B"}}, time.Minute)
	step("ann's second client and bob join on another node", got, err, "bob")
	got, err = pa.SetPresence(ctx, ch, []broker.PresenceEntry{{Client: "a1", User: "ann", Node: "A"}}, time.Minute)
	step("a refresh", got, err)
	got, err = pa.RemovePresence(ctx, ch, "a1", "x")
	step("one of ann's clients leaves", got, err)
	got, err = pb.RemovePresence(ctx, ch, "b1", "b1")
	step("ann's last client leaves", got, err, "ann")
	got, err = pa.SetPresence(ctx, ch, []broker.PresenceEntry{{Client: "c1", User: "cy", Node: "A"}}, 200*time.Millisecond)
	step("cy joins on a node about to die", got, err, "cy")
	var expired []string
	s.waitFor(t, "cy's entry to expire", func() bool {
		a, err := pa.ExpirePresence(ctx, ch)
		b, errb := pb.ExpirePresence(ctx, ch)
		if err != nil || errb != nil {
			t.Fatal(err, errb)
		}
		expired = append(append(expired, a...), b...)
		return len(expired) > 0
	})
	if !slices.Equal(expired, []string{"cy"}) {
		t.Fatalf("expired members: %v, want cy once", expired)
	}
	if es := presenceOf(t, pa, ch); len(es) != 1 || es[0].User != "bob" {
		t.Fatalf("presence after all that: %v, want bob's entry", es)
	}
}
