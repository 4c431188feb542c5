package nats

import (
	"encoding/base32"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// tokenEncoding writes channel names that are not safe NATS tokens: the
// base32 "extended hex" alphabet in lower case, without padding, whose
// characters are valid in subjects, stream names and KV keys alike.
var tokenEncoding = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

// encodedMark starts every encoded token. It is not a safe character, so
// a token that starts with it was encoded and one that does not was not.
const encodedMark = '='

// safe reports whether c may appear in a channel's token as it is: a
// letter, a digit, '-' or '_'. These are valid in a NATS subject token,
// a stream name and a KV key, and mean nothing special in any of them.
func safe(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

// encodeToken returns the one subject token that names channel: the name
// itself when every byte of it is safe, and otherwise '=' followed by the
// base32 of its bytes ("chat:room.1" -> "=cdk62t1qe9nmur9e64"). Every
// channel name, even the empty one, has a token, and decodeToken undoes
// encodeToken.
func encodeToken(channel string) string {
	plain := channel != ""
	for i := 0; i < len(channel) && plain; i++ {
		plain = safe(channel[i])
	}
	if plain {
		return channel
	}
	return string(encodedMark) + tokenEncoding.EncodeToString([]byte(channel))
}

// errToken is wrapped by the error of a token that encodeToken cannot
// have written.
var errToken = errors.New("nats: not a channel token")

// decodeToken returns the channel that token names (see encodeToken).
func decodeToken(token string) (string, error) {
	if rest, ok := strings.CutPrefix(token, string(encodedMark)); ok {
		b, err := tokenEncoding.DecodeString(rest)
		if err != nil {
			return "", fmt.Errorf("%w: %q: %w", errToken, token, err)
		}
		return string(b), nil
	}
	if token == "" {
		return "", fmt.Errorf("%w: empty", errToken)
	}
	for i := 0; i < len(token); i++ {
		if !safe(token[i]) {
			return "", fmt.Errorf("%w: %q", errToken, token)
		}
	}
	return token, nil
}

// validPrefix reports whether p can start every name the broker uses: a
// non-empty run of safe characters.
func validPrefix(p string) bool {
	if p == "" {
		return false
	}
	for i := 0; i < len(p); i++ {
		if !safe(p[i]) {
			return false
		}
	}
	return true
}

// namespace names every subject, stream and KV bucket the broker uses; no
// name is built anywhere else. Every name starts with the prefix, so that
// several applications can share one NATS, and carries channels as one
// token each (encodeToken).
//
// With prefix "sb", channel c (token t):
//
//	sb.l.t               the subject every node subscribes to for c: every
//	                     message of c, as its stream republishes it
//	sb.p.t               the subject c's messages are published to when c
//	                     keeps no history, in the stream sb_live
//	sb.h.<size>_<ms>.t   the subject of c's history, in the stream
//	                     sb_h_<size>_<ms> of every channel keeping <size>
//	                     messages for <ms> milliseconds
//	sb_presence          the KV bucket of presence, one key (t) per channel
//	sb_nodes             the KV bucket of nodes' channel counts
type namespace struct {
	prefix string
}

func (n namespace) live(channel string) string { return n.prefix + ".l." + encodeToken(channel) }

// liveAll matches every live subject.
func (n namespace) liveAll() string { return n.prefix + ".l.>" }

// group is a class of channels that keep the same history: one stream.
type group struct {
	size int           // messages kept per channel
	ttl  time.Duration // how long each message is kept, whole milliseconds
}

func (g group) id() string {
	return strconv.Itoa(g.size) + "_" + strconv.FormatInt(g.ttl.Milliseconds(), 10)
}

// parseGroup reads a group's id (see group.id).
func parseGroup(id string) (group, bool) {
	s, ms, ok := strings.Cut(id, "_")
	if !ok {
		return group{}, false
	}
	size, err1 := strconv.Atoi(s)
	t, err2 := strconv.ParseInt(ms, 10, 64)
	if err1 != nil || err2 != nil || size <= 0 || t <= 0 {
		return group{}, false
	}
	return group{size: size, ttl: time.Duration(t) * time.Millisecond}, true
}

// publish is the subject a message of a channel without history is
// published to, in the live stream, which republishes it to live.
func (n namespace) publish(channel string) string { return n.prefix + ".p." + encodeToken(channel) }
func (n namespace) publishAll() string            { return n.prefix + ".p.>" }
func (n namespace) liveStream() string            { return n.prefix + "_live" }

func (n namespace) stream(g group) string { return n.prefix + "_h_" + g.id() }

// streamPrefix starts the name of every history stream; groupOf reads the
// group of one.
func (n namespace) streamPrefix() string { return n.prefix + "_h_" }

func (n namespace) groupOf(stream string) (group, bool) {
	id, ok := strings.CutPrefix(stream, n.streamPrefix())
	if !ok {
		return group{}, false
	}
	return parseGroup(id)
}

func (n namespace) historyAll(g group) string { return n.prefix + ".h." + g.id() + ".>" }
func (n namespace) history(g group, channel string) string {
	return n.prefix + ".h." + g.id() + "." + encodeToken(channel)
}

func (n namespace) presenceBucket() string { return n.prefix + "_presence" }
func (n namespace) nodesBucket() string    { return n.prefix + "_nodes" }
