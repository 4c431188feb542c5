//go:build linux

package transport

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/hub"
)

// loopbackPairs returns n connected loopback TCP pairs: the accepted,
// server-side ends as the transport holds them (non-blocking, with a
// RawConn), and the dialled ends. cleanup closes them all.
func loopbackPairs(tb testing.TB, n int) (srv []*rawWSConn, cli []net.Conn) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	for range n {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			tb.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			tb.Fatal(err)
		}
		cli = append(cli, c)
		srv = append(srv, &rawWSConn{wsConn: &wsConn{conn: s, writeTimeout: time.Second}, rc: rawConn(s)})
	}
	tb.Cleanup(func() {
		for i := range srv {
			srv[i].Close()
			cli[i].Close()
		}
	})
	return srv, cli
}

// newTestURing returns a ring of entries, or skips tb where the kernel
// refuses io_uring.
func newTestURing(tb testing.TB, entries int) *URing {
	tb.Helper()
	r, err := NewURing(entries)
	if err != nil {
		tb.Skip("io_uring:", err)
	}
	tb.Cleanup(func() { r.Close() })
	return r
}

// readN reads exactly n bytes from c.
func readN(tb testing.TB, c net.Conn, n int) []byte {
	tb.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		tb.Fatalf("read %d bytes: %v", n, err)
	}
	return b
}

// TestURingManySockets writes rounds of several frames to more
// connections than the ring takes at once, and checks that every
// connection got its own bytes, in order.
func TestURingManySockets(t *testing.T) {
	t.Parallel()
	const conns, rounds = 150, 5
	r := newTestURing(t, 64)
	srv, cli := loopbackPairs(t, conns)
	want := make([]bytes.Buffer, conns)
	for round := range rounds {
		for base := 0; base < conns; base += 64 {
			end := min(base+64, conns)
			for i := base; i < end; i++ {
				frames := [][]byte{[]byte("conn " + strconv.Itoa(i)), {}, []byte(" round " + strconv.Itoa(round) + ";")}
				want[i].Write(frames[0])
				want[i].Write(frames[2])
				if !r.Add(srv[i], frames) {
					t.Fatalf("Add refused connection %d", i)
				}
			}
			res := r.Submit()
			if len(res) != end-base {
				t.Fatalf("%d results for %d writes", len(res), end-base)
			}
			for k, x := range res {
				i := base + k
				if wantN := len("conn "+strconv.Itoa(i)) + len(" round "+strconv.Itoa(round)+";"); x.Err != nil || x.N != wantN {
					t.Fatalf("connection %d: wrote %d, %v; want %d", i, x.N, x.Err, wantN)
				}
			}
		}
	}
	for i, c := range cli {
		if got := readN(t, c, want[i].Len()); !bytes.Equal(got, want[i].Bytes()) {
			t.Fatalf("connection %d got %q, want %q", i, got, want[i].Bytes())
		}
	}
}

// TestURingAddRefuses checks what Add leaves to TryWriteFrames.
func TestURingAddRefuses(t *testing.T) {
	t.Parallel()
	r := newTestURing(t, 2)
	srv, _ := loopbackPairs(t, 3)
	if r.Add(&wsConnTryWriter{}, [][]byte{[]byte("x")}) {
		t.Error("Add took a transport that is not a raw socket")
	}
	if r.Add(srv[0], [][]byte{{}, nil}) {
		t.Error("Add took a write of no bytes")
	}
	many := make([][]byte, maxIovecs+1)
	for i := range many {
		many[i] = []byte("x")
	}
	if r.Add(srv[0], many) {
		t.Error("Add took more buffers than one sendmsg takes")
	}
	if !r.Add(srv[0], [][]byte{[]byte("a")}) || !r.Add(srv[1], [][]byte{[]byte("b")}) {
		t.Fatal("Add refused a write")
	}
	if r.Add(srv[2], [][]byte{[]byte("c")}) {
		t.Error("Add took more writes than the ring has entries")
	}
	if res := r.Submit(); len(res) != 2 || res[0] != (hub.BatchResult{N: 1}) || res[1] != (hub.BatchResult{N: 1}) {
		t.Errorf("Submit = %+v", res)
	}
	if res := r.Submit(); len(res) != 0 {
		t.Errorf("empty Submit = %+v", res)
	}
}

// wsConnTryWriter is a TryWriter that is not the transport's.
type wsConnTryWriter struct{}

func (*wsConnTryWriter) TryWriteFrames([][]byte) (int, error) { return 0, nil }

