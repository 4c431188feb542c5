package hub_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/broker/memory"
	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/internal/wait"
	"github.com/switchboard-rt/switchboard/native"
	"github.com/switchboard-rt/switchboard/raw"
	"github.com/switchboard-rt/switchboard/wsframe"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The hub's tests drive it through the dialects it serves in production.
var (
	nativeDialect = native.New()
	rawDialect    = raw.New("", slog.New(slog.NewTextHandler(io.Discard, nil)))
)

// welcome queues the native welcome frame, as the transport does before
// it attaches a native client.
func welcome(c *hub.Client) {
	if err := nativeDialect.Accept(context.Background(), nil, c); err != nil {
		panic(err)
	}
}

// fakeTransport records the frames written to it. When gate is not nil,
// each WriteFrames waits for a value from it, standing for a socket whose
// peer does not read.
type fakeTransport struct {
	gate chan struct{}

	mu     sync.Mutex
	frames [][]byte
	writes int
	closed bool
	seen   chan struct{} // signalled after each write
	// onClose, when set, runs (on a goroutine of its own) when the
	// transport is closed, as a reader that sees its socket end.
	onClose func()
}

func newFake() *fakeTransport { return &fakeTransport{seen: make(chan struct{}, 1)} }

func (t *fakeTransport) WriteFrames(frames [][]byte) error {
	if t.gate != nil {
		<-t.gate
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return io.ErrClosedPipe
	}
	t.frames = append(t.frames, frames...)
	t.writes++
	select {
	case t.seen <- struct{}{}:
	default:
	}
	return nil
}

func (t *fakeTransport) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.closed && t.gate != nil {
		close(t.gate)
	}
	if !t.closed && t.onClose != nil {
		go t.onClose()
	}
	t.closed = true
	return nil
}

// frame is a decoded server frame.
type frame struct {
	op      byte
	payload []byte
}

func decodeFrame(t testing.TB, b []byte) frame {
	t.Helper()
	if len(b) < 2 || b[0]&0x80 == 0 || b[1]&0x80 != 0 {
		t.Fatalf("not a final unmasked frame: % x", b[:min(len(b), 4)])
	}
	n, h := int(b[1]&0x7f), 2
	switch n {
	case 126:
		n, h = int(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		n, h = int(binary.BigEndian.Uint64(b[2:])), 10
	}
	if len(b) != h+n {
		t.Fatalf("frame length %d, header says %d", len(b), h+n)
	}
	return frame{op: b[0] & 0x0f, payload: b[h:]}
}

// received returns the frames written so far, decoded.
func (t *fakeTransport) received(tb testing.TB) []frame {
	tb.Helper()
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]frame, len(t.frames))
	for i, f := range t.frames {
		out[i] = decodeFrame(tb, f)
	}
	return out
}

// waitFrames polls until n frames were written.
func (t *fakeTransport) waitFrames(tb testing.TB, n int) []frame {
	tb.Helper()
	var fs []frame
	wait.For(tb, 5*time.Second, func() error {
		if fs = t.received(tb); len(fs) < n {
			return fmt.Errorf("got %d frames, want %d: %q", len(fs), n, fs)
		}
		return nil
	})
	return fs
}

// countingBroker counts the broker subscriptions the hub makes.
type countingBroker struct {
	*memory.Broker
	subs, unsubs atomic.Int64
}

func (b *countingBroker) Subscribe(ctx context.Context, chs ...string) error {
	b.subs.Add(int64(len(chs)))
	return b.Broker.Subscribe(ctx, chs...)
}

func (b *countingBroker) Unsubscribe(ctx context.Context, chs ...string) error {
	b.unsubs.Add(int64(len(chs)))
	return b.Broker.Unsubscribe(ctx, chs...)
}

func newHub(t testing.TB, cfg hub.Config) (*hub.Hub, *countingBroker) {
	t.Helper()
	b := &countingBroker{Broker: memory.New(memory.Config{})}
	cfg.Broker = b
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	h, err := hub.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = h.Shutdown(ctx)
	})
	return h, b
}

