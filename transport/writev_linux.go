//go:build linux

package transport

import (
	"net"
	"sync"
	"syscall"
	"unsafe"
)

// maxIovecs is the most buffers one writev takes (IOV_MAX on Linux).
const maxIovecs = 1024

// writev is the scratch state of one non-blocking writev. It is pooled so
// that a write allocates nothing: fn is bound once, and the iovec array is
// reused.
type writev struct {
	iov   []syscall.Iovec
	n     int
	errno syscall.Errno
	fn    func(fd uintptr) bool
}

var writevPool = sync.Pool{New: func() any {
	w := &writev{iov: make([]syscall.Iovec, 0, 64)}
	w.fn = w.do
	return w
}}

// do runs one writev on fd without waiting for the socket to be writable:
// returning true tells the runtime not to wait.
func (w *writev) do(fd uintptr) bool {
	for {
		n, _, e := syscall.Syscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&w.iov[0])), uintptr(len(w.iov)))
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			w.n, w.errno = 0, e
		} else {
			w.n, w.errno = int(n), 0
		}
		return true
	}
}

// tryWritev writes as much of frames as the socket takes now, without
// blocking, and returns the number of bytes written.
func tryWritev(rc syscall.RawConn, frames [][]byte) (int, error) {
	w := writevPool.Get().(*writev)
	defer writevPool.Put(w)
	written := 0
	for len(frames) > 0 {
		w.iov = w.iov[:0]
		want, k := 0, 0
		for ; k < len(frames) && len(w.iov) < maxIovecs; k++ {
			if f := frames[k]; len(f) > 0 {
				iov := syscall.Iovec{Base: &f[0]}
				iov.SetLen(len(f))
				w.iov = append(w.iov, iov)
				want += len(f)
			}
		}
		frames = frames[k:]
		if len(w.iov) == 0 {
			continue
		}
		if err := rc.Write(w.fn); err != nil {
			return written, err
		}
		if w.errno == syscall.EAGAIN {
			break
		}
		if w.errno != 0 {
			return written, w.errno
		}
		written += w.n
		if w.n < want {
			break
		}
	}
	clear(w.iov[:cap(w.iov)])
	return written, nil
}

// rawConn returns the connection's syscall.RawConn when it is a plain TCP
// (or Unix) socket; nil otherwise (TLS, tests' pipes).
func rawConn(c net.Conn) syscall.RawConn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}
