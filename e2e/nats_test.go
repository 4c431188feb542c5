package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/internal/natstest"
)

// TestChaosNatsRestart: two instances share a channel with history through
// NATS (JetStream storage on disk). nats-server is restarted gracefully
// while a publisher posts every 10 ms; publishes refused meanwhile (503)
// are retried with their idempotency key. Every JS subscriber must then
// have every acknowledged message exactly once, in order, without a gap
// event: the instances fill what they missed from the stream's history.
func TestChaosNatsRestart(t *testing.T) {
	const (
		subscribers = 100
		channel     = "chaos-nats"
	)
	nats := natstest.Start(t, nil)
	var insts []*instance
	var urls []string
	for i := range 2 {
		in := startInstance(t, "--nats", nats.URL(), "--nats-prefix", "chaos", "--history-size", "10000",
			"--ping-interval", "2s", "--node-id", fmt.Sprintf("nats%d", i))
		insts = append(insts, in)
		urls = append(urls, in.ws("/ws"))
	}
	subs := startJSSubscribers(t, urls, channel, subscribers)
	subs.waitReady(30 * time.Second)
	waitFor(t, 10*time.Second, func() bool { return subs.status(0).Subscribed == subscribers }, "every subscriber subscribed")

	pub := startChaosPublisher(t, insts, channel, 10*time.Millisecond)
	waitFor(t, 10*time.Second, func() bool { return pub.acked() >= 100 }, "100 messages published")

	refusedBefore := pub.refused()
	nats.Stop()
	down := time.Now()
	for _, in := range insts {
		waitFor(t, 5*time.Second, func() bool { return readyStatus(in) == 503 }, "/readyz 503 while NATS is down")
	}
	waitFor(t, 10*time.Second, func() bool { return pub.refused() >= refusedBefore+20 }, "20 publishes refused while NATS is down")
	nats.Restart()
	up := time.Now()
	for _, in := range insts {
		waitFor(t, 10*time.Second, func() bool { return readyStatus(in) == 200 }, "/readyz 200 once NATS is back")
	}
	mark := pub.acked()
	waitFor(t, 15*time.Second, func() bool { return pub.acked() >= mark+100 }, "100 messages published after NATS restarted")
	t.Logf("NATS down for %v; %d publishes refused (503) and retried meanwhile; 100 more acknowledged %v after the restart",
		up.Sub(down).Round(time.Millisecond), pub.refused()-refusedBefore, time.Since(up).Round(time.Millisecond))

	last := pub.finish()
	waitFor(t, 30*time.Second, func() bool { return subs.status(last).AtLeast == subscribers }, fmt.Sprintf("every subscriber to receive message %d", last))
	reports := subs.report()
	var deliveries, bad int
	dups := map[int64]int{}
	for _, r := range reports {
		deliveries += r.Received
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
	}
	for seq, n := range dups {
		t.Errorf("seq %d arrived twice at %d subscribers; the publisher's attempts: %s", seq, n, pub.attempts(seq))
	}
	t.Logf("subscribers %d, messages %d (all acknowledged), deliveries %d (want %d); gaps filled from history: %v and %v",
		len(reports), last, deliveries, len(reports)*int(last),
		metric(t, insts[0], "switchboard_gaps_filled_total"), metric(t, insts[1], "switchboard_gaps_filled_total"))
}

// TestStartBeforeNats starts an instance before anything listens on its
// NATS's port: it runs, not ready and saying why, and refuses publishes
// with 503; once nats-server starts it becomes ready by itself and a
// native subscriber receives what the HTTP API publishes.
func TestStartBeforeNats(t *testing.T) {
	nats := natstest.New(t, nil)
	in := startInstance(t, "--nats", nats.URL(), "--history-size", "10")
	// The first attempt's error is nats.go's "no servers available"; the
	// retries say why.
	waitFor(t, 5*time.Second, func() bool {
		status, why := readiness(in)
		return status == 503 && strings.Contains(why, "connection refused")
	}, "/readyz 503 saying the connection was refused")
	if code, body, err := httpPost(in.url("/api/publish"), `{"channel":"news","data":"early"}`); err != nil || code != 503 {
		t.Fatalf("HTTP publish before NATS: %d %s %v, want 503", code, body, err)
	}
	nats.Restart()
	waitFor(t, 10*time.Second, func() bool { return readyStatus(in) == 200 }, "/readyz 200 once NATS is up")
	sub := native(t, in.ws("/ws"))
	if r, err := sub.request(`{"id":1,"op":"subscribe","channel":"news"}`, 1, nil); err != nil || errorCode(r) != "" {
		t.Fatalf("subscribe: %v %v", r, err)
	}
	if code, body, err := httpPost(in.url("/api/publish"), `{"channel":"news","data":"late"}`); err != nil || code != 200 {
		t.Fatalf("HTTP publish: %d %s %v", code, body, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		m, err := sub.readJSON(ctx)
		if err != nil {
			t.Fatalf("waiting for the message: %v", err)
		}
		if m["data"] == "late" {
			return
		}
	}
}
