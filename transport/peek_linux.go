//go:build linux

package transport

import (
	"errors"
	"os"
	"syscall"
	"time"
	"unsafe"
)

// idle reports whether the client has nothing more to read right now, so
// that the session may park: the upgrade's reader and the read buffer are
// drained and, for a chatty client, the socket has had no byte for a
// linger. Otherwise the socket is not asked: parking re-arms a
// level-triggered registration, which reports at once a byte already
// waiting, so a peek would cost every client a system call to spare a rare
// one a resume.
func (ss *session) idle() bool {
	if ss.early != nil {
		if len(ss.early.b) > 0 {
			return false
		}
		ss.rd, ss.early = ss.conn, nil
	}
	if ss.br != nil {
		if ss.br.Buffered() > 0 {
			return false
		}
		ss.unbuffer()
	}
	if ss.fresh {
		// The poller just said the socket is readable (or broken).
		ss.fresh = false
		return false
	}
	if !ss.chatty {
		return true
	}
	if err := ss.rc.Read(ss.peekFn); err != nil || ss.peekErr != syscall.EAGAIN {
		return false
	}
	// Linger: wait for the next frame a while, parked in the runtime's
	// poller, before giving the goroutine up.
	_ = ss.conn.SetReadDeadline(time.Now().Add(min(linger, ss.srv.cfg.ReadTimeout)))
	return errors.Is(ss.rc.Read(ss.peekWaitFn), os.ErrDeadlineExceeded)
}

// peekWait is peek for rc.Read's waiting mode: on EAGAIN it asks the
// runtime to wait until the socket is readable and call it again.
func (ss *session) peekWait(fd uintptr) bool {
	ss.peek(fd)
	return ss.peekErr != syscall.EAGAIN
}

// peek looks for one waiting byte without consuming it or blocking.
func (ss *session) peek(fd uintptr) bool {
	for {
		_, _, e := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&ss.peekByte[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		if e == syscall.EINTR {
			continue
		}
		ss.peekErr = e
		return true
	}
}