// connect registers a native client on a fake transport and reads its
// welcome frame.
func connect(t testing.TB, h *hub.Hub) (*hub.Client, *fakeTransport) {
	t.Helper()
	c, err := h.NewClient(nativeDialect, hub.Identity{})
	if err != nil {
		t.Fatal(err)
	}
	ft := newFake()
	welcome(c)
	c.Attach(ft)
	ft.waitFrames(t, 1)
	t.Cleanup(func() {
		c.Close(1000, "")
		c.Finish()
	})
	return c, ft
}

func jsonOf(t testing.TB, f frame) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(f.payload, &m); err != nil {
		t.Fatalf("frame %q is not JSON: %v", f.payload, err)
	}
	return m
}

func TestWelcome(t *testing.T) {
	h, _ := newHub(t, hub.Config{NodeID: "n1", PingInterval: 7 * time.Second})
	c, ft := connect(t, h)
	m := jsonOf(t, ft.received(t)[0])
	want := map[string]any{"op": "welcome", "version": 1.0, "client": c.ID(), "node": "n1", "ping_interval_ms": 7000.0}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("welcome[%s] = %v, want %v", k, m[k], v)
		}
	}
}

func TestRequests(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		frames []string
		want   []string // replies, in order
	}{
		{"ping", []string{`{"id":1,"op":"ping"}`}, []string{`{"id":1,"ok":true}`}},
		{"not json", []string{`hello`}, []string{`{"id":0,"ok":false,"error":{"code":"bad_request","message":"a request must be a JSON object"}}`}},
		{"unknown op", []string{`{"id":2,"op":"dance"}`}, []string{`{"id":2,"ok":false,"error":{"code":"bad_request","message":"unknown op \"dance\""}}`}},
		{"bad channel", []string{`{"id":3,"op":"subscribe","channel":"a b"}`}, []string{`{"id":3,"ok":false,"error":{"code":"bad_request","message":"channel name may only use A-Z a-z 0-9 _ - = @ , . ; :"}}`}},
		{"subscribe twice", []string{`{"id":1,"op":"subscribe","channel":"a"}`, `{"id":2,"op":"subscribe","channel":"a"}`},
			[]string{`{"id":1,"ok":true}`, `{"id":2,"ok":false,"error":{"code":"bad_request","message":"already subscribed to a"}}`}},
		{"unsubscribe unknown", []string{`{"id":4,"op":"unsubscribe","channel":"a"}`},
			[]string{`{"id":4,"ok":false,"error":{"code":"not_found","message":"not subscribed to a"}}`}},
		{"too many", []string{`{"id":1,"op":"subscribe","channel":"a"}`, `{"id":2,"op":"subscribe","channel":"b"}`, `{"id":3,"op":"subscribe","channel":"c"}`},
			[]string{`{"id":1,"ok":true}`, `{"id":2,"ok":true}`, `{"id":3,"ok":false,"error":{"code":"limit_exceeded","message":"too many subscriptions on this connection"}}`}},
		{"publish without data", []string{`{"id":5,"op":"publish","channel":"a"}`},
			[]string{`{"id":5,"ok":false,"error":{"code":"bad_request","message":"data is missing"}}`}},
		{"publish", []string{`{"id":6,"op":"publish","channel":"a","data":{"x":1}}`}, []string{`{"id":6,"ok":true}`}},
		{"history off", []string{`{"id":7,"op":"history","channel":"a"}`},
			[]string{`{"id":7,"ok":false,"error":{"code":"forbidden","message":"history is not enabled for channel a (the server keeps some with --history-size, or history_size in --config)"}}`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h, _ := newHub(t, hub.Config{MaxSubscriptions: 2})
			c, ft := connect(t, h)
			for _, f := range tc.frames {
				c.HandleText([]byte(f))
			}
			got := ft.waitFrames(t, 1+len(tc.want))[1:]
			for i, w := range tc.want {
				if string(got[i].payload) != w {
					t.Errorf("reply %d = %s, want %s", i, got[i].payload, w)
				}
			}
		})
	}
}

