package server

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// A line net/http logs may hold what a client sent (a path, a header); a
// CR or LF in it must not start a forged log line.
func TestErrorLogEscapesControlCharacters(t *testing.T) {
	for _, handler := range []func(*bytes.Buffer) slog.Handler{
		func(b *bytes.Buffer) slog.Handler {
			return slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})
		},
		func(b *bytes.Buffer) slog.Handler {
			return slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})
		},
	} {
		var b bytes.Buffer
		l := newErrorLog(slog.New(handler(&b)))
		l.Print("http: bad request from /x\r\nlevel=ERROR msg=forged\x1b[31m")
		l.Print("http: panic serving 1.2.3.4: boom\nlevel=INFO msg=forged")
		out := b.String()
		if lines := strings.Count(out, "\n"); lines != 2 {
			t.Fatalf("two log calls wrote %d lines:\n%s", lines, out)
		}
		if strings.Contains(out, "\r") || strings.Contains(out, "\x1b") {
			t.Fatalf("a control character reached the log: %q", out)
		}
	}
}
