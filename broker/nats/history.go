package nats

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-rt/switchboard/broker"
)

// JetStream error codes the broker acts on.
const (
	errCodeWrongLastSequence = 10071 // Nats-Expected-Last-Subject-Sequence did not hold
)

// minTTL is the shortest history time-to-live a stream gets: nats-server
// refuses shorter ages, and expiry is not that precise anyway.
const minTTL = 100 * time.Millisecond

// maxCached bounds how many channels' newest messages the broker
// remembers; past it, it forgets them all and reads them again as needed.
const maxCached = 100_000

// history keeps channels' histories in JetStream streams (see the package
// documentation). Its maps are caches: dropping them costs reads, never
// correctness, because every publish is checked by NATS against the
// channel's actual newest message.
type history struct {
	b *Broker

	mu      sync.Mutex
	streams map[group]jetstream.Stream // guarded by mu: streams known to exist
	last    map[string]lastMsg         // guarded by mu: by history subject, its newest message
	groups  map[string]group           // guarded by mu: by channel, the group it was last used with
}

// lastMsg is a channel's newest message in its stream: its stream sequence
// and its position (offset 0 for an epoch's start marker).
type lastMsg struct {
	seq   uint64
	epoch string
	off   uint64
}

func (h *history) init(b *Broker) {
	h.b = b
	h.streams = make(map[group]jetstream.Stream)
	h.last = make(map[string]lastMsg)
	h.groups = make(map[string]group)
}

// forget drops what NATS may have lost (after a reconnection).
func (h *history) forget() {
	h.mu.Lock()
	defer h.mu.Unlock()
	clear(h.streams)
	clear(h.last)
}

// groupFor returns the group of channels published with opts.
func groupFor(opts broker.PublishOptions) group {
	ttl := opts.HistoryTTL
	if ttl <= 0 {
		ttl = 24 * time.Hour
	}
	ttl = max(ttl.Truncate(time.Millisecond), minTTL)
	return group{size: opts.HistorySize, ttl: ttl}
}

// streamConfig is the configuration of g's stream: per channel, size
// messages (plus an epoch marker) each kept for ttl, republished to the
// live subjects, with the duplicate window of idempotency keys.
func (h *history) streamConfig(g group) jetstream.StreamConfig {
	all := h.b.ns.historyAll(g)
	return jetstream.StreamConfig{
		Name:              h.b.ns.stream(g),
		Description:       fmt.Sprintf("switchboard history: %d messages per channel for %v", g.size, g.ttl),
		Subjects:          []string{all},
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		MaxMsgsPerSubject: int64(g.size) + 1,
		MaxAge:            g.ttl,
		Duplicates:        min(h.b.cfg.IdempotencyWindow, g.ttl),
		Storage:           h.b.cfg.Storage,
		Replicas:          h.b.cfg.Replicas,
		AllowDirect:       true,
		RePublish:         &jetstream.RePublish{Source: all, Destination: h.b.ns.liveAll()},
	}
}

// liveGroup stands for the live stream in the streams map.
var liveGroup = group{}

// liveBytes bounds the memory the live stream holds: it keeps each
// channel's newest message only for its duplicate window.
const liveBytes = 64 << 20

// liveConfig is the configuration of the live stream: channels without
// history are published to it so that NATS puts each channel's messages
// in one order, the same for every node (its republish), and so that
// idempotency keys are checked atomically (its duplicate window). It keeps
// one message per channel, in memory, for that window.
func (h *history) liveConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              h.b.ns.liveStream(),
		Description:       "switchboard live messages (no history): ordering and idempotency",
		Subjects:          []string{h.b.ns.publishAll()},
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		MaxMsgsPerSubject: 1,
		MaxBytes:          liveBytes,
		MaxAge:            h.b.cfg.IdempotencyWindow,
		Duplicates:        h.b.cfg.IdempotencyWindow,
		Storage:           jetstream.MemoryStorage,
		Replicas:          h.b.cfg.Replicas,
		RePublish:         &jetstream.RePublish{Source: h.b.ns.publishAll(), Destination: h.b.ns.liveAll()},
	}
}

