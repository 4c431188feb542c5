//go:build linux

package transport

// This file measures, for issue #15, whether io_uring would make the hub's
// fan-out writes cheaper than the writer pool's one non-blocking writev per
// ready connection (writev_linux.go). It holds a minimal io_uring written on
// raw system calls (no liburing, no third-party module), one benchmark,
// BenchmarkFanoutWrite, and a fast test of the ring, TestURingSend. The
// server's own ring, URing, is in uring_linux.go.
//
// BenchmarkFanoutWrite opens fanoutConns loopback TCP connections and, per
// op, writes once to every server-side (non-blocking, TCP_NODELAY) socket,
// as the writer pool does when one broker message makes that many
// connections ready. Its sub-benchmarks are:
//
//	getppid             fanoutConns getppid(2) calls: the cost of entering
//	                    and leaving the kernel
//	uring-nop           fanoutConns NOP SQEs in one io_uring_enter:
//	                    io_uring's own cost per request
//	write               one write(2) of a 100-byte frame per connection
//	writev4             one writev(2) of four 100-byte frames per connection
//	uring-send-batchK   IORING_OP_SEND SQEs (100 bytes each), K per
//	                    io_uring_enter (K = 1, 16)
//	uring-send          all fanoutConns IORING_OP_SEND SQEs in one
//	                    io_uring_enter
//	uring-writev4       all fanoutConns IORING_OP_WRITEV SQEs (four 100-byte
//	                    frames each) in one io_uring_enter
//
// Besides ns/op (one op = one round over all connections) each reports, per
// connection write: ns/write; cpu-ns/write, the process's user+system CPU
// time (getrusage(RUSAGE_SELF), which counts every thread of the process,
// io_uring's iou-wrk workers included; this kernel has no
// CONFIG_IRQ_TIME_ACCOUNTING, so softirq work done inline is counted too)
// during the rounds; deferred-%, the share of writes whose data the kernel
// had not yet transmitted at the end of the round (their TCP work would
// escape the measurement); segs/write, TCP segments sent system-wide during
// the rounds; and ksoftirqd-ns/write, the CPU time of the ksoftirqd threads
// during the rounds. The io_uring variants also report inline-%, the share
// of SQEs already completed when their submitting io_uring_enter returned
// (executed inline, not by poll or io-wq), and iou-wrk, the number of the
// process's io-wq worker threads. The receivers are drained after every
// round, outside the timer and the CPU clock: draining only every few
// rounds let the faster io_uring rounds outrun the receivers' delayed ACKs,
// and up to 13 frames per connection then waited in the send queue for the
// congestion window (deferred), which made io_uring look cheaper than it is.
//
// Found (Linux 6.18, Firecracker VM, 2 vCPUs, load average 3–8 from other
// test suites; medians of 5 interleaved runs of 300 rounds): getppid costs
// about 1.1 µs, because this VM mitigates Meltdown with page-table
// isolation and exposes no PCID, so every kernel entry and exit switches
// page tables and flushes the TLB. A loopback write costs 4.3–5.1 µs of CPU
// with write, writev or one SQE per io_uring_enter alike, but 1.5–2.2 µs
// when 500 SENDs share one io_uring_enter, and 1.8–2.5 µs already with 16
// per enter: 55–65% less CPU per write. Every SQE completed inline
// (inline-% 100, no iou-wrk thread), no write was deferred and every
// variant sent 1.0 segment per write. The batched io_uring variants left
// 0.04–0.13 µs per write to ksoftirqd (write and writev under 0.01),
// which cpu-ns/write does not count: small against the saving, which is
// therefore the kernel entries, and the work after each entry that
// refills the TLB, amortised over the batch; the TCP work is the same. The saving depends on the
// entry cost: where the kernel entry is cheap (PCID or no PTI) it would
// be much smaller.
//
// The sub-benchmarks of one run execute in sequence, each -count times in
// a row, so for interleaved figures run the binary several times:
//
//	go test -c -o /tmp/transport.test ./transport
//	for i in 1 2 3 4 5; do
//		/tmp/transport.test -test.run '^$' -test.bench FanoutWrite -test.benchtime 300x
//	done

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The io_uring ABI (uringSQE and the constants) is declared in
// uring_linux.go, which the server uses.

