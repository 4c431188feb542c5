package hub_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard-rt/switchboard/broker/memory"
	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/raw"
	"github.com/switchboard-rt/switchboard/transport"
)

// countingBatchWriter counts what the pool hands to a BatchWriter.
type countingBatchWriter struct {
	hub.BatchWriter
	adds, submits *atomic.Int64
}

func (w countingBatchWriter) Add(t hub.TryWriter, frames [][]byte) bool {
	ok := w.BatchWriter.Add(t, frames)
	if ok {
		w.adds.Add(1)
	}
	return ok
}

func (w countingBatchWriter) Submit() []hub.BatchResult {
	w.submits.Add(1)
	return w.BatchWriter.Submit()
}

// TestIOURingFanout serves raw WebSocket clients over loopback with the
// real transport and Config.IOURing, publishes a stream of messages to
// all of them, and checks that each client receives every message once,
// in order, and that the pool wrote them through its BatchWriters, many
// clients per Submit.
func TestIOURingFanout(t *testing.T) {
	if _, err := transport.NewURing(1); err != nil {
		t.Skip("io_uring:", err)
	}
	for _, tc := range []struct {
		name  string
		delay time.Duration
	}{{"auto write delay", 0}, {"no write delay", hub.NoWriteDelay}} {
		t.Run(tc.name, func(t *testing.T) {
			const clients, messages = 200, 50
			var adds, submits atomic.Int64
			quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
			h, err := hub.New(hub.Config{
				Broker:     memory.New(memory.Config{}),
				Logger:     quiet,
				WriteDelay: tc.delay,
				IOURing:    true,
				NewBatchWriter: func() (hub.BatchWriter, error) {
					bw, err := transport.NewBatchWriter()
					if err != nil {
						return nil, err
					}
					return countingBatchWriter{bw, &adds, &submits}, nil
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := h.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			d := raw.New("", quiet)
			ws := transport.New(transport.Config{Hub: h, Logger: quiet})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ws.Serve(w, r, d) }))
			defer func() {
				srv.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := h.Shutdown(ctx); err != nil {
					t.Error(err)
				}
				if err := ws.Shutdown(ctx); err != nil {
					t.Error(err)
				}
			}()

			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			conns := make([]*websocket.Conn, clients)
			for i := range conns {
				c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/", nil)
				if err != nil {
					t.Fatal(err)
				}
				defer c.CloseNow()
				conns[i] = c
			}
			// Accept subscribed each client before its upgrade completed.
			go func() {
				for i := range messages {
					if _, err := h.Publish(ctx, raw.DefaultChannel, fmt.Appendf(nil, `"m %d"`, i)); err != nil {
						t.Error(err)
						return
					}
				}
			}()
			var wg sync.WaitGroup
			for i, c := range conns {
				wg.Go(func() {
					for k := range messages {
						_, b, err := c.Read(ctx)
						if err != nil {
							t.Errorf("client %d, message %d: %v", i, k, err)
							return
						}
						if want := fmt.Sprintf("m %d", k); string(b) != want {
							t.Errorf("client %d got %q, want %q", i, b, want)
							return
						}
					}
				})
			}
			wg.Wait()
			if adds.Load() == 0 || submits.Load() == 0 {
				t.Fatalf("the pool's BatchWriters wrote nothing (%d adds, %d submits)", adds.Load(), submits.Load())
			}
			t.Logf("%d writes in %d submits", adds.Load(), submits.Load())
		})
	}
}

// fakeBatchWriter is a BatchWriter without sockets: Submit writes each
// added batch with its TryWriter, so a partialTransport's short writes
// reach the pool through the batch path.
type fakeBatchWriter struct {
	size    int
	ws      []hub.TryWriter
	fs      [][][]byte
	res     []hub.BatchResult
	largest *atomic.Int64 // the most writes one Submit had
	closed  *atomic.Int64
}

func (w *fakeBatchWriter) Add(t hub.TryWriter, frames [][]byte) bool {
	if len(w.ws) == w.size {
		return false
	}
	w.ws, w.fs = append(w.ws, t), append(w.fs, frames)
	return true
}

