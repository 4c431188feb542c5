package protocol

import (
	"errors"
	"strings"
)

// MaxChannelLen is the longest valid channel name, in bytes.
const MaxChannelLen = 200

// Errors returned by ValidateChannel.
var (
	ErrChannelEmpty   = errors.New("protocol: channel name is empty")
	ErrChannelTooLong = errors.New("protocol: channel name is longer than 200 characters")
	ErrChannelChars   = errors.New("protocol: channel name has a character that is not allowed")
)

// channelChars marks the bytes allowed in a channel name.
var channelChars = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "_-=@,.;:" {
		t[c] = true
	}
	return t
}()

// ValidateChannel reports whether name is a valid channel name: 1 to 200
// characters of A-Z a-z 0-9 _ - = @ , . ; :. Such a name never needs escaping
// in JSON, a URL path or a Redis key.
func ValidateChannel(name string) error {
	if name == "" {
		return ErrChannelEmpty
	}
	if len(name) > MaxChannelLen {
		return ErrChannelTooLong
	}
	for i := 0; i < len(name); i++ {
		if !channelChars[name[i]] {
			return ErrChannelChars
		}
	}
	return nil
}

// Namespace returns the namespace of a channel: the part before its first
// ':', or "" (the default namespace) when it has none.
func Namespace(channel string) string {
	ns, _, found := strings.Cut(channel, ":")
	if !found {
		return ""
	}
	return ns
}

// MatchChannel reports whether channel matches one of the patterns a token
// grants: an exact name, or a prefix ending in "*" ("chat:*" matches
// "chat:lobby"; "*" matches every channel).
func MatchChannel(patterns []string, channel string) bool {
	for _, p := range patterns {
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			if strings.HasPrefix(channel, prefix) {
				return true
			}
		} else if p == channel {
			return true
		}
	}
	return false
}
