//go:build !linux

package transport

import (
	"errors"
	"net"
	"syscall"
)

// rawConn returns nil elsewhere than Linux: every connection is written
// with blocking writes, by a goroutine of its own while it has frames.
func rawConn(net.Conn) syscall.RawConn { return nil }

// tryWritev is never called where rawConn returns nil.
func tryWritev(syscall.RawConn, [][]byte) (int, error) {
	return 0, errors.ErrUnsupported
}
