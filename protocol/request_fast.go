package protocol

import (
	"bytes"
	"encoding/json"
)

// decodeFast fills w from a request of the common shape, without
// reflection: one JSON object, whose keys are among id, op, channel, data,
// idempotency_key and token, spelled exactly and each once; id a run of
// digits; the others but data strings of printable ASCII without escapes;
// data any valid JSON value. It reports false for anything else (since,
// limit, another key, an escape, a type or syntax error...), and
// DecodeRequest then decodes the frame with encoding/json, which decides
// every unusual case and words its error. Where it reports true, w is what
// json.Unmarshal would have made of the frame (FuzzDecodeFast checks it),
// and data is a copy that does not alias frame.
//
// A chat server decodes a request per message a client sends; this path
// takes about a fifth of encoding/json's time and allocations, and keeps
// the reading goroutine's stack shallow (a fresh goroutine reads each
// resumed connection, and reflection grew its stack on every request).
func decodeFast(frame []byte, w *wireRequest) bool {
	i := skipSpace(frame, 0)
	if i >= len(frame) || frame[i] != '{' {
		return false
	}
	i = skipSpace(frame, i+1)
	var seen uint8
	for first := true; ; first = false {
		if i >= len(frame) {
			return false
		}
		if frame[i] == '}' {
			if !first {
				return false // the comma before it promised a key
			}
			break
		}
		key, j, ok := plainString(frame, i)
		if !ok {
			return false
		}
		j = skipSpace(frame, j)
		if j >= len(frame) || frame[j] != ':' {
			return false
		}
		j = skipSpace(frame, j+1)
		var bit uint8
		var str *string // the field a string value goes to
		switch string(key) {
		case "id":
			bit = 1
			k := j
			for k < len(frame) && frame[k] >= '0' && frame[k] <= '9' {
				k++
			}
			if k == j || frame[j] == '0' && k-j > 1 {
				return false
			}
			w.ID, j = frame[j:k], k
		case "data":
			bit = 8
			k, ok := skipValue(frame, j)
			if !ok {
				return false
			}
			v := bytes.TrimRight(frame[j:k], " \t\n\r")
			if !json.Valid(v) {
				return false
			}
			w.Data, j = bytes.Clone(v), k
		case "op":
			bit, str = 2, &w.Op
		case "channel":
			bit, str = 4, &w.Channel
		case "idempotency_key":
			bit, str = 16, &w.IdemKey
		case "token":
			bit, str = 32, &w.Token
		default:
			return false
		}
		if str != nil {
			var v []byte
			if v, j, ok = plainString(frame, j); !ok {
				return false
			}
			*str = string(v)
		}
		if seen&bit != 0 {
			return false // a repeated key: the last one wins there, not here
		}
		seen |= bit
		i = skipSpace(frame, j)
		if i < len(frame) && frame[i] == ',' {
			i = skipSpace(frame, i+1)
			if i >= len(frame) || frame[i] == '}' {
				return false
			}
			continue
		}
		if i >= len(frame) || frame[i] != '}' {
			return false
		}
		break
	}
	// Nothing but white space may follow the object.
	return skipSpace(frame, i+1) == len(frame)
}

// skipSpace returns the index of the first byte at or after i that is not
// JSON white space.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// plainString reads the JSON string at b[i:] when it holds only printable
// ASCII without escapes; it returns its contents (aliasing b) and the
// index after its closing quote.
func plainString(b []byte, i int) (s []byte, next int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, 0, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return b[i+1 : j], j + 1, true
		case c == '\\' || c < 0x20 || c >= 0x7f:
			return nil, 0, false
		}
	}
	return nil, 0, false
}

// skipValue returns the index just after the JSON value starting at b[i]
// (for a number or a literal: the index of the comma or brace after it,
// white space included), following strings and nesting only; json.Valid
// judges the value itself.
func skipValue(b []byte, i int) (int, bool) {
	depth := 0
	for j := i; j < len(b); j++ {
		switch b[j] {
		case '"':
			for j++; j < len(b) && b[j] != '"'; j++ {
				if b[j] == '\\' {
					j++
				}
			}
			if j >= len(b) {
				return 0, false
			}
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return j, j > i // the end of the enclosing object
			}
			depth--
		case ',':
			if depth == 0 {
				return j, j > i
			}
		}
		if depth == 0 && (b[j] == '"' || b[j] == '}' || b[j] == ']') {
			return j + 1, true
		}
	}
	return 0, false
}
