package server

import (
	"bytes"
	"log"
	"log/slog"
)

// newErrorLog returns the http.Server's error log: lines about recovered
// handler panics are errors (each is a bug), the rest (TLS handshake
// errors, bad requests from clients) are debug noise.
func newErrorLog(l *slog.Logger) *log.Logger {
	return log.New(errorLogWriter{l}, "", 0)
}

type errorLogWriter struct{ l *slog.Logger }

func (w errorLogWriter) Write(p []byte) (int, error) {
	msg := string(bytes.TrimRight(p, "\n"))
	if bytes.Contains(p, []byte("panic")) {
		w.l.Error("http: a handler panicked", "log", msg)
	} else {
		w.l.Debug("http: " + msg)
	}
	return len(p), nil
}
