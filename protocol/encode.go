package protocol

import (
	"encoding/base64"
	"strconv"
	"unicode/utf8"
)

// AppendWelcome appends the welcome frame a native connection starts with.
func AppendWelcome(b []byte, version int, client, node string, pingIntervalMs int64) []byte {
	b = append(b, `{"op":"welcome","version":`...)
	b = strconv.AppendInt(b, int64(version), 10)
	b = append(b, `,"client":`...)
	b = AppendString(b, client)
	b = append(b, `,"node":`...)
	b = AppendString(b, node)
	b = append(b, `,"ping_interval_ms":`...)
	b = strconv.AppendInt(b, pingIntervalMs, 10)
	return append(b, '}')
}

// AppendOK appends the reply {"id":N,"ok":true}.
func AppendOK(b []byte, id uint64) []byte {
	b = appendReplyStart(b, id)
	return append(b, '}')
}

// AppendPositionReply appends a successful reply that carries a channel
// position (subscribe, publish). A zero pos (a channel without history)
// writes no position; recovered, when not nil, adds "recovered".
func AppendPositionReply(b []byte, id uint64, pos Position, recovered *bool) []byte {
	b = appendReplyStart(b, id)
	if pos.Epoch != "" {
		b = appendPosition(b, pos)
	}
	if recovered != nil {
		b = append(b, `,"recovered":`...)
		b = strconv.AppendBool(b, *recovered)
	}
	return append(b, '}')
}

// AppendHistoryReply appends a history reply: the channel's position and n
// messages, oldest first; at(i) returns the offset and data of message i,
// and whether the data is binary (see AppendData).
func AppendHistoryReply(b []byte, id uint64, pos Position, n int, at func(i int) (offset uint64, data []byte, binary bool, ts int64)) []byte {
	b = appendReplyStart(b, id)
	if pos.Epoch != "" {
		b = appendPosition(b, pos)
	}
	b = append(b, `,"messages":[`...)
	for i := range n {
		off, data, binary, ts := at(i)
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"offset":`...)
		b = strconv.AppendUint(b, off, 10)
		b = append(b, `,"data":`...)
		b = AppendData(b, data, binary)
		b = appendTS(b, ts)
		b = append(b, '}')
	}
	return append(b, `]}`...)
}

// AppendPresenceReply appends a presence reply with n clients; at(i)
// returns client i's id, user and info (each omitted when empty; info must
// be a JSON object).
func AppendPresenceReply(b []byte, id uint64, n int, at func(i int) (client, user string, info []byte)) []byte {
	b = appendReplyStart(b, id)
	b = append(b, `,"clients":[`...)
	for i := range n {
		client, user, info := at(i)
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"client":`...)
		b = AppendString(b, client)
		if user != "" {
			b = append(b, `,"user":`...)
			b = AppendString(b, user)
		}
		if len(info) > 0 {
			b = append(b, `,"info":`...)
			b = append(b, info...)
		}
		b = append(b, '}')
	}
	return append(b, `]}`...)
}

// AppendAuthReply appends the reply to auth or refresh: the user (auth
// only; omitted when empty) and when the token expires, in seconds since
// the Unix epoch.
func AppendAuthReply(b []byte, id uint64, user string, expiresAt int64) []byte {
	b = appendReplyStart(b, id)
	if user != "" {
		b = append(b, `,"user":`...)
		b = AppendString(b, user)
	}
	b = append(b, `,"expires_at":`...)
	b = strconv.AppendInt(b, expiresAt, 10)
	return append(b, '}')
}

// AppendError appends a failed reply to request id.
func AppendError(b []byte, id uint64, e *Error) []byte {
	b = append(b, `{"id":`...)
	b = strconv.AppendUint(b, id, 10)
	b = append(b, `,"ok":false,"error":{"code":`...)
	b = AppendString(b, string(e.Code))
	b = append(b, `,"message":`...)
	b = AppendString(b, e.Message)
	return append(b, `}}`...)
}

// AppendData appends a message's data after its "data" key: JSON data as
// it is, binary data as a base64 string (standard alphabet, padded) followed
// by "encoding":"base64", which tells a client to decode it.
func AppendData(b, data []byte, binary bool) []byte {
	if !binary {
		return append(b, data...)
	}
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, data)
	return append(b, `","encoding":"base64"`...)
}

// AppendMessage appends a message event. data must be one valid JSON value,
// or any bytes when binary is set (see AppendData); a zero pos writes no
// position; ts is the publish time in milliseconds since the Unix epoch,
// written as "ts" unless it is 0.
func AppendMessage(b []byte, channel string, data []byte, binary bool, pos Position, ts int64) []byte {
	b = append(b, `{"op":"message","channel":`...)
	b = AppendString(b, channel)
	b = append(b, `,"data":`...)
	b = AppendData(b, data, binary)
	if pos.Epoch != "" {
		b = appendPosition(b, pos)
	}
	b = appendTS(b, ts)
	return append(b, '}')
}

// appendTS appends a publish time as "ts", unless it is 0 (unknown).
func appendTS(b []byte, ts int64) []byte {
	if ts == 0 {
		return b
	}
	b = append(b, `,"ts":`...)
	return strconv.AppendInt(b, ts, 10)
}

func appendReplyStart(b []byte, id uint64) []byte {
	b = append(b, `{"id":`...)
	b = strconv.AppendUint(b, id, 10)
	return append(b, `,"ok":true`...)
}

func appendPosition(b []byte, pos Position) []byte {
	b = append(b, `,"epoch":`...)
	b = AppendString(b, pos.Epoch)
	b = append(b, `,"offset":`...)
	return strconv.AppendUint(b, pos.Offset, 10)
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD, as
// encoding/json does; '<', '>' and '&' are left as they are.
func AppendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
