package redis

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/switchboard-rt/switchboard/broker"
)

// posMark starts a pub/sub payload that carries a position, binMark one
// that carries binary data (and a position, zero without history). Both are
// followed by the offset in decimal, a comma, the epoch and a comma, then
// the data.
//
// skipMark starts a payload that names a client to leave out
// (PublishOptions.Skip): the client, a comma, then the payload as above.
const (
	posMark  = '\x01'
	binMark  = '\x02'
	skipMark = '\x03'
)

// encode returns the pub/sub payload of data published without history.
// JSON data is the payload itself, as it always was: JSON never starts
// with either mark, and data that does is prefixed (offset 0, no epoch) so
// that it round-trips. Binary data is always prefixed.
func encode(data []byte, binary bool, skip string) []byte {
	var b []byte
	if skip != "" {
		b = append(append([]byte{skipMark}, skip...), ',')
	}
	switch {
	case binary:
		return append(append(b, binMark, '0', ',', ','), data...)
	case len(data) > 0 && (data[0] == posMark || data[0] == binMark || data[0] == skipMark):
		return append(append(b, posMark, '0', ',', ','), data...)
	case b != nil:
		return append(b, data...)
	}
	return data
}

// decode returns the message a payload received on channel carries.
func decode(channel, payload string) (broker.Message, error) {
	m := broker.Message{Channel: channel}
	if len(payload) > 0 && payload[0] == skipMark {
		skip, rest, ok := strings.Cut(payload[1:], ",")
		if !ok {
			return m, fmt.Errorf("redis: payload on %q: no end to the client to skip", channel)
		}
		m, err := decode(channel, rest)
		m.Skip = skip
		return m, err
	}
	if len(payload) == 0 || (payload[0] != posMark && payload[0] != binMark) {
		m.Data = []byte(payload)
		return m, nil
	}
	m.Binary = payload[0] == binMark
	rest := payload[1:]
	i := strings.IndexByte(rest, ',')
	if i < 0 {
		return m, fmt.Errorf("redis: payload on %q: no offset", channel)
	}
	off, err := strconv.ParseUint(rest[:i], 10, 64)
	if err != nil {
		return m, fmt.Errorf("redis: payload on %q: offset: %w", channel, err)
	}
	rest = rest[i+1:]
	j := strings.IndexByte(rest, ',')
	if j < 0 {
		return m, fmt.Errorf("redis: payload on %q: no epoch", channel)
	}
	m.Pos = broker.Position{Epoch: rest[:j], Offset: off}
	m.Data = []byte(rest[j+1:])
	return m, nil
}

// parseID returns the offset of a stream entry ID "<offset>-0".
func parseID(id string) (uint64, error) {
	ms, _, ok := strings.Cut(id, "-")
	if !ok {
		return 0, fmt.Errorf("redis: stream entry ID %q", id)
	}
	off, err := strconv.ParseUint(ms, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("redis: stream entry ID %q: %w", id, err)
	}
	return off, nil
}
