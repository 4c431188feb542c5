//go:build linux

package transport

import (
	"errors"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/switchboard-rt/switchboard/hub"
)

// The io_uring ABI (include/uapi/linux/io_uring.h), as much as used here
// and by the benchmark of uring_linux_test.go.
const (
	uringOpNop     = 0
	uringOpWritev  = 2
	uringOpSendmsg = 9
	uringOpSend    = 26

	uringSetupSubmitAll   = 1 << 7
	uringSetupCoopTaskrun = 1 << 8

	uringEnterGetEvents = 1 << 0

	uringOffSQRing = 0
	uringOffCQRing = 0x8000000
	uringOffSQEs   = 0x10000000
)

type uringSQRingOffsets struct {
	Head, Tail, RingMask, RingEntries, Flags, Dropped, Array, Resv1 uint32
	UserAddr                                                        uint64
}

type uringCQRingOffsets struct {
	Head, Tail, RingMask, RingEntries, Overflow, CQEs, Flags, Resv1 uint32
	UserAddr                                                        uint64
}

type uringParams struct {
	SQEntries, CQEntries, Flags, SQThreadCPU, SQThreadIdle, Features, WQFd uint32
	Resv                                                                   [3]uint32
	SQOff                                                                  uringSQRingOffsets
	CQOff                                                                  uringCQRingOffsets
}

// uringSQE is a submission queue entry (64 bytes).
type uringSQE struct {
	Opcode      uint8
	Flags       uint8
	IOPrio      uint16
	Fd          int32
	Off         uint64
	Addr        uint64
	Len         uint32
	OpFlags     uint32 // rw_flags, msg_flags, ...
	UserData    uint64
	BufIndex    uint16
	Personality uint16
	SpliceFdIn  int32
	Addr3       uint64
	Pad         uint64
}

// uringCQE is a completion queue entry (16 bytes).
type uringCQE struct {
	UserData uint64
	Res      int32
	Flags    uint32
}

// DefaultURingEntries is how many connections one URing made by
// NewBatchWriter writes with one system call.
const DefaultURingEntries = 64

// uringSendFlags make every send of a URing non-blocking (a full socket
// completes at once with EAGAIN instead of waiting in the kernel) and keep
// a closed peer from raising SIGPIPE.
const uringSendFlags = unix.MSG_DONTWAIT | unix.MSG_NOSIGNAL

// URing writes to many of the transport's connections with one system call
// (io_uring_enter): it is the hub.BatchWriter of one writer goroutine of
// the hub's pool (hub.Config.IOURing). Each write is one IORING_OP_SENDMSG
// of a connection's frames with MSG_DONTWAIT, so that it behaves like
// TryWriteFrames: it takes what the socket takes now, and a full socket
// completes at once, inline, with EAGAIN (a short count and no error).
//
// A URing is not safe for concurrent use: the goroutine that made it owns
// it, calls Add and Submit, and closes it. It holds no connection between
// two Submits.
//
// Descriptors: an SQE names its socket by descriptor number, which a
// concurrent Close (the hub's kill timer, Finish) could free and the next
// accept reuse. Submit therefore holds every connection's descriptor the
// way TryWriteFrames does, with its syscall.RawConn's Write, which keeps
// the descriptor open (a Close waits for it) from before its SQE is filled
// until every completion has been reaped; the Writes are nested, one per
// connection, around the one io_uring_enter. The kernel itself holds a
// reference to each socket from submission to completion. A connection
// already closed when Submit runs gets its RawConn's error and no SQE.
type URing struct {
	uringMap

	// The batch since the last Submit. msgs and holds have the ring's
	// size and are never reallocated; iov grows, and the msghdrs are
	// pointed at it only in Submit.
	adds    []uringAdd
	iov     []unix.Iovec
	msgs    []unix.Msghdr
	holds   []func(fd uintptr) bool // holds[i] fills add i's SQE and holds the rest; bound once
	filled  int                     // SQEs filled by the holds
	results []hub.BatchResult
}

// uringAdd is one write of the batch.
type uringAdd struct {
	rc         syscall.RawConn
	iov0, niov int // its frames: iov[iov0 : iov0+niov]
}

var _ hub.BatchWriter = (*URing)(nil)