// uring is a minimal io_uring instance: one submitter, which waits for all
// it submits before submitting again.
type uring struct {
	uringMap
	sqEntries              uint32
	submitted, completedIn int // SQEs submitted; of those, completed by their io_uring_enter
}

func newURing(entries uint32) (*uring, error) {
	p := uringParams{Flags: uringSetupSubmitAll | uringSetupCoopTaskrun}
	fd, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if e != 0 {
		return nil, e
	}
	r := &uring{sqEntries: p.SQEntries}
	if err := r.mapRings(int(fd), &p); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *uring) close() { _ = r.unmap() }

// run submits n SQEs, filled by fill(i, sqe) for i = 0..n-1, waits for all n completions and calls
// check with each. n must not exceed the SQ size. The SQEs are submitted
// with one io_uring_enter that does not wait; a second one waits only if
// some completions were not posted inline.
func (r *uring) run(n int, fill func(i int, sqe *uringSQE), check func(cqe *uringCQE) error) error {
	tail := *r.sqTail // only we write it
	for i := range n {
		sqe := &r.sqes[(tail+uint32(i))&r.sqMask]
		*sqe = uringSQE{}
		fill(i, sqe)
	}
	// Release: the kernel must see the SQEs before the new tail.
	atomic.StoreUint32(r.sqTail, tail+uint32(n))
	var err error
	toSubmit, done := n, 0
	for done < n {
		flags, minComplete := uintptr(0), 0
		if toSubmit == 0 {
			flags, minComplete = uringEnterGetEvents, n-done
		}
		k, _, e := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit), uintptr(minComplete), flags, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return e
		}
		submitting := toSubmit > 0
		toSubmit -= int(k)
		// Acquire: the CQEs are valid once we see the kernel's tail.
		head, ctail := *r.cqHead, atomic.LoadUint32(r.cqTail)
		for ; head != ctail; head++ {
			if e := check(&r.cqes[head&r.cqMask]); e != nil && err == nil {
				err = e
			}
			done++
			if submitting {
				r.completedIn++
			}
		}
		atomic.StoreUint32(r.cqHead, head)
	}
	r.submitted += n
	return err
}

// fanoutConns is the number of connections one broker message makes ready.
const fanoutConns = 500

// fanoutFrame is the size of one frame, like the hub's fan-out frames.
const fanoutFrame = 100

// fanoutPairs holds loopback TCP connections by raw descriptors: srv are
// the non-blocking writing ends (TCP_NODELAY, as Go sets it), cli the
// non-blocking receiving ends.
type fanoutPairs struct {
	srv, cli []int
	buf      []byte
}

func newFanoutPairs(tb testing.TB, n int) *fanoutPairs {
	tb.Helper()
	p := &fanoutPairs{buf: make([]byte, 1<<16)}
	tb.Cleanup(p.close)
	ln, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		tb.Fatal(err)
	}
	defer unix.Close(ln)
	if err := unix.Bind(ln, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		tb.Fatal(err)
	}
	if err := unix.Listen(ln, 128); err != nil {
		tb.Fatal(err)
	}
	addr, err := unix.Getsockname(ln)
	if err != nil {
		tb.Fatal(err)
	}
	for range n {
		c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			tb.Fatal(err)
		}
		p.cli = append(p.cli, c)
		if err := unix.Connect(c, addr); err != nil {
			tb.Fatal(err)
		}
		s, _, err := unix.Accept4(ln, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err != nil {
			tb.Fatal(err)
		}
		p.srv = append(p.srv, s)
		if err := unix.SetsockoptInt(s, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
			tb.Fatal(err)
		}
		if err := unix.SetNonblock(c, true); err != nil {
			tb.Fatal(err)
		}
	}
	return p
}

