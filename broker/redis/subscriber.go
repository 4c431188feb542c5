package redis

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/redis/rueidis"

	"github.com/switchboard-rt/switchboard/broker"
)

// subReq is a Subscribe or Unsubscribe call waiting for the subscriber.
type subReq struct {
	ctx       context.Context
	subscribe bool
	channels  []string
	done      chan error // buffered: the subscriber never blocks on it
}

// maxBatchReqs caps how many queued requests the subscriber serves in one
// go.
const maxBatchReqs = 256

// subscriber owns the pub/sub connection: it subscribes and unsubscribes
// for the callers, reconnects when the connection breaks and subscribes
// again to every channel. All its fields are owned by its goroutine (run),
// or by Start before run begins.
type subscriber struct {
	b *Broker
	// want holds the channels subscribed: on the connection while it is
	// up, and to subscribe again once it is back while it is down.
	want map[string]struct{}
	conn rueidis.DedicatedClient // nil while disconnected
	lost <-chan error            // reports the connection's end
	// down is set while the subscriptions are lost.
	down bool
}

func newSubscriber(b *Broker) *subscriber {
	return &subscriber{b: b, want: make(map[string]struct{})}
}

// connect opens the pub/sub connection and subscribes to every channel in
// want, in batches sent together.
func (s *subscriber) connect() error {
	conn, _ := s.b.client.Dedicate()
	lost := conn.SetPubSubHooks(rueidis.PubSubHooks{OnMessage: s.b.onMessage})
	select {
	case err := <-lost:
		conn.Close()
		if err == nil {
			err = errors.New("connection closed")
		}
		return err
	default:
	}
	s.conn, s.lost = conn, lost
	if len(s.want) == 0 {
		// Prove the connection works before calling it up.
		return s.ping()
	}
	chs := make([]string, 0, len(s.want))
	for ch := range s.want {
		chs = append(chs, ch)
	}
	if err := s.send(true, chs); err != nil {
		return err
	}
	return nil
}

// disconnect closes the pub/sub connection.
func (s *subscriber) disconnect() {
	if s.conn != nil {
		s.conn.Close()
		s.conn, s.lost = nil, nil
	}
}

// send subscribes to or unsubscribes from chs, SubscribeBatch channels per
// command, all commands in one round trip. On failure it disconnects: which
// commands took effect is unknown, and a new connection starts clean.
func (s *subscriber) send(subscribe bool, chs []string) error {
	var cmds rueidis.Commands
	for len(chs) > 0 {
		n := min(len(chs), s.b.cfg.SubscribeBatch)
		names := make([]string, n)
		for i, ch := range chs[:n] {
			names[i] = s.b.keys.channel(ch)
		}
		if subscribe {
			cmds = append(cmds, s.conn.B().Subscribe().Channel(names...).Build())
		} else {
			cmds = append(cmds, s.conn.B().Unsubscribe().Channel(names...).Build())
		}
		chs = chs[n:]
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.b.cfg.Timeout)
	defer cancel()
	for _, res := range s.conn.DoMulti(ctx, cmds...) {
		if err := res.Error(); err != nil {
			s.disconnect()
			return err
		}
	}
	return nil
}

// ping checks the pub/sub connection, disconnecting when it fails.
func (s *subscriber) ping() error {
	ctx, cancel := context.WithTimeout(context.Background(), min(s.b.cfg.Timeout, 2*s.b.cfg.HealthInterval))
	defer cancel()
	if err := s.conn.Do(ctx, s.conn.B().Ping().Build()).Error(); err != nil {
		s.disconnect()
		return err
	}
	return nil
}