// TestFanoutSharesFrame checks that one message is encoded once: every
// subscriber of a dialect gets the very same bytes.
func TestFanoutSharesFrame(t *testing.T) {
	h, _ := newHub(t, hub.Config{})
	var fts []*fakeTransport
	for i := range 3 {
		c, ft := connect(t, h)
		c.HandleText(fmt.Appendf(nil, `{"id":%d,"op":"subscribe","channel":"room"}`, i+1))
		ft.waitFrames(t, 2)
		fts = append(fts, ft)
	}
	if _, err := h.Publish(context.Background(), "room", []byte(`{"text":"hi"}`)); err != nil {
		t.Fatal(err)
	}
	var first *byte
	for i, ft := range fts {
		ft.waitFrames(t, 3)
		ft.mu.Lock()
		b := ft.frames[2]
		ft.mu.Unlock()
		// The publish time is stamped by the broker (or the hub): "ts".
		if got := string(decodeFrame(t, b).payload); !regexp.MustCompile(`^\{"op":"message","channel":"room","data":\{"text":"hi"\},"ts":1\d{12}\}$`).MatchString(got) {
			t.Fatalf("subscriber %d got %s", i, got)
		}
		if first == nil {
			first = &b[0]
		} else if &b[0] != first {
			t.Errorf("subscriber %d got its own copy of the frame", i)
		}
	}
}

// TestWriterCoalesces checks that frames queued while a write is in flight
// go out together in the next write.
func TestWriterCoalesces(t *testing.T) {
	h, _ := newHub(t, hub.Config{})
	c, err := h.NewClient(nativeDialect, hub.Identity{})
	if err != nil {
		t.Fatal(err)
	}
	ft := newFake()
	ft.gate = make(chan struct{})
	c.Attach(ft)
	c.Send(wsframe.Text([]byte("first")))
	// Wait until the writer has taken the first frame and waits in
	// WriteFrames; then queue 10 more.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if c.QueueLen() == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the writer never took the first frame")
		}
		time.Sleep(time.Millisecond)
	}
	for i := range 10 {
		c.Send(wsframe.Text(fmt.Appendf(nil, "m%d", i)))
	}
	ft.gate <- struct{}{}
	ft.gate <- struct{}{}
	fs := ft.waitFrames(t, 11)
	ft.mu.Lock()
	writes := ft.writes
	ft.mu.Unlock()
	if writes != 2 {
		t.Errorf("11 frames took %d writes, want 2", writes)
	}
	if string(fs[10].payload) != "m9" {
		t.Errorf("last frame %q, want m9", fs[10].payload)
	}
	c.Close(1000, "")
	go func() { ft.gate <- struct{}{} }()
	c.Finish()
}

// TestSlowConsumer checks that a client whose queue overflows is closed
// with 4008, counted, and that others still get their messages.
func TestSlowConsumer(t *testing.T) {
	h, _ := newHub(t, hub.Config{SendQueueBytes: 4096})
	slow, err := h.NewClient(nativeDialect, hub.Identity{})
	if err != nil {
		t.Fatal(err)
	}
	stuck := newFake()
	stuck.gate = make(chan struct{})
	slow.Attach(stuck)
	slow.HandleText([]byte(`{"id":1,"op":"subscribe","channel":"c"}`))
	_, fast := connect(t, h)
	fastC := h.ClientOn(fast)
	fastC.HandleText([]byte(`{"id":1,"op":"subscribe","channel":"c"}`))
	fast.waitFrames(t, 2)

	data := []byte(`"` + string(make400()) + `"`)
	for i := range 30 {
		if _, err := h.Publish(context.Background(), "c", data); err != nil {
			t.Fatal(err)
		}
		// The reading client keeps up; only the stuck one falls behind.
		fast.waitFrames(t, 2+i+1)
	}
	if n := h.Stats().SlowConsumers; n != 1 {
		t.Fatalf("slow consumers = %d, want 1", n)
	}
	fast.waitFrames(t, 2+30)
	// Let the stuck writer finish its write: the close frame is next.
	stuck.gate <- struct{}{}
	stuck.gate <- struct{}{}
	var fs []frame
	wait.For(t, 5*time.Second, func() error {
		if fs = stuck.received(t); len(fs) == 0 || fs[len(fs)-1].op != wsframe.OpClose {
			return fmt.Errorf("the slow client got %q, and no close frame last", fs)
		}
		return nil
	})
	last := fs[len(fs)-1]
	if last.op != wsframe.OpClose || binary.BigEndian.Uint16(last.payload) != 4008 {
		t.Fatalf("last frame to the slow client: op %x %q, want close 4008", last.op, last.payload)
	}
	slow.Finish()
}