// NewBatchWriter returns a URing of DefaultURingEntries, as a
// hub.BatchWriter: it is hub.Config.NewBatchWriter for the transport's
// connections. It fails where the kernel refuses io_uring (too old,
// disabled by the kernel.io_uring_disabled sysctl, or filtered by a
// container's seccomp profile).
func NewBatchWriter() (hub.BatchWriter, error) {
	r, err := NewURing(DefaultURingEntries)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// NewURing returns a URing that writes to at most entries connections per
// Submit.
func NewURing(entries int) (*URing, error) {
	if entries <= 0 || entries > 4096 {
		return nil, errors.New("transport: io_uring entries must be 1 to 4096")
	}
	p := uringParams{Flags: uringSetupSubmitAll}
	fd, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if e == unix.EINVAL {
		// Before Linux 5.18: no IORING_SETUP_SUBMIT_ALL. Submit then
		// submits again what an SQE that failed early left unsubmitted.
		p = uringParams{}
		fd, _, e = unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	}
	if e != 0 {
		return nil, &errorString{"transport: io_uring_setup: " + e.Error(), e}
	}
	r := &URing{}
	if err := r.mapRings(int(fd), &p); err != nil {
		return nil, errors.Join(errors.New("transport: io_uring mmap"), err)
	}
	r.msgs = make([]unix.Msghdr, entries)
	r.holds = make([]func(uintptr) bool, entries)
	for i := range r.holds {
		r.holds[i] = func(fd uintptr) bool {
			r.fill(i, fd)
			r.hold(i + 1)
			return true // never wait for the socket
		}
	}
	r.adds = make([]uringAdd, 0, entries)
	r.results = make([]hub.BatchResult, 0, entries)
	return r, nil
}

// errorString is an error that says what failed and unwraps to its errno.
type errorString struct {
	s string
	e syscall.Errno
}

func (e *errorString) Error() string { return e.s }
func (e *errorString) Unwrap() error { return e.e }

// Close releases the ring. Only its owner may call it, not during Submit.
func (r *URing) Close() error { return r.unmap() }

// uringMap is an io_uring instance's descriptor and its rings mapped into
// memory, as URing (and the benchmark's ring) use them: one submitter, the
// SQ array mapped one to one onto the SQEs.
type uringMap struct {
	fd                    int
	sqRing, cqRing, sqMem []byte
	sqHead, sqTail        *uint32 // the kernel advances sqHead, the submitter sqTail
	cqHead, cqTail        *uint32 // the submitter advances cqHead, the kernel cqTail
	sqMask, cqMask        uint32
	sqes                  []uringSQE
	cqes                  []uringCQE
}

// mapRings maps the rings of the io_uring fd that io_uring_setup filled p
// for. On failure it closes fd and unmaps what it had mapped.
func (r *uringMap) mapRings(fd int, p *uringParams) error {
	r.fd = fd
	var err error
	mmap := func(off int64, size uint32) []byte {
		if err != nil {
			return nil
		}
		var m []byte
		m, err = unix.Mmap(r.fd, off, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
		return m
	}
	r.sqRing = mmap(uringOffSQRing, p.SQOff.Array+p.SQEntries*4)
	r.cqRing = mmap(uringOffCQRing, p.CQOff.CQEs+p.CQEntries*uint32(unsafe.Sizeof(uringCQE{})))
	r.sqMem = mmap(uringOffSQEs, p.SQEntries*uint32(unsafe.Sizeof(uringSQE{})))
	if err != nil {
		_ = r.unmap()
		return err
	}
	u32 := func(b []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&b[off])) }
	r.sqHead, r.sqTail, r.sqMask = u32(r.sqRing, p.SQOff.Head), u32(r.sqRing, p.SQOff.Tail), *u32(r.sqRing, p.SQOff.RingMask)
	r.cqHead, r.cqTail, r.cqMask = u32(r.cqRing, p.CQOff.Head), u32(r.cqRing, p.CQOff.Tail), *u32(r.cqRing, p.CQOff.RingMask)
	r.sqes = unsafe.Slice((*uringSQE)(unsafe.Pointer(&r.sqMem[0])), p.SQEntries)
	r.cqes = unsafe.Slice((*uringCQE)(unsafe.Pointer(&r.cqRing[p.CQOff.CQEs])), p.CQEntries)
	// The SQ array maps ring slots to SQEs; the identity map lets the
	// submitter fill the SQE of slot tail&mask directly.
	array := unsafe.Slice(u32(r.sqRing, p.SQOff.Array), p.SQEntries)
	for i := range array {
		array[i] = uint32(i)
	}
	return nil
}

// unmap releases the rings and closes the descriptor; calling it again
// does nothing.
func (r *uringMap) unmap() error {
	for _, m := range [][]byte{r.sqMem, r.cqRing, r.sqRing} {
		if m != nil {
			_ = unix.Munmap(m)
		}
	}
	r.sqMem, r.cqRing, r.sqRing = nil, nil, nil
	if r.fd < 0 {
		return nil
	}
	err := unix.Close(r.fd)
	r.fd = -1
	return err
}

// Add adds a write of frames to t to the batch. It returns false, and
// adds nothing, when t is not one of the transport's plain-socket
// connections, when the batch is full, or when frames has no byte or more
// buffers than one sendmsg takes: the caller then writes with
// TryWriteFrames. The frames must stay unchanged until Submit returns; Add
// does not change the slice.
func (r *URing) Add(t hub.TryWriter, frames [][]byte) bool {
	rw, ok := t.(*rawWSConn)
	if !ok || len(r.adds) == len(r.msgs) {
		return false
	}
	k := 0
	for _, f := range frames {
		if len(f) > 0 {
			k++
		}
	}
	if k == 0 || k > maxIovecs {
		return false
	}
	iov0 := len(r.iov)
	for _, f := range frames {
		if len(f) > 0 {
			v := unix.Iovec{Base: &f[0]}
			v.SetLen(len(f))
			r.iov = append(r.iov, v)
		}
	}
	r.adds = append(r.adds, uringAdd{rc: rw.rc, iov0: iov0, niov: k})
	return true
}

