package hub_test

import (
	"context"
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