func make400() []byte {
	b := make([]byte, 400)
	for i := range b {
		b[i] = 'x'
	}
	return b
}

// TestOrderAroundSubscribe publishes concurrently with subscribe and
// unsubscribe: no message arrives before the subscribe reply or after the
// unsubscribe reply.
func TestOrderAroundSubscribe(t *testing.T) {
	h, _ := newHub(t, hub.Config{})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				_, _ = h.Publish(context.Background(), "busy", []byte(`1`))
			}
		}
	}()
	for round := range 20 {
		c, ft := connect(t, h)
		c.HandleText([]byte(`{"id":1,"op":"subscribe","channel":"busy"}`))
		ft.waitFrames(t, 4)
		c.HandleText([]byte(`{"id":2,"op":"unsubscribe","channel":"busy"}`))
		// Anything published after this point must not reach c.
		fs := ft.received(t)
		var seenSub, seenUnsub bool
		for _, f := range fs[1:] {
			m := jsonOf(t, f)
			switch {
			case m["id"] == 1.0:
				seenSub = true
			case m["id"] == 2.0:
				seenUnsub = true
			case m["op"] == "message":
				if !seenSub || seenUnsub {
					t.Fatalf("round %d: message outside the subscription: %s", round, f.payload)
				}
			}
		}
		if !seenSub {
			t.Fatalf("round %d: no subscribe reply", round)
		}
	}
	close(stop)
	wg.Wait()
}

// TestBrokerSubscriptionPerChannel checks one broker subscription per
// channel, whatever the number of local clients, released after the delay.
func TestBrokerSubscriptionPerChannel(t *testing.T) {
	h, b := newHub(t, hub.Config{UnsubscribeDelay: 50 * time.Millisecond})
	base := b.subs.Load() // the hub's own control channel
	var clients []*hub.Client
	for i := range 5 {
		c, ft := connect(t, h)
		c.HandleText([]byte(`{"id":1,"op":"subscribe","channel":"shared"}`))
		ft.waitFrames(t, 2)
		clients = append(clients, c)
		_ = i
	}
	if n := b.subs.Load() - base; n != 1 {
		t.Fatalf("broker subscriptions = %d, want 1", n)
	}
	for _, c := range clients {
		c.HandleText([]byte(`{"id":2,"op":"unsubscribe","channel":"shared"}`))
	}
	wait.For(t, 5*time.Second, func() error {
		if n := b.unsubs.Load(); n != 1 {
			return fmt.Errorf("broker unsubscriptions = %d, want 1", n)
		}
		return nil
	})
	if got := h.Channels(); len(got) != 0 {
		t.Errorf("channels after release: %v", got)
	}
}

