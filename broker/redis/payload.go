package redis

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/switchboard-rt/switchboard/broker"
)

// posMark starts a pub/sub payload that carries a position.
const posMark = '\x01'

// encodePlain returns the payload of data published without history.
func encodePlain(data []byte) []byte {
	if len(data) > 0 && data[0] == posMark {
		return append([]byte{posMark, '0', ',', ','}, data...)
	}
	return data
}

// decode returns the message a payload received on channel carries.
func decode(channel, payload string) (broker.Message, error) {
	m := broker.Message{Channel: channel}
	if len(payload) == 0 || payload[0] != posMark {
		m.Data = []byte(payload)
		return m, nil
	}
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
