//go:build linux

package transport

import (
	"errors"
	"os"
	"time"
)

// idle reports whether the client has nothing more to read right now, so
// that the session may park: the upgrade's reader and the read buffer are
// drained and, for a chatty client, nothing came for a linger. A client
// that is not chatty parks without asking the socket: parking re-arms a
// level-triggered registration, which reports at once a byte already
// waiting, so a look at the socket would cost every client a system call
// to spare a rare one a resume.
func (ss *session) idle() bool {
	if ss.early != nil {
		if len(ss.early.b) > 0 {
			return false
		}
		ss.rd, ss.early = ss.conn, nil
	}
	if ss.br != nil && ss.br.Buffered() > 0 {
		return false
	}
	if ss.fresh {
		// The poller just said the socket is readable (or broken).
		ss.fresh = false
		return false
	}
	if !ss.chatty {
		ss.unbuffer()
		return true
	}
	// Linger: wait for the next frame a while, in the runtime's poller,
	// reading it into the buffer when it comes. Any other error than the
	// deadline stays in the buffer for the next read to report.
	ss.buffer()
	_ = ss.conn.SetReadDeadline(time.Now().Add(min(linger, ss.srv.cfg.ReadTimeout)))
	if _, err := ss.br.Peek(1); !errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	ss.unbuffer()
	return true
}