// unsent returns how many writing ends hold data not yet transmitted.
func (p *fanoutPairs) unsent(tb testing.TB) int {
	n := 0
	for _, s := range p.srv {
		q, err := unix.IoctlGetInt(s, unix.SIOCOUTQNSD)
		if err != nil {
			tb.Fatal(err)
		}
		if q > 0 {
			n++
		}
	}
	return n
}

// drain reads everything the receiving ends hold and returns its size.
func (p *fanoutPairs) drain(tb testing.TB) int64 {
	var total int64
	for _, c := range p.cli {
		for {
			n, err := unix.Read(c, p.buf)
			if errors.Is(err, unix.EAGAIN) {
				break
			}
			if err != nil {
				tb.Fatal(err)
			}
			if n == 0 {
				tb.Fatal("connection closed")
			}
			total += int64(n)
		}
	}
	return total
}

func (p *fanoutPairs) close() {
	for _, fd := range append(p.srv, p.cli...) {
		unix.Close(fd)
	}
	p.srv, p.cli = nil, nil
}

// processCPU returns the CPU time, user and system, of all of the
// process's threads.
func processCPU() int64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// systemCounters returns two system-wide counters, disturbed by whatever
// else runs on the machine: TCP segments sent (Tcp OutSegs in
// /proc/net/snmp) and the CPU time of the ksoftirqd threads, which do the
// softirq work that the kernel defers rather than runs inline.
func systemCounters() (segs, ksoftirqd int64) {
	if b, err := os.ReadFile("/proc/net/snmp"); err == nil {
		var names []string
		for line := range strings.Lines(string(b)) {
			f := strings.Fields(line)
			if len(f) == 0 || f[0] != "Tcp:" {
				continue
			}
			if names == nil {
				names = f
				continue
			}
			for i, name := range names {
				if name == "OutSegs" && i < len(f) {
					segs, _ = strconv.ParseInt(f[i], 10, 64)
				}
			}
		}
	}
	for _, path := range ksoftirqdStats {
		if b, err := os.ReadFile(path); err == nil {
			if f := strings.Fields(string(b)); len(f) > 0 {
				ns, _ := strconv.ParseInt(f[0], 10, 64)
				ksoftirqd += ns
			}
		}
	}
	return segs, ksoftirqd
}

// ksoftirqdStats are the schedstat files of the ksoftirqd threads.
var ksoftirqdStats = func() []string {
	var paths []string
	comms, _ := filepath.Glob("/proc/[0-9]*/comm")
	for _, comm := range comms {
		if b, err := os.ReadFile(comm); err == nil && strings.HasPrefix(string(b), "ksoftirqd/") {
			paths = append(paths, filepath.Join(filepath.Dir(comm), "schedstat"))
		}
	}
	return paths
}()

// fanoutRounds runs b.N rounds of round, each making writes connection
// writes of size bytes, timing each. Between two rounds, with the timer
// and the CPU clock stopped, it counts the writes whose data the kernel left in the
// send queue rather than transmitted (SIOCOUTQNSD), and drains the
// receivers. It checks that the receivers got every byte and reports
// ns/write, cpu-ns/write, deferred-% (the share of writes left unsent at
// the end of their round), segs/write (TCP segments sent during the
// rounds, ACKs included) and ksoftirqd-ns/write.
func fanoutRounds(b *testing.B, p *fanoutPairs, writes, size int, round func()) {
	if p != nil {
		p.drain(b)
	}
	var cpu, got, segs, soft, deferred int64
	b.StopTimer()
	b.ResetTimer()
	for range b.N {
		segs0, soft0 := systemCounters()
		b.StartTimer()
		start := processCPU()
		round()
		cpu += processCPU() - start
		b.StopTimer()
		segs1, soft1 := systemCounters()
		segs, soft = segs+segs1-segs0, soft+soft1-soft0
		if p != nil {
			deferred += int64(p.unsent(b))
			got += p.drain(b)
		}
	}
	b.StopTimer()
	if p != nil {
		if want := int64(b.N) * int64(writes) * int64(size); got != want {
			b.Fatalf("receivers got %d bytes, want %d", got, want)
		}
	}
	total := float64(b.N) * float64(writes)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/total, "ns/write")
	b.ReportMetric(float64(cpu)/total, "cpu-ns/write")
	if p != nil {
		b.ReportMetric(100*float64(deferred)/total, "deferred-%")
		b.ReportMetric(float64(segs)/total, "segs/write")
		b.ReportMetric(float64(soft)/total, "ksoftirqd-ns/write")
	}
}