// publishLive publishes a message of a channel without history through
// the live stream.
func (h *history) publishLive(ctx context.Context, channel string, data []byte, opts broker.PublishOptions) (broker.Position, error) {
	cctx, cancel := context.WithTimeout(ctx, h.b.cfg.Timeout)
	defer cancel()
	m := nats.NewMsg(h.b.ns.publish(channel))
	m.Data = data
	setCommon(m.Header, opts)
	var popts []jetstream.PublishOpt
	if opts.IdempotencyKey != "" {
		popts = append(popts, jetstream.WithMsgID(msgID(channel, opts.IdempotencyKey)))
	}
	for attempt := 1; ; attempt++ {
		if _, err := h.stream(cctx, liveGroup); err != nil {
			return broker.Position{}, h.b.fail(ctx, "publish", channel, err)
		}
		_, err := h.b.js.PublishMsg(cctx, m, popts...)
		if noStream(err) && attempt < 3 && cctx.Err() == nil {
			h.dropStream(liveGroup)
			continue
		}
		if err != nil {
			return broker.Position{}, h.b.fail(ctx, "publish", channel, err)
		}
		return broker.Position{}, nil
	}
}

// stream returns g's stream, creating it (or updating its configuration)
// the first time.
func (h *history) stream(ctx context.Context, g group) (jetstream.Stream, error) {
	h.mu.Lock()
	st, ok := h.streams[g]
	h.mu.Unlock()
	if ok {
		return st, nil
	}
	cfg := h.liveConfig()
	if g != liveGroup {
		cfg = h.streamConfig(g)
	}
	st, err := h.b.js.CreateOrUpdateStream(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("create stream %s: %w", cfg.Name, err)
	}
	h.mu.Lock()
	h.streams[g] = st
	h.mu.Unlock()
	return st, nil
}

// dropStream forgets that g's stream exists.
func (h *history) dropStream(g group) {
	h.mu.Lock()
	delete(h.streams, g)
	h.mu.Unlock()
}

// remember records that channel keeps its history in g.
func (h *history) remember(channel string, g group) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.groups) >= maxCached {
		clear(h.groups)
	}
	h.groups[channel] = g
}

// setLast records a subject's newest message, unless a newer one is known.
func (h *history) setLast(subject string, m lastMsg) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if old, ok := h.last[subject]; ok && old.seq >= m.seq {
		return
	}
	if len(h.last) >= maxCached {
		clear(h.last)
	}
	h.last[subject] = m
}

// dropLast forgets a subject's newest message.
func (h *history) dropLast(subject string) {
	h.mu.Lock()
	delete(h.last, subject)
	h.mu.Unlock()
}

// observe records a delivered message that its stream republished.
func (h *history) observe(hdr nats.Header, epoch string, off uint64) {
	subject := hdr.Get(jetstream.SubjectHeader)
	seq, err := strconv.ParseUint(hdr.Get(jetstream.SequenceHeader), 10, 64)
	if subject == "" || err != nil {
		return
	}
	h.setLast(subject, lastMsg{seq: seq, epoch: epoch, off: off})
}

// readLast reads subject's newest message from its stream (cached when
// fresh is false); found is false when the subject has none.
func (h *history) readLast(ctx context.Context, st jetstream.Stream, subject string, fresh bool) (m lastMsg, found bool, err error) {
	if !fresh {
		h.mu.Lock()
		m, found = h.last[subject]
		h.mu.Unlock()
		if found {
			return m, true, nil
		}
	}
	raw, err := st.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		h.dropLast(subject)
		return lastMsg{}, false, nil
	}
	if err != nil {
		return lastMsg{}, false, fmt.Errorf("read the newest message: %w", err)
	}
	m, err = lastOf(raw)
	if err != nil {
		return lastMsg{}, false, err
	}
	h.setLast(subject, m)
	return m, true, nil
}

