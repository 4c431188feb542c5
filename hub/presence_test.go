package hub_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/internal/wait"
)

func TestPresenceAndJoinLeave(t *testing.T) {
	h, _ := newHub(t, hub.Config{
		Namespaces:  map[string]hub.NamespaceOptions{"room": {Presence: true, JoinLeave: true}},
		PresenceTTL: time.Minute,
	})
	a, fa := connect(t, h)
	b, fb := connect(t, h)
	a.HandleText([]byte(`{"id":1,"op":"subscribe","channel":"room:1"}`))
	fa.waitFrames(t, 2)
	// a's own join event arrives too: it is a subscriber when it is sent.
	fa.waitFrames(t, 3)
	b.HandleText([]byte(`{"id":1,"op":"subscribe","channel":"room:1"}`))
	fs := fa.waitFrames(t, 4)
	var ev struct{ Op, Channel, Client string }
	if err := json.Unmarshal(fs[3].payload, &ev); err != nil || ev.Op != "join" || ev.Channel != "room:1" || ev.Client != b.ID() {
		t.Fatalf("join event %s", fs[3].payload)
	}
	fb.waitFrames(t, 2)
	b.HandleText([]byte(`{"id":2,"op":"presence","channel":"room:1"}`))
	var pr struct {
		OK      bool
		Clients []struct{ Client string }
	}
	var got []frame
	// The reply is the frame with id 2 (join events may come around it).
	wait.For(t, 5*time.Second, func() error {
		got = fb.received(t)
		for _, f := range got {
			var m map[string]any
			_ = json.Unmarshal(f.payload, &m)
			if m["id"] == 2.0 {
				return json.Unmarshal(f.payload, &pr)
			}
		}
		return fmt.Errorf("no presence reply in %q", got)
	})
	if !pr.OK || len(pr.Clients) != 2 {
		t.Fatalf("presence reply: %+v (%q)", pr, got)
	}
	b.HandleText([]byte(`{"id":3,"op":"unsubscribe","channel":"room:1"}`))
	fs = fa.waitFrames(t, 5)
	if err := json.Unmarshal(fs[4].payload, &ev); err != nil || ev.Op != "leave" || ev.Client != b.ID() {
		t.Fatalf("leave event %s", fs[4].payload)
	}
	entries, err := h.Presence(context.Background(), "room:1")
	if err != nil || len(entries) != 1 || entries[0].Client != a.ID() || entries[0].Node != h.NodeID() {
		t.Fatalf("presence after leave: %+v %v", entries, err)
	}
	// Namespaces without presence refuse the request.
	a.HandleText([]byte(`{"id":9,"op":"presence","channel":"other"}`))
	fs = fa.waitFrames(t, 6)
	if string(fs[5].payload) != `{"id":9,"ok":false,"error":{"code":"forbidden","message":"presence is not enabled for channel other"}}` {
		t.Errorf("presence on a channel without it: %s", fs[5].payload)
	}
	counts, err := h.ClusterChannels(context.Background())
	if err != nil || counts["room:1"] != 1 {
		t.Errorf("cluster channels %v %v", counts, err)
	}
}
