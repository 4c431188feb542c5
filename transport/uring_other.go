//go:build !linux

package transport

import (
	"errors"

	"github.com/switchboard-rt/switchboard/hub"
)

// DefaultURingEntries is how many connections one URing made by
// NewBatchWriter writes with one system call.
const DefaultURingEntries = 64

// URing is io_uring, which only Linux has: elsewhere NewURing fails, and
// the hub writes each connection with its own system call.
type URing struct{}

var _ hub.BatchWriter = (*URing)(nil)

// NewBatchWriter fails elsewhere than Linux.
func NewBatchWriter() (hub.BatchWriter, error) { return nil, errors.ErrUnsupported }

// NewURing fails elsewhere than Linux.
func NewURing(int) (*URing, error) { return nil, errors.ErrUnsupported }

// Add adds nothing.
func (*URing) Add(hub.TryWriter, [][]byte) bool { return false }

// Submit has nothing to write.
func (*URing) Submit() []hub.BatchResult { return nil }

// Close does nothing.
func (*URing) Close() error { return nil }