// lastOf reads the position of a stored message.
func lastOf(raw *jetstream.RawStreamMsg) (lastMsg, error) {
	off, err := strconv.ParseUint(raw.Header.Get(hdrOffset), 10, 64)
	epoch := raw.Header.Get(hdrEpoch)
	if err != nil || epoch == "" {
		return lastMsg{}, fmt.Errorf("message %d of %s has no position (%q, %q)", raw.Sequence, raw.Subject, epoch, raw.Header.Get(hdrOffset))
	}
	return lastMsg{seq: raw.Sequence, epoch: epoch, off: off}, nil
}

// msgID is the Nats-Msg-Id of a publish with an idempotency key: unique
// to the channel and key, whatever characters they hold.
func msgID(channel, key string) string {
	sum := sha256.Sum256([]byte(channel + "\x00" + key))
	return hex.EncodeToString(sum[:])
}

// retryable reports whether a JetStream publish failed because another
// publish came first (the channel's newest message was not the one the
// broker expected).
func wrongLast(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeWrongLastSequence
}

// noStream reports whether a publish found no stream to take it: NATS
// restarted without its store, or someone deleted the stream.
func noStream(err error) bool {
	return errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrStreamNotFound)
}

// publish appends a message to channel's history, where NATS republishes
// it to every subscribed node. It expects the channel's newest message to
// be the one it knows (Nats-Expected-Last-Subject-Sequence), so that the
// offset it gives is the next one; when another publish came first, it
// reads the newest message and tries again, until the Timeout.
func (h *history) publish(ctx context.Context, channel string, data []byte, opts broker.PublishOptions) (broker.Position, error) {
	cctx, cancel := context.WithTimeout(ctx, h.b.cfg.Timeout)
	defer cancel()
	g := groupFor(opts)
	h.remember(channel, g)
	subject := h.b.ns.history(g, channel)
	for attempt := 1; ; attempt++ {
		st, err := h.stream(cctx, g)
		if err != nil {
			return broker.Position{}, h.b.fail(ctx, "publish", channel, err)
		}
		last, found, err := h.readLast(cctx, st, subject, attempt > 1)
		if err != nil {
			return broker.Position{}, h.b.fail(ctx, "publish", channel, err)
		}
		pos, expect := broker.Position{Epoch: newEpoch(), Offset: 1}, uint64(0)
		if found {
			pos, expect = broker.Position{Epoch: last.epoch, Offset: last.off + 1}, last.seq
		}
		m := nats.NewMsg(subject)
		m.Data = data
		setCommon(m.Header, opts)
		m.Header.Set(hdrEpoch, pos.Epoch)
		m.Header.Set(hdrOffset, strconv.FormatUint(pos.Offset, 10))
		popts := []jetstream.PublishOpt{jetstream.WithExpectLastSequencePerSubject(expect)}
		if opts.IdempotencyKey != "" {
			popts = append(popts, jetstream.WithMsgID(msgID(channel, opts.IdempotencyKey)))
		}
		ack, err := h.b.js.PublishMsg(cctx, m, popts...)
		switch {
		case err == nil:
		case wrongLast(err) && cctx.Err() == nil:
			h.dropLast(subject)
			continue
		case noStream(err) && attempt < 3 && cctx.Err() == nil:
			h.dropStream(g)
			h.dropLast(subject)
			continue
		default:
			h.dropLast(subject)
			return broker.Position{}, h.b.fail(ctx, "publish", channel, err)
		}
		if ack.Duplicate {
			return h.positionOf(cctx, st, channel, ack.Sequence)
		}
		h.setLast(subject, lastMsg{seq: ack.Sequence, epoch: pos.Epoch, off: pos.Offset})
		return pos, nil
	}
}

