//go:build linux

package main

import (
	"bytes"
	"strconv"
)

// Payloads carry a sequence number and the send time in Unix nanoseconds,
// padded to the configured size:
//
//	JSON (native, centrifugo, HTTP publish): {"s":123,"t":1712345678901234567,"p":"xxx"}
//	raw text:                                 123 1712345678901234567 xxx

// appendJSONPayload appends a JSON payload of about size bytes (never less
// than its fixed fields need).
func appendJSONPayload(dst []byte, seq uint64, t int64, size int) []byte {
	start := len(dst)
	dst = append(dst, `{"s":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, `,"t":`...)
	dst = strconv.AppendInt(dst, t, 10)
	dst = append(dst, `,"p":"`...)
	for pad := size - (len(dst) - start) - 2; pad > 0; pad-- {
		dst = append(dst, 'x')
	}
	return append(dst, `"}`...)
}

// appendRawPayload appends a raw text payload of about size bytes.
func appendRawPayload(dst []byte, seq uint64, t int64, size int) []byte {
	start := len(dst)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, t, 10)
	dst = append(dst, ' ')
	for pad := size - (len(dst) - start); pad > 0; pad-- {
		dst = append(dst, 'x')
	}
	return dst
}

// parseUint reads decimal digits at the start of b. It returns the value
// and the number of digits (0 when b does not start with a digit).
func parseUint(b []byte) (v uint64, n int) {
	for n < len(b) && n < 20 && b[n] >= '0' && b[n] <= '9' {
		v = v*10 + uint64(b[n]-'0')
		n++
	}
	return v, n
}

// parseRawPayload extracts seq and send time from a raw text payload.
func parseRawPayload(b []byte) (seq uint64, t int64, ok bool) {
	seq, n := parseUint(b)
	if n == 0 || n >= len(b) || b[n] != ' ' {
		return 0, 0, false
	}
	b = b[n+1:]
	tv, m := parseUint(b)
	if m == 0 || (m < len(b) && b[m] != ' ') {
		return 0, 0, false
	}
	return seq, int64(tv), true
}

var (
	jsonMarker    = []byte(`{"s":`)
	jsonTime      = []byte(`,"t":`)
	escapedMarker = []byte(`{\"s\":`)
	escapedTime   = []byte(`,\"t\":`)
)

// parseJSONPayload finds a JSON payload anywhere in b (a native message
// event or a Centrifugo push embeds it as data) and extracts seq and send
// time. It does not allocate.
func parseJSONPayload(b []byte) (seq uint64, t int64, ok bool) {
	return findPayload(b, jsonMarker, jsonTime)
}

// parseEscapedJSONPayload is parseJSONPayload for a payload carried inside
// a JSON string, as a Pusher event's data is: {\"s\":1,\"t\":2,...}.
func parseEscapedJSONPayload(b []byte) (seq uint64, t int64, ok bool) {
	return findPayload(b, escapedMarker, escapedTime)
}

func findPayload(b, marker, tm []byte) (seq uint64, t int64, ok bool) {
	i := bytes.Index(b, marker)
	if i < 0 {
		return 0, 0, false
	}
	b = b[i+len(marker):]
	seq, n := parseUint(b)
	if n == 0 || !bytes.HasPrefix(b[n:], tm) {
		return 0, 0, false
	}
	tv, m := parseUint(b[n+len(tm):])
	if m == 0 {
		return 0, 0, false
	}
	return seq, int64(tv), true
}