// ioWorkers counts the process's io_uring worker threads.
func ioWorkers() int {
	names, _ := filepath.Glob("/proc/self/task/*/comm")
	n := 0
	for _, name := range names {
		if b, err := os.ReadFile(name); err == nil && strings.HasPrefix(string(b), "iou-wrk") {
			n++
		}
	}
	return n
}

// frameIovecs returns k frames of fanoutFrame bytes as iovecs.
func frameIovecs(k int) []unix.Iovec {
	iov := make([]unix.Iovec, k)
	for i := range iov {
		f := make([]byte, fanoutFrame)
		iov[i].Base = &f[0]
		iov[i].SetLen(len(f))
	}
	return iov
}

func BenchmarkFanoutWrite(b *testing.B) {
	p := newFanoutPairs(b, fanoutConns)
	frame := make([]byte, fanoutFrame)
	iov4 := frameIovecs(4)
	// Leave the receivers' initial quick-ACK mode before measuring, so
	// that the first variant to write does not pay for more ACKs.
	for range 64 {
		for _, fd := range p.srv {
			if _, err := unix.Write(fd, frame); err != nil {
				b.Fatal(err)
			}
		}
		p.drain(b)
	}
	fail := func(b *testing.B, n uintptr, want int, e syscall.Errno) {
		if e != 0 {
			b.Fatal(e)
		}
		if int(n) != want {
			b.Fatalf("wrote %d bytes, want %d", n, want)
		}
	}

	b.Run("getppid", func(b *testing.B) {
		fanoutRounds(b, nil, fanoutConns, 0, func() {
			for range fanoutConns {
				unix.Getppid()
			}
		})
	})
	b.Run("uring-nop", func(b *testing.B) {
		r := newBenchURing(b)
		fill := func(i int, sqe *uringSQE) { sqe.Opcode = uringOpNop }
		fanoutRounds(b, nil, fanoutConns, 0, func() {
			if err := r.run(fanoutConns, fill, uringCheck(0)); err != nil {
				b.Fatal(err)
			}
		})
		reportURing(b, r)
	})
	b.Run("write", func(b *testing.B) {
		fanoutRounds(b, p, fanoutConns, fanoutFrame, func() {
			for _, fd := range p.srv {
				n, _, e := unix.Syscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&frame[0])), uintptr(len(frame)))
				fail(b, n, len(frame), e)
			}
		})
	})
	b.Run("writev4", func(b *testing.B) {
		fanoutRounds(b, p, fanoutConns, 4*fanoutFrame, func() {
			for _, fd := range p.srv {
				n, _, e := unix.Syscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov4[0])), uintptr(len(iov4)))
				fail(b, n, 4*fanoutFrame, e)
			}
		})
	})
	for _, batch := range []int{1, 16, fanoutConns} {
		name := "uring-send"
		if batch < fanoutConns {
			name = "uring-send-batch" + strconv.Itoa(batch)
		}
		b.Run(name, func(b *testing.B) {
			r := newBenchURing(b)
			base := 0
			fill := func(i int, sqe *uringSQE) {
				sqe.Opcode = uringOpSend
				sqe.Fd = int32(p.srv[base+i])
				sqe.Addr = uint64(uintptr(unsafe.Pointer(&frame[0])))
				sqe.Len = fanoutFrame
			}
			fanoutRounds(b, p, fanoutConns, fanoutFrame, func() {
				for base = 0; base < fanoutConns; base += batch {
					if err := r.run(min(batch, fanoutConns-base), fill, uringCheck(fanoutFrame)); err != nil {
						b.Fatal(err)
					}
				}
			})
			reportURing(b, r)
		})
	}
	b.Run("uring-writev4", func(b *testing.B) {
		r := newBenchURing(b)
		fill := func(i int, sqe *uringSQE) {
			sqe.Opcode = uringOpWritev
			sqe.Fd = int32(p.srv[i])
			sqe.Addr = uint64(uintptr(unsafe.Pointer(&iov4[0])))
			sqe.Len = uint32(len(iov4))
		}
		fanoutRounds(b, p, fanoutConns, 4*fanoutFrame, func() {
			if err := r.run(fanoutConns, fill, uringCheck(4*fanoutFrame)); err != nil {
				b.Fatal(err)
			}
		})
		reportURing(b, r)
	})
	runtime.KeepAlive(frame)
	runtime.KeepAlive(iov4)
}