// TestShutdownClosesClients checks the close codes of a shutdown.
func TestShutdownClosesClients(t *testing.T) {
	b := memory.New(memory.Config{})
	h, err := hub.New(hub.Config{Broker: b, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), CloseGrace: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	type conn struct {
		c  *hub.Client
		ft *fakeTransport
		d  hub.Dialect
	}
	var conns []conn
	for i := range 20 {
		var d hub.Dialect = nativeDialect
		if i%2 == 1 {
			d = rawDialect
		}
		c, err := h.NewClient(d, hub.Identity{})
		if err != nil {
			t.Fatal(err)
		}
		ft := newFake()
		c.Attach(ft)
		conns = append(conns, conn{c, ft, d})
		// Each client's reader ends when its socket closes.
		ft.onClose = c.Finish
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := h.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if _, err := h.NewClient(nativeDialect, hub.Identity{}); err != hub.ErrClosing {
		t.Errorf("NewClient after shutdown: %v, want hub.ErrClosing", err)
	}
	for i, cn := range conns {
		fs := cn.ft.received(t)
		want := uint16(1012)
		if cn.d == hub.Dialect(rawDialect) {
			want = 1001
		}
		if len(fs) == 0 || fs[len(fs)-1].op != wsframe.OpClose || binary.BigEndian.Uint16(fs[len(fs)-1].payload) != want {
			t.Errorf("client %d (%s): last frames %q, want close %d", i, cn.d.Name(), fs, want)
		}
	}
	if _, err := b.Publish(context.Background(), "x", []byte("1"), broker.PublishOptions{}); err == nil {
		t.Error("broker still open after shutdown")
	}
}

// partialTransport is a fakeTransport that also writes without blocking,
// but takes at most budget bytes per TryWriteFrames, like a socket whose
// buffer fills up.
type partialTransport struct {
	*fakeTransport
	budget  int
	partial []byte // bytes of a frame cut by a short write
	tries   atomic.Int64
	cuts    atomic.Int64
}

func (p *partialTransport) TryWriteFrames(frames [][]byte) (int, error) {
	p.tries.Add(1)
	n := 0
	var done [][]byte
	for _, f := range frames {
		if n+len(f) > p.budget {
			cut := p.budget - n
			p.partial = append([]byte(nil), f[:cut]...)
			p.cuts.Add(1)
			n += cut
			break
		}
		done = append(done, f)
		n += len(f)
	}
	if len(done) > 0 {
		if err := p.fakeTransport.WriteFrames(done); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// WriteFrames (the blocking path after a short write) receives the rest of
// the cut frame first: glue it back so frames can be checked whole.
func (p *partialTransport) WriteFrames(frames [][]byte) error {
	if p.partial != nil {
		frames[0] = append(p.partial, frames[0]...)
		p.partial = nil
	}
	return p.fakeTransport.WriteFrames(frames)
}

// TestShortWrites checks the writer pool's hand-off to a blocking writer
// when a socket takes only part of a batch: every frame arrives, whole and
// in order.
func TestShortWrites(t *testing.T) {
	h, _ := newHub(t, hub.Config{})
	c, err := h.NewClient(nativeDialect, hub.Identity{})
	if err != nil {
		t.Fatal(err)
	}
	pt := &partialTransport{fakeTransport: newFake(), budget: 1000}
	c.Attach(pt)
	c.HandleText([]byte(`{"id":1,"op":"subscribe","channel":"c"}`))
	pt.waitFrames(t, 1)
	for i := range 200 {
		if _, err := h.Publish(context.Background(), "c", fmt.Appendf(nil, `{"seq":%d,"pad":"%0300d"}`, i, 0)); err != nil {
			t.Fatal(err)
		}
	}
	fs := pt.waitFrames(t, 201)
	for i, f := range fs[1:] {
		var m struct {
			Data struct{ Seq int } `json:"data"`
		}
		if err := json.Unmarshal(f.payload, &m); err != nil || m.Data.Seq != i {
			t.Fatalf("frame %d: %q (%v)", i, f.payload, err)
		}
	}
	if pt.tries.Load() == 0 || pt.cuts.Load() == 0 {
		t.Errorf("writer pool writes %d, short writes %d: want both", pt.tries.Load(), pt.cuts.Load())
	}
	c.Close(1000, "")
	c.Finish()
}

// TestWriteDelay checks that with a write delay the frames queued within it
// go out in one write.
func TestWriteDelay(t *testing.T) {
	h, _ := newHub(t, hub.Config{WriteDelay: 100 * time.Millisecond})
	c, err := h.NewClient(nativeDialect, hub.Identity{})
	if err != nil {
		t.Fatal(err)
	}
	pt := &partialTransport{fakeTransport: newFake(), budget: 1 << 20}
	c.Attach(pt)
	c.HandleText([]byte(`{"id":1,"op":"subscribe","channel":"c"}`))
	pt.waitFrames(t, 1)
	before := pt.tries.Load()
	for i := range 10 {
		if _, err := h.Publish(context.Background(), "c", fmt.Appendf(nil, "%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	pt.waitFrames(t, 11)
	if n := pt.tries.Load() - before; n > 2 {
		t.Errorf("10 frames queued within the delay took %d writes", n)
	}
	c.Close(1000, "")
	c.Finish()
}

// TestAutoWriteDelay checks the default, adaptive write delay in the
// writer pool: a connection that gets a steady stream (a frame every 2 ms)
// has its frames gathered, several per write, and every frame arrives.
// (The rule itself, rate by rate, is TestAutoWindow's.)
func TestAutoWriteDelay(t *testing.T) {
	h, _ := newHub(t, hub.Config{})
	c, err := h.NewClient(nativeDialect, hub.Identity{})
	if err != nil {
		t.Fatal(err)
	}
	pt := &partialTransport{fakeTransport: newFake(), budget: 1 << 20}
	c.Attach(pt)
	c.HandleText([]byte(`{"id":1,"op":"subscribe","channel":"c"}`))
	pt.waitFrames(t, 1)
	before := pt.tries.Load()
	const n = 100
	for i := range n {
		if _, err := h.Publish(context.Background(), "c", fmt.Appendf(nil, "%d", i)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	pt.waitFrames(t, n+1)
	if w := pt.tries.Load() - before; w > n/2 {
		t.Errorf("%d frames, one every 2 ms, took %d writes: want them gathered, at least two per write", n, w)
	}
	c.Close(1000, "")
	c.Finish()
}

// TestClientRate checks the token bucket: a burst passes, the rest of a
// flood gets rate_limited, and the bucket refills.
// The rate limiter refuses what goes over the rate and lets through what
// the bucket refills; it runs in a synctest bubble, so that the refill is
// exact and the test takes no time.
func TestClientRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := newHub(t, hub.Config{ClientRate: 50, ClientBurst: 5})
		c, ft := connect(t, h)
		for i := range 8 {
			c.HandleText(fmt.Appendf(nil, `{"id":%d,"op":"ping"}`, i+1))
		}
		fs := ft.waitFrames(t, 9)
		for i, f := range fs[1:] {
			var m struct {
				OK    bool
				Error struct{ Code string }
			}
			_ = json.Unmarshal(f.payload, &m)
			if i < 5 && !m.OK || i >= 5 && m.Error.Code != "rate_limited" {
				t.Errorf("request %d: %s", i+1, f.payload)
			}
		}
		c.HandleText([]byte(`{"id":19,"op":"ping"}`))
		if got := string(ft.waitFrames(t, 10)[9].payload); !strings.Contains(got, "rate_limited") {
			t.Errorf("before any refill: %s", got)
		}
		time.Sleep(20 * time.Millisecond) // 50/s refills one token
		c.HandleText([]byte(`{"id":20,"op":"ping"}`))
		if got := string(ft.waitFrames(t, 11)[10].payload); got != `{"id":20,"ok":true}` {
			t.Errorf("after the refill: %s", got)
		}
		if n := h.Stats().RateLimited; n != 4 {
			t.Errorf("rate limited = %d, want 4", n)
		}
	})
}

// TestWriteDelayIsAnInterval checks what the write delay promises beyond
// batching: a connection not written to recently is written at once, frames
// that follow within the delay are held back for one write, and closing
// does not wait for the delay.
func TestWriteDelayIsAnInterval(t *testing.T) {
	const delay = 5 * time.Second
	h, _ := newHub(t, hub.Config{WriteDelay: delay, CloseGrace: 100 * time.Millisecond})
	c, err := h.NewClient(nativeDialect, hub.Identity{})
	if err != nil {
		t.Fatal(err)
	}
	pt := &partialTransport{fakeTransport: newFake(), budget: 1 << 20}
	start := time.Now()
	welcome(c)
	c.Attach(pt)
	pt.waitFrames(t, 1) // the welcome: the first write is not delayed
	if took := time.Since(start); took > delay/2 {
		t.Fatalf("the first frame took %v with a write delay of %v", took, delay)
	}
	c.HandleText([]byte(`{"id":1,"op":"subscribe","channel":"c"}`))
	if _, err := h.Publish(context.Background(), "c", []byte(`"held"`)); err != nil {
		t.Fatal(err)
	}
	// The barrier: the message is queued and its write waits for its due
	// time; nothing else can write it before then.
	wait.For(t, 5*time.Second, func() error {
		if !c.Held() {
			return errors.New("the client does not wait for its due time")
		}
		return nil
	})
	if n := len(pt.received(t)); n != 1 {
		t.Fatalf("%d frames written within the delay after a write, want 1 (the welcome)", n)
	}
	start = time.Now()
	c.Close(1000, "")
	c.Finish()
	if took := time.Since(start); took > delay/2 {
		t.Fatalf("closing took %v: it waited for the write delay", took)
	}
	fs := pt.received(t)
	if len(fs) != 4 || fs[3].op != 0x8 {
		t.Fatalf("after close: %d frames, want welcome, reply, message, close", len(fs))
	}
}

// histogramCount is the delivery latency histogram's count of writes, and
// how many of them took longer than bound.
func histogramCount(h *hub.Hub, bound time.Duration) (all, slower uint64) {
	for _, m := range h.DeliveryMetrics() {
		if m.Name != "switchboard_delivery_latency_seconds" {
			continue
		}
		for i, n := range m.Histogram.Counts {
			all += n
			if i == len(m.Histogram.Bounds) || m.Histogram.Bounds[i] > bound.Seconds() {
				slower += n
			}
		}
	}
	return all, slower
}

// The delivery latency histogram counts each write by how long its oldest
// frame waited, on the pool's path and on a client's own writer; the send
// queue gauge counts what waits.
func TestDeliveryMetrics(t *testing.T) {
	h, _ := newHub(t, hub.Config{})
	// The pool's path: a client whose transport writes without blocking.
	fast, err := h.NewClient(nativeDialect, hub.Identity{})
	if err != nil {
		t.Fatal(err)
	}
	pt := &partialTransport{fakeTransport: newFake(), budget: 1 << 20}
	fast.Attach(pt)
	defer fast.Finish()
	fast.HandleText([]byte(`{"id":1,"op":"subscribe","channel":"m"}`))
	pt.waitFrames(t, 1)
	if all, _ := histogramCount(h, 0); all == 0 {
		t.Fatal("a write of the pool was not observed")
	}
	// A client's own writer, held in its write for 20ms: that write's
	// latency is at least that long, and its bytes are queued meanwhile.
	slow, err := h.NewClient(nativeDialect, hub.Identity{})
	if err != nil {
		t.Fatal(err)
	}
	stuck := newFake()
	stuck.gate = make(chan struct{})
	slow.Attach(stuck)
	defer slow.Finish()
	slow.HandleText([]byte(`{"id":1,"op":"subscribe","channel":"m"}`))
	if q := h.QueuedBytes(); q == 0 {
		t.Error("the held reply's bytes are not counted as queued")
	}
	time.Sleep(20 * time.Millisecond)
	_, before := histogramCount(h, 10*time.Millisecond)
	stuck.gate <- struct{}{}
	<-stuck.seen
	wait.For(t, 5*time.Second, func() error {
		if _, after := histogramCount(h, 10*time.Millisecond); after != before+1 {
			return fmt.Errorf("writes slower than 10ms: %d, want %d", after, before+1)
		}
		return nil
	})
	wait.For(t, 5*time.Second, func() error {
		if q := h.QueuedBytes(); q != 0 {
			return fmt.Errorf("%d bytes queued after every write", q)
		}
		return nil
	})
	slow.Close(1000, "")
	_ = stuck.Close() // opens the gate for the close frame, whenever it comes
}
