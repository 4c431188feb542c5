package nats

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestTokenRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		channel, token string
	}{
		{"chat", "chat"},
		{"Room_1-a", "Room_1-a"},
		{"", "="},
		{"chat:room.1", "=cdk62t1qe9nmur9e64"},
		{"a.b", ""},
		{"a*b>c d", ""},
		{"=x", ""},
		{"ünï", ""},
		{"\x00\xff", ""},
	}
	for _, tc := range tests {
		t.Run(tc.channel, func(t *testing.T) {
			t.Parallel()
			tok := encodeToken(tc.channel)
			if tc.token != "" && tok != tc.token {
				t.Errorf("encodeToken(%q) = %q, want %q", tc.channel, tok, tc.token)
			}
			checkToken(t, tc.channel, tok)
		})
	}
}

func TestDecodeTokenRejects(t *testing.T) {
	t.Parallel()
	for _, tok := range []string{"", "a.b", "a b", "=!", "=a=", "x*"} {
		if c, err := decodeToken(tok); err == nil {
			t.Errorf("decodeToken(%q) = %q, want an error", tok, c)
		}
	}
}

// checkToken fails t unless tok is a valid subject token and KV key that
// decodes back to channel.
func checkToken(t *testing.T, channel, tok string) {
	t.Helper()
	if tok == "" || strings.ContainsAny(tok, ".*> \t\r\n") || !utf8.ValidString(tok) {
		t.Fatalf("encodeToken(%q) = %q: not a subject token", channel, tok)
	}
	for i := 0; i < len(tok); i++ {
		if c := tok[i]; !safe(c) && c != encodedMark {
			t.Fatalf("encodeToken(%q) = %q: %q is not valid in a KV key", channel, tok, c)
		}
	}
	got, err := decodeToken(tok)
	if err != nil || got != channel {
		t.Fatalf("decodeToken(encodeToken(%q)) = %q, %v", channel, got, err)
	}
}

func FuzzToken(f *testing.F) {
	for _, s := range []string{"", "chat", "chat:room.1", "a.b*c>", "=", "=abc", "ünï", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, channel string) {
		checkToken(t, channel, encodeToken(channel))
		// Any token decodeToken accepts encodes back to a token naming the
		// same channel.
		if c, err := decodeToken(channel); err == nil {
			checkToken(t, c, encodeToken(c))
		}
	})
}

func TestGroupRoundTrip(t *testing.T) {
	t.Parallel()
	ns := namespace{prefix: "app"}
	g := group{size: 100, ttl: 1500 * 1e6}
	got, ok := ns.groupOf(ns.stream(g))
	if !ok || got != g {
		t.Fatalf("groupOf(%q) = %+v, %v", ns.stream(g), got, ok)
	}
	if _, ok := ns.groupOf("other_h_1_1"); ok {
		t.Fatal("groupOf accepted another prefix's stream")
	}
}