// TestURingPartialAndFull fills a small send buffer whose peer does not
// read: the first write is short, the next writes nothing (EAGAIN), both
// without error, as TryWriteFrames says it; what was written arrives
// intact.
func TestURingPartialAndFull(t *testing.T) {
	t.Parallel()
	r := newTestURing(t, 4)
	srv, cli := loopbackPairs(t, 2)
	if err := srv[0].conn.(*net.TCPConn).SetWriteBuffer(4096); err != nil {
		t.Fatal(err)
	}
	if err := cli[0].(*net.TCPConn).SetReadBuffer(4096); err != nil {
		t.Fatal(err)
	}
	var sent bytes.Buffer
	frames := make([][]byte, 64)
	for i := range frames {
		frames[i] = bytes.Repeat([]byte{byte('a' + i%26)}, 16<<10)
	}
	total := 64 * 16 << 10
	r.Add(srv[0], frames)
	r.Add(srv[1], [][]byte{[]byte("other")}) // a healthy neighbour in the same batch
	res := r.Submit()
	if res[0].Err != nil || res[0].N <= 0 || res[0].N >= total {
		t.Fatalf("first write: %d, %v; want a short count without error", res[0].N, res[0].Err)
	}
	if res[1] != (hub.BatchResult{N: 5}) {
		t.Fatalf("neighbour: %+v", res[1])
	}
	for _, f := range frames {
		sent.Write(f)
	}
	all := sent.Bytes()
	written := res[0].N
	// The socket is full now: a second write takes nothing (EAGAIN),
	// or at most the little the peer's receive window just freed.
	var full bool
	for range 100 {
		r.Add(srv[0], [][]byte{all[written:]})
		res = r.Submit()
		if res[0].Err != nil {
			t.Fatal(res[0].Err)
		}
		written += res[0].N
		if res[0].N == 0 {
			full = true
			break
		}
	}
	if !full {
		t.Fatal("the socket never filled")
	}
	if got := readN(t, cli[0], written); !bytes.Equal(got, all[:written]) {
		t.Fatal("the bytes written differ from the frames")
	}
	if got := readN(t, cli[1], 5); string(got) != "other" {
		t.Fatalf("neighbour got %q", got)
	}
}

// TestURingPeerClosed writes to a connection whose peer is gone: the
// write fails with the socket's error (a reset, or a broken pipe, never
// SIGPIPE), and its neighbours in the batch are unaffected.
func TestURingPeerClosed(t *testing.T) {
	t.Parallel()
	r := newTestURing(t, 4)
	srv, cli := loopbackPairs(t, 3)
	// Close with a reset: the server side learns of it at once.
	if err := cli[1].(*net.TCPConn).SetLinger(0); err != nil {
		t.Fatal(err)
	}
	cli[1].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, s := range srv {
			r.Add(s, [][]byte{[]byte("ping")})
		}
		res := r.Submit()
		if res[0] != (hub.BatchResult{N: 4}) || res[2] != (hub.BatchResult{N: 4}) {
			t.Fatalf("neighbours: %+v", res)
		}
		if err := res[1].Err; err != nil {
			if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
				t.Fatalf("write to a reset connection: %v", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("writes to a reset connection kept succeeding")
		}
		time.Sleep(time.Millisecond) // let the reset arrive
	}
}

// TestURingClosedConn checks that a connection closed before Submit gets
// an error and no SQE, and that closing connections while rings write to
// them is safe: Close waits for the held descriptor, and a descriptor
// number is never written after it was freed.
func TestURingClosedConn(t *testing.T) {
	t.Parallel()
	r := newTestURing(t, 8)
	srv, cli := loopbackPairs(t, 3)
	srv[1].Close()
	for _, s := range srv {
		r.Add(s, [][]byte{[]byte("x")})
	}
	res := r.Submit()
	if res[0] != (hub.BatchResult{N: 1}) || res[2] != (hub.BatchResult{N: 1}) {
		t.Fatalf("open connections: %+v", res)
	}
	if !errors.Is(res[1].Err, net.ErrClosed) {
		t.Fatalf("closed connection: %+v, want net.ErrClosed", res[1])
	}
	readN(t, cli[0], 1)
	readN(t, cli[2], 1)

	// Concurrent closes: the rings see each connection open or closed,
	// nothing else, and the race detector watches the bookkeeping.
	const conns = 64
	srv, _ = loopbackPairs(t, conns) // 50 writes of 4 bytes fit unread
	var wg sync.WaitGroup
	for w := range 2 {
		r := newTestURing(t, 32)
		wg.Go(func() {
			for range 50 {
				for i := w * 32; i < (w+1)*32; i++ {
					r.Add(srv[i], [][]byte{[]byte("data")})
				}
				for _, x := range r.Submit() {
					if x.Err != nil && !errors.Is(x.Err, net.ErrClosed) {
						t.Errorf("write: %v", x.Err)
						return
					}
				}
			}
		})
	}
	for _, s := range srv {
		s.Close()
	}
	wg.Wait()
}