// Submit writes every write added since the last Submit with one
// io_uring_enter and returns their results in the order they were added:
// as TryWriteFrames, the bytes written, a short count with no error when
// the socket took no more, or an error. It returns once every write has
// completed; the results are valid until the next Add.
func (r *URing) Submit() []hub.BatchResult {
	r.results = r.results[:0]
	for range r.adds {
		r.results = append(r.results, hub.BatchResult{})
	}
	for i, a := range r.adds {
		m := &r.msgs[i]
		*m = unix.Msghdr{Iov: &r.iov[a.iov0]}
		m.SetIovlen(a.niov)
	}
	r.filled = 0
	r.hold(0)
	clear(r.msgs[:len(r.adds)])
	clear(r.adds)
	r.adds = r.adds[:0]
	clear(r.iov)
	r.iov = r.iov[:0]
	if cap(r.iov) > 4*maxIovecs {
		r.iov = nil
	}
	return r.results
}

// hold holds the descriptors of adds i and on, each with its RawConn's
// Write (which runs the next hold inside it), then submits. An add whose
// connection is closed gets its error and no SQE.
func (r *URing) hold(i int) {
	for ; i < len(r.adds); i++ {
		err := r.adds[i].rc.Write(r.holds[i])
		if err == nil {
			return // holds[i] ran, and with it everything after i
		}
		r.results[i].Err = err
	}
	r.submit()
}

// fill fills add i's SQE: a non-blocking sendmsg to fd.
func (r *URing) fill(i int, fd uintptr) {
	sqe := &r.sqes[(*r.sqTail+uint32(r.filled))&r.sqMask]
	*sqe = uringSQE{
		Opcode:   uringOpSendmsg,
		Fd:       int32(fd),
		Addr:     uint64(uintptr(unsafe.Pointer(&r.msgs[i]))),
		Len:      1,
		OpFlags:  uringSendFlags,
		UserData: uint64(i),
	}
	r.filled++
}

// submit submits the filled SQEs and waits for all their completions. The
// sends complete inline (non-blocking sockets, MSG_DONTWAIT), so one
// io_uring_enter normally does everything; a second one waits only for
// completions the first did not see. When the kernel will not take the
// SQEs (out of memory, say), the ones it did not take are sent one by one
// with sendmsg(2) instead.
func (r *URing) submit() {
	n := r.filled
	if n == 0 {
		return
	}
	tail := *r.sqTail // only we write it
	end := tail + uint32(n)
	// Release: the kernel must see the SQEs before the new tail.
	atomic.StoreUint32(r.sqTail, end)
	toSubmit, done, busy := n, 0, 0
	for done < n {
		flags, minComplete := uintptr(0), uintptr(0)
		if toSubmit == 0 {
			flags, minComplete = uringEnterGetEvents, uintptr(n-done)
		}
		k, _, e := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit), minComplete, flags, 0, 0)
		switch {
		case e == 0:
			if toSubmit > 0 {
				toSubmit -= int(k)
			}
		case e == unix.EINTR:
		case (e == unix.EAGAIN || e == unix.EBUSY) && busy < 3:
			busy++
		case toSubmit > 0:
			// The kernel takes no more: send the rest ourselves. Without
			// SQPOLL it reads the SQ only inside io_uring_enter, so the
			// SQEs it did not consume can be taken back.
			head := atomic.LoadUint32(r.sqHead)
			for s := head; s != end; s++ {
				r.sendDirect(&r.sqes[s&r.sqMask])
				done++
			}
			atomic.StoreUint32(r.sqTail, head)
			toSubmit = 0
		default:
			// Waiting failed: the submitted sends still refer to memory
			// and descriptors we hold, so there is no safe way out.
			panic("transport: io_uring wait: " + e.Error())
		}
		// Acquire: the CQEs are valid once we see the kernel's tail.
		head, ctail := *r.cqHead, atomic.LoadUint32(r.cqTail)
		for ; head != ctail; head++ {
			cqe := &r.cqes[head&r.cqMask]
			r.result(int(cqe.UserData), cqe.Res)
			done++
		}
		atomic.StoreUint32(r.cqHead, head)
	}
}

// sendDirect does what sqe asks with sendmsg(2).
func (r *URing) sendDirect(sqe *uringSQE) {
	for {
		k, _, e := unix.Syscall(unix.SYS_SENDMSG, uintptr(sqe.Fd), uintptr(sqe.Addr), uintptr(sqe.OpFlags))
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			r.result(int(sqe.UserData), -int32(e))
		} else {
			r.result(int(sqe.UserData), int32(k))
		}
		return
	}
}

// result records add i's completion, res as a CQE holds it: bytes
// written, or minus an errno.
func (r *URing) result(i int, res int32) {
	switch {
	case res >= 0:
		r.results[i].N = int(res)
	case syscall.Errno(-res) == unix.EAGAIN:
		// The socket is full: nothing written, no error.
	default:
		r.results[i].Err = syscall.Errno(-res)
	}
}
