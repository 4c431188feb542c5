// Package testlog gives tests a logger that writes to the test's own log,
// shown when the test fails or with -v, at debug level.
package testlog

import (
	"log/slog"
	"strings"
	"testing"
)

// New returns a logger that writes each record as one line of t's log.
func New(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(writer{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// writer writes to a test's log.
type writer struct{ t testing.TB }

func (w writer) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
