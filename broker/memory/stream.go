package memory

import (
	"time"

	"github.com/switchboard-rt/switchboard/broker"
)

// stream is one life of a channel's history: the newest messages, in a ring
// that grows as messages come, up to the history size. It is guarded by its
// channel's mu.
type stream struct {
	epoch  string
	offset uint64    // offset of the newest message; 0 before the first
	expiry time.Time // when the history is dropped, unless published to again
	size   int       // capacity of the ring: the channel's HistorySize

	// ring holds the newest len(ring) messages. While len(ring) < size,
	// head is 0 and they are in order; once full, the oldest is ring[head].
	ring []broker.Message
	head int
}

func newStream() *stream { return &stream{epoch: newEpoch()} }

// append records m as the next message, keeping size messages, and returns
// its position.
func (s *stream) append(m broker.Message, size int, expiry time.Time) broker.Position {
	if size != s.size {
		s.resize(size)
	}
	s.offset++
	m.Pos = broker.Position{Epoch: s.epoch, Offset: s.offset}
	m.Skip = "" // history is read by everyone, the sender included
	if len(s.ring) < s.size {
		s.ring = append(s.ring, m)
	} else {
		s.ring[s.head] = m
		s.head = (s.head + 1) % s.size
	}
	s.expiry = expiry
	return m.Pos
}

// resize changes the ring's capacity, keeping the newest messages.
func (s *stream) resize(size int) {
	n := min(len(s.ring), size)
	ring := make([]broker.Message, n, min(size, max(n, 16)))
	for i := range n {
		ring[i] = s.at(len(s.ring) - n + i)
	}
	s.ring, s.head, s.size = ring, 0, size
}

// at returns the i-th oldest message kept.
func (s *stream) at(i int) broker.Message {
	return s.ring[(s.head+i)%len(s.ring)]
}

// oldest returns the offset of the oldest message kept, or offset+1 when
// none is kept.
func (s *stream) oldest() uint64 { return s.offset - uint64(len(s.ring)) + 1 }

// read answers a history request (see Broker.History).
func (s *stream) read(req broker.HistoryRequest) broker.HistoryResult {
	res := broker.HistoryResult{Pos: broker.Position{Epoch: s.epoch, Offset: s.offset}}
	limit := uint64(max(req.Limit, 0))
	var from, to uint64 // offsets of the first and last message returned
	if req.Since != nil {
		since := *req.Since
		if since.Epoch != s.epoch || since.Offset > s.offset || since.Offset+1 < s.oldest() {
			return res
		}
		from = since.Offset + 1
		to = min(s.offset, from+limit-1)
		res.Recovered = to == s.offset
	} else {
		from = max(s.oldest(), s.offset-min(limit, s.offset)+1)
		to = s.offset
	}
	if from > to {
		return res
	}
	first := int(from - s.oldest())
	res.Messages = make([]broker.Message, 0, to-from+1)
	for i := range int(to - from + 1) {
		res.Messages = append(res.Messages, s.at(first+i))
	}
	return res
}