// run serves subscription requests and keeps the connection up until
// Close.
func (s *subscriber) run() {
	defer s.b.wg.Done()
	defer s.disconnect()
	ping := time.NewTicker(s.b.cfg.HealthInterval)
	defer ping.Stop()
	attempt := 0
	for {
		if s.conn == nil {
			if attempt > 0 && !s.wait(s.backoff(attempt)) {
				return
			}
			attempt++
			if err := s.connect(); err != nil {
				s.setDown(err)
				continue
			}
			attempt = 0
			s.setUp()
		}
		select {
		case <-s.b.stop:
			return
		case err := <-s.lost:
			s.disconnect()
			if err == nil {
				err = errors.New("connection closed")
			}
			s.setDown(err)
		case r := <-s.b.reqs:
			s.serve(r)
		case <-ping.C:
			if err := s.ping(); err != nil {
				s.setDown(err)
			}
		}
	}
}

// backoff returns the wait before reconnection attempt n (n >= 1):
// doubling from 25ms up to ReconnectDelay, with jitter.
func (s *subscriber) backoff(n int) time.Duration {
	return jitter(min(25*time.Millisecond<<min(n-1, 16), s.b.cfg.ReconnectDelay))
}

// jitter returns a random duration between d/2 and d, so that nodes
// started together do not retry in step.
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

// wait waits for d while disconnected, answering requests meanwhile. It
// returns false when the broker is closing.
func (s *subscriber) wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-s.b.stop:
			return false
		case <-t.C:
			return true
		case r := <-s.b.reqs:
			s.serve(r)
		}
	}
}

// serve answers r and the requests queued behind it, sending the runs of
// consecutive subscribes (or unsubscribes) as one batch.
func (s *subscriber) serve(r *subReq) {
	batch := []*subReq{r}
drain:
	for len(batch) < maxBatchReqs {
		select {
		case r := <-s.b.reqs:
			batch = append(batch, r)
		default:
			break drain
		}
	}
	for len(batch) > 0 {
		n := 1
		for n < len(batch) && batch[n].subscribe == batch[0].subscribe {
			n++
		}
		s.apply(batch[0].subscribe, batch[:n])
		batch = batch[n:]
	}
}

// apply subscribes to (or unsubscribes from) the channels of reqs and
// answers them.
func (s *subscriber) apply(subscribe bool, reqs []*subReq) {
	var chs []string
	seen := make(map[string]struct{})
	live := reqs[:0:0]
	for _, r := range reqs {
		if err := r.ctx.Err(); err != nil {
			r.done <- err
			continue
		}
		live = append(live, r)
		for _, ch := range r.channels {
			if _, dup := seen[ch]; dup {
				continue
			}
			seen[ch] = struct{}{}
			if _, ok := s.want[ch]; ok != subscribe {
				chs = append(chs, ch)
			}
		}
	}
	var err error
	switch {
	case subscribe && s.conn == nil:
		err = broker.ErrUnavailable
	case subscribe && len(chs) > 0:
		if err = s.send(true, chs); err != nil {
			err = fmt.Errorf("%w: %w", broker.ErrUnavailable, err)
			s.setDown(err)
		} else {
			for _, ch := range chs {
				s.want[ch] = struct{}{}
			}
		}
	case !subscribe:
		for _, ch := range chs {
			delete(s.want, ch)
		}
		if s.conn != nil && len(chs) > 0 {
			if serr := s.send(false, chs); serr != nil {
				// The connection is gone, and its subscriptions with it.
				s.setDown(serr)
			}
		}
	}
	for _, r := range live {
		r.done <- err
	}
}

// setDown records that the subscriptions are lost.
func (s *subscriber) setDown(err error) {
	s.b.setErr(&s.b.subErr, err)
	if s.down {
		return
	}
	s.down = true
	if s.b.state != nil && !s.b.closed.Load() {
		s.b.state.SubscriptionsLost(err)
	}
}

// setUp records that every subscription is back.
func (s *subscriber) setUp() {
	if s.down {
		// The publishing connection went through the same outage.
		s.b.checkPing()
	}
	s.b.setErr(&s.b.subErr, nil)
	if !s.down {
		return
	}
	s.down = false
	s.b.log.Debug("redis: subscriptions restored", "channels", len(s.want))
	if s.b.state != nil {
		s.b.state.SubscriptionsRestored()
	}
}
