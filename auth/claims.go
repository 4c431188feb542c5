package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboard-rt/switchboard/protocol"
)

// Claims are the claims of a verified token that the server uses.
type Claims struct {
	// Subject is the "sub" claim: who the client is. Never empty.
	Subject string
	// Expires is the "exp" claim.
	Expires time.Time
	// NotBefore is the "nbf" claim; zero when absent.
	NotBefore time.Time
	// IssuedAt is the "iat" claim; zero when absent.
	IssuedAt time.Time
	// Channels is the "channels" claim: the patterns of the channels the
	// client may subscribe to (see Match).
	Channels []string
	// Publish is the "publish" claim: the patterns of the channels the
	// client may publish to (see Match).
	Publish []string
	// Info is the "info" claim, a JSON object the server passes on to other
	// clients (in presence, for instance); nil when absent.
	Info json.RawMessage
	// Channel is the "channel" claim of a subscription token: the channel
	// the token grants. Empty in a connection token.
	Channel string
}

// wireClaims is the JSON form of a token's claims, as the JWT library
// validates it.
type wireClaims struct {
	jwt.RegisteredClaims
	Channels []string        `json:"channels,omitempty"`
	Publish  []string        `json:"publish,omitempty"`
	Info     json.RawMessage `json:"info,omitempty"`
	Channel  string          `json:"channel,omitempty"`
}

// UnmarshalJSON decodes the claims a token carries. Unlike encoding/json's
// struct decoding it matches claim names exactly, so that "SUB" is not taken
// for "sub", and it requires "info" to be an object.
func (w *wireClaims) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	fields := [...]struct {
		name string
		dst  any
	}{
		{"iss", &w.Issuer},
		{"sub", &w.Subject},
		{"aud", &w.Audience},
		{"exp", &w.ExpiresAt},
		{"nbf", &w.NotBefore},
		{"iat", &w.IssuedAt},
		{"jti", &w.ID},
		{"channels", &w.Channels},
		{"publish", &w.Publish},
		{"channel", &w.Channel},
	}
	for _, f := range fields {
		raw, ok := m[f.name]
		if !ok {
			continue
		}
		if err := json.Unmarshal(raw, f.dst); err != nil {
			return &claimTypeError{claim: f.name, err: err}
		}
	}
	if raw, ok := m["info"]; ok && !isNull(raw) {
		if !isObject(raw) {
			return &claimTypeError{claim: "info", err: errors.New("not a JSON object")}
		}
		w.Info = raw
	}
	return nil
}

// Validate checks the claims that the JWT library's validator cannot be
// told to require. The parser calls it after its own checks.
func (w *wireClaims) Validate() error {
	if w.Subject == "" {
		return errSubject
	}
	return nil
}

// claims returns the verified claims in the form callers use.
func (w *wireClaims) claims() *Claims {
	c := &Claims{
		Subject:  w.Subject,
		Channels: w.Channels,
		Publish:  w.Publish,
		Info:     w.Info,
		Channel:  w.Channel,
	}
	if w.ExpiresAt != nil {
		c.Expires = w.ExpiresAt.Time
	}
	if w.NotBefore != nil {
		c.NotBefore = w.NotBefore.Time
	}
	if w.IssuedAt != nil {
		c.IssuedAt = w.IssuedAt.Time
	}
	return c
}

func isNull(raw json.RawMessage) bool {
	return bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

// isObject reports whether raw, which is valid JSON, is an object.
func isObject(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) > 0 && t[0] == '{'
}

// minSecret is the shortest HMAC secret New and Sign accept: the output
// size of SHA-256, as RFC 7518 section 3.2 requires for HS256.
const minSecret = 32

// Sign returns a token with the claims c, signed with the HMAC secret. alg
// is "HS256", "HS384" or "HS512". Zero times and empty fields of c are left
// out of the token. Sign is meant for tests and for development tools; it
// does not check that the token would pass Verify.
func Sign(secret []byte, alg string, c Claims) (string, error) {
	var method jwt.SigningMethod
	switch alg {
	case "HS256":
		method = jwt.SigningMethodHS256
	case "HS384":
		method = jwt.SigningMethodHS384
	case "HS512":
		method = jwt.SigningMethodHS512
	default:
		return "", fmt.Errorf("auth: Sign: algorithm %q is not HS256, HS384 or HS512", alg)
	}
	if len(secret) < minSecret {
		return "", fmt.Errorf("auth: Sign: the secret is shorter than %d bytes", minSecret)
	}
	if c.Info != nil && (!json.Valid(c.Info) || !isObject(c.Info)) {
		return "", errors.New("auth: Sign: Info is not a JSON object")
	}
	wc := wireClaims{
		RegisteredClaims: jwt.RegisteredClaims{Subject: c.Subject},
		Channels:         c.Channels,
		Publish:          c.Publish,
		Info:             c.Info,
		Channel:          c.Channel,
	}
	if !c.Expires.IsZero() {
		wc.ExpiresAt = jwt.NewNumericDate(c.Expires)
	}
	if !c.NotBefore.IsZero() {
		wc.NotBefore = jwt.NewNumericDate(c.NotBefore)
	}
	if !c.IssuedAt.IsZero() {
		wc.IssuedAt = jwt.NewNumericDate(c.IssuedAt)
	}
	s, err := jwt.NewWithClaims(method, &wc).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("auth: Sign: %w", err)
	}
	return s, nil
}

// Match reports whether channel matches one of the patterns. A pattern is
// either a channel name, which matches only itself, or a prefix followed by
// "*", which matches every channel that starts with the prefix: "chat:*"
// matches "chat:lobby" and "chat:", and "*" matches every channel. A "*"
// anywhere but at the end of a pattern is an ordinary character.
func Match(patterns []string, channel string) bool { return protocol.MatchChannel(patterns, channel) }