// positionOf returns the position of the message at seq: the first publish
// with an idempotency key that was just repeated.
func (h *history) positionOf(ctx context.Context, st jetstream.Stream, channel string, seq uint64) (broker.Position, error) {
	raw, err := st.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return broker.Position{}, fmt.Errorf("nats: publish %q: a repeat of message %d, which has left the history", channel, seq)
	}
	if err != nil {
		return broker.Position{}, h.b.fail(ctx, "publish", channel, err)
	}
	m, err := lastOf(raw)
	if err != nil {
		return broker.Position{}, fmt.Errorf("nats: publish %q: %w", channel, err)
	}
	return broker.Position{Epoch: m.epoch, Offset: m.off}, nil
}

// find returns the group of channel's history when opts do not say it:
// the one this node last used for it, or else the first stream of the
// prefix that has messages of it.
func (h *history) find(ctx context.Context, channel string) (group, bool, error) {
	h.mu.Lock()
	g, ok := h.groups[channel]
	h.mu.Unlock()
	if ok {
		return g, true, nil
	}
	names := h.b.js.StreamNames(ctx)
	var found []group
	for name := range names.Name() {
		if g, ok := h.b.ns.groupOf(name); ok {
			found = append(found, g)
		}
	}
	if err := names.Err(); err != nil {
		return group{}, false, fmt.Errorf("list streams: %w", err)
	}
	for _, g := range found {
		// Look the stream up rather than make it: its configuration is
		// whoever made it's.
		st, err := h.b.js.Stream(ctx, h.b.ns.stream(g))
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return group{}, false, fmt.Errorf("look up stream %s: %w", h.b.ns.stream(g), err)
		}
		if _, ok, err := h.readLast(ctx, st, h.b.ns.history(g, channel), true); err != nil {
			return group{}, false, err
		} else if ok {
			h.remember(channel, g)
			return g, true, nil
		}
	}
	return group{}, false, nil
}

// History reads the channel's history (see broker.Historian). A channel
// without a live history gets a fresh epoch at offset 0 when opts keep
// history (an epoch marker stored in its stream), and the zero Position
// when they do not.
func (b *Broker) History(ctx context.Context, channel string, req broker.HistoryRequest, opts broker.PublishOptions) (broker.HistoryResult, error) {
	if err := b.usable(); err != nil {
		return broker.HistoryResult{}, err
	}
	cctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	res, err := b.hist.read(cctx, channel, req, opts)
	if err != nil {
		return broker.HistoryResult{}, b.fail(ctx, "history", channel, err)
	}
	return res, nil
}

func (h *history) read(ctx context.Context, channel string, req broker.HistoryRequest, opts broker.PublishOptions) (broker.HistoryResult, error) {
	var g group
	if opts.HistorySize > 0 {
		g = groupFor(opts)
	} else {
		var ok bool
		var err error
		if g, ok, err = h.find(ctx, channel); err != nil || !ok {
			return broker.HistoryResult{}, err
		}
	}
	subject := h.b.ns.history(g, channel)
	for attempt := 1; ; attempt++ {
		st, err := h.stream(ctx, g)
		if err != nil {
			return broker.HistoryResult{}, err
		}
		last, found, err := h.readLast(ctx, st, subject, true)
		if noStream(err) && attempt < 3 {
			h.dropStream(g)
			continue
		}
		if err != nil {
			return broker.HistoryResult{}, err
		}
		if found {
			return h.since(ctx, st, channel, subject, g, last, req)
		}
		if opts.HistorySize <= 0 {
			return broker.HistoryResult{}, nil
		}
		// Start an epoch, so that the first publish uses the one
		// returned here: a marker (offset 0, no data) unless another
		// node's publish or marker came first.
		epoch := newEpoch()
		m := nats.NewMsg(subject)
		m.Header.Set(hdrEpoch, epoch)
		m.Header.Set(hdrOffset, "0")
		_, err = h.b.js.PublishMsg(ctx, m, jetstream.WithExpectLastSequencePerSubject(0))
		switch {
		case err == nil:
			return broker.HistoryResult{Pos: broker.Position{Epoch: epoch}}, nil
		case wrongLast(err) && ctx.Err() == nil:
			continue
		case noStream(err) && attempt < 3:
			h.dropStream(g)
			continue
		}
		return broker.HistoryResult{}, fmt.Errorf("start an epoch: %w", err)
	}
}