func (w *fakeBatchWriter) Submit() []hub.BatchResult {
	w.res = w.res[:0]
	for i, t := range w.ws {
		n, err := t.TryWriteFrames(w.fs[i])
		w.res = append(w.res, hub.BatchResult{N: n, Err: err})
	}
	for {
		old := w.largest.Load()
		if int64(len(w.ws)) <= old || w.largest.CompareAndSwap(old, int64(len(w.ws))) {
			break
		}
	}
	clear(w.ws)
	clear(w.fs)
	w.ws, w.fs = w.ws[:0], w.fs[:0]
	return w.res
}

func (w *fakeBatchWriter) Close() error { w.closed.Add(1); return nil }

// TestBatchShortWrites checks the pool's batch path with sockets that take
// only part of each batch (some clients written by the BatchWriter, some,
// over its size, by their own TryWriteFrames): every frame reaches every
// client whole and in order, through the blocking writer after a short
// write, and the pool closes each writer's BatchWriter when it stops.
func TestBatchShortWrites(t *testing.T) {
	var largest, made, closed atomic.Int64
	b := memory.New(memory.Config{})
	h, err := hub.New(hub.Config{
		Broker:     b,
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		WriteDelay: hub.NoWriteDelay,
		IOURing:    true,
		NewBatchWriter: func() (hub.BatchWriter, error) {
			made.Add(1)
			return &fakeBatchWriter{size: 3, largest: &largest, closed: &closed}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	const clients, messages = 10, 100
	var pts []*partialTransport
	var cs []*hub.Client
	for range clients {
		c, err := h.NewClient(nativeDialect, hub.Identity{})
		if err != nil {
			t.Fatal(err)
		}
		pt := &partialTransport{fakeTransport: newFake(), budget: 1000}
		c.Attach(pt)
		c.HandleText([]byte(`{"id":1,"op":"subscribe","channel":"c"}`))
		pt.waitFrames(t, 1)
		pts, cs = append(pts, pt), append(cs, c)
	}
	for i := range messages {
		if _, err := h.Publish(context.Background(), "c", fmt.Appendf(nil, `{"seq":%d,"pad":"%0300d"}`, i, 0)); err != nil {
			t.Fatal(err)
		}
	}
	for k, pt := range pts {
		fs := pt.waitFrames(t, messages+1)
		for i, f := range fs[1:] {
			var m struct {
				Data struct{ Seq int } `json:"data"`
			}
			if err := json.Unmarshal(f.payload, &m); err != nil || m.Data.Seq != i {
				t.Fatalf("client %d, frame %d: %q (%v)", k, i, f.payload, err)
			}
		}
		if pt.cuts.Load() == 0 {
			t.Errorf("client %d had no short write", k)
		}
	}
	if largest.Load() < 2 {
		t.Errorf("the most writes in one Submit was %d: the pool does not batch", largest.Load())
	}
	for _, c := range cs {
		c.Close(1000, "")
		c.Finish()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if made.Load() == 0 || closed.Load() != made.Load() {
		t.Errorf("%d BatchWriters made, %d closed", made.Load(), closed.Load())
	}
}

// TestBatchWriterUnavailable checks the fallback: when NewBatchWriter
// fails, the hub says so once and writes as without IOURing.
func TestBatchWriterUnavailable(t *testing.T) {
	var logs strings.Builder
	var mu sync.Mutex
	h, _ := newHub(t, hub.Config{
		Logger:  slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil)),
		IOURing: true,
		NewBatchWriter: func() (hub.BatchWriter, error) {
			return nil, errors.New("no io_uring here")
		},
	})
	c, err := h.NewClient(nativeDialect, hub.Identity{})
	if err != nil {
		t.Fatal(err)
	}
	pt := &partialTransport{fakeTransport: newFake(), budget: 1 << 20}
	c.Attach(pt)
	c.HandleText([]byte(`{"id":1,"op":"subscribe","channel":"c"}`))
	pt.waitFrames(t, 1)
	if _, err := h.Publish(context.Background(), "c", []byte(`{"x":1}`)); err != nil {
		t.Fatal(err)
	}
	pt.waitFrames(t, 2)
	if pt.tries.Load() == 0 {
		t.Error("the pool did not write with TryWriteFrames")
	}
	c.Close(1000, "")
	c.Finish()
	mu.Lock()
	defer mu.Unlock()
	if n := strings.Count(logs.String(), "io_uring is unavailable"); n != 1 {
		t.Errorf("logged the fallback %d times, want once:\n%s", n, logs.String())
	}
}

// lockedWriter serializes writes to w.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