// newBenchURing returns a ring for fanoutConns SQEs, or skips b when the
// kernel does not allow io_uring.
func newBenchURing(tb testing.TB) *uring {
	tb.Helper()
	r, err := newURing(fanoutConns)
	if err != nil {
		tb.Skip("io_uring:", err)
	}
	tb.Cleanup(r.close)
	return r
}

// uringCheck returns a CQE check that wants a result of want.
func uringCheck(want int32) func(*uringCQE) error {
	return func(cqe *uringCQE) error {
		if cqe.Res < 0 {
			return syscall.Errno(-cqe.Res)
		}
		if cqe.Res != want {
			return errors.New("short io_uring write")
		}
		return nil
	}
}

func reportURing(b *testing.B, r *uring) {
	b.ReportMetric(100*float64(r.completedIn)/float64(max(r.submitted, 1)), "inline-%")
	b.ReportMetric(float64(ioWorkers()), "iou-wrk")
}

// TestURingSend checks the minimal io_uring on a few connections.
func TestURingSend(t *testing.T) {
	if a, b, c := unsafe.Sizeof(uringSQE{}), unsafe.Sizeof(uringCQE{}), unsafe.Sizeof(uringParams{}); a != 64 || b != 16 || c != 120 {
		t.Fatalf("ABI sizes: SQE %d, CQE %d, params %d; want 64, 16, 120", a, b, c)
	}
	p := newFanoutPairs(t, 4)
	r := newBenchURing(t)
	frame := []byte("0123456789")
	fill := func(i int, sqe *uringSQE) {
		sqe.Opcode = uringOpSend
		sqe.Fd = int32(p.srv[i])
		sqe.Addr = uint64(uintptr(unsafe.Pointer(&frame[0])))
		sqe.Len = uint32(len(frame))
		sqe.UserData = uint64(i)
	}
	for range 3 {
		if err := r.run(len(p.srv), fill, uringCheck(int32(len(frame)))); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 64)
	for i, c := range p.cli {
		got := 0
		for got < 3*len(frame) {
			n, err := unix.Read(c, buf[got:])
			if errors.Is(err, unix.EAGAIN) {
				continue
			}
			if err != nil || n == 0 {
				t.Fatalf("connection %d: read %d, %v", i, n, err)
			}
			got += n
		}
		if want := strings.Repeat(string(frame), 3); string(buf[:got]) != want {
			t.Fatalf("connection %d: got %q, want %q", i, buf[:got], want)
		}
	}
	runtime.KeepAlive(frame)
}