// since answers req from the history of a channel whose newest message is
// last: offsets past last.off-size have left it.
func (h *history) since(ctx context.Context, st jetstream.Stream, channel, subject string, g group, last lastMsg, req broker.HistoryRequest) (broker.HistoryResult, error) {
	res := broker.HistoryResult{Pos: broker.Position{Epoch: last.epoch, Offset: last.off}}
	limit := uint64(max(req.Limit, 0))
	oldest := uint64(1)
	if last.off > uint64(g.size) {
		oldest = last.off - uint64(g.size) + 1
	}
	if req.Since == nil {
		if limit == 0 || last.off == 0 {
			return res, nil
		}
		from := oldest
		if last.off-oldest+1 > limit {
			from = last.off - limit + 1
		}
		msgs, err := h.fetch(ctx, st, channel, subject, last, from, last.off)
		res.Messages = msgs
		return res, err
	}
	since := *req.Since
	switch {
	case since.Epoch != last.epoch || since.Offset > last.off:
		return res, nil
	case since.Offset == last.off:
		res.Recovered = true
		return res, nil
	case limit == 0 || since.Offset+1 < oldest:
		return res, nil
	}
	to := last.off
	if to-since.Offset > limit {
		to = since.Offset + limit
	}
	msgs, err := h.fetch(ctx, st, channel, subject, last, since.Offset+1, to)
	if err != nil || len(msgs) == 0 || msgs[0].Pos.Offset != since.Offset+1 {
		return res, err
	}
	res.Messages = msgs
	res.Recovered = since.Offset+uint64(len(msgs)) == last.off
	return res, nil
}

// fetch reads the messages from..to of a subject through a short-lived
// consumer: a channel keeps at most size+1 messages, so it reads them all
// (one request to create the consumer, one to fetch, one to delete it) and
// keeps those of the range, in order and contiguous.
func (h *history) fetch(ctx context.Context, st jetstream.Stream, channel, subject string, last lastMsg, from, to uint64) ([]broker.Message, error) {
	cons, err := st.CreateConsumer(ctx, jetstream.ConsumerConfig{
		FilterSubject:     subject,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: 10 * time.Second,
		MemoryStorage:     true,
		Replicas:          1,
	})
	if err != nil {
		return nil, fmt.Errorf("read messages: %w", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), h.b.cfg.Timeout)
		defer cancel()
		_ = st.DeleteConsumer(dctx, cons.CachedInfo().Name) // else it expires by itself
	}()
	n := int(cons.CachedInfo().NumPending)
	if n == 0 {
		return nil, nil
	}
	batch, err := cons.FetchNoWait(n)
	if err != nil {
		return nil, fmt.Errorf("read messages: %w", err)
	}
	var out []broker.Message
	for jm := range batch.Messages() {
		hdr := jm.Headers()
		off, err := strconv.ParseUint(hdr.Get(hdrOffset), 10, 64)
		if err != nil || hdr.Get(hdrEpoch) != last.epoch || off < from || off > to {
			continue
		}
		if len(out) > 0 && out[len(out)-1].Pos.Offset+1 != off {
			break // a message expired in between: not contiguous
		}
		m := broker.Message{
			Channel: channel,
			Data:    jm.Data(),
			Binary:  hdr.Get(hdrBinary) == "1",
			Pos:     broker.Position{Epoch: last.epoch, Offset: off},
		}
		m.Time, _ = strconv.ParseInt(hdr.Get(hdrTime), 10, 64)
		out = append(out, m)
	}
	if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !strings.Contains(err.Error(), "no messages") {
		return nil, fmt.Errorf("read messages: %w", err)
	}
	return out, nil
}
