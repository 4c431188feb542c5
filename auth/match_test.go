package auth

import "testing"

func TestMatch(t *testing.T) {
	cases := []struct {
		patterns []string
		channel  string
		want     bool
	}{
		{nil, "news", false},
		{[]string{}, "news", false},
		{[]string{"news"}, "news", true},
		{[]string{"news"}, "news2", false},
		{[]string{"news"}, "new", false},
		{[]string{"news"}, "NEWS", false},
		{[]string{"chat:*"}, "chat:lobby", true},
		{[]string{"chat:*"}, "chat:", true},
		{[]string{"chat:*"}, "chat", false},
		{[]string{"chat:*"}, "chatter:lobby", false},
		{[]string{"chat:*"}, "xchat:lobby", false},
		{[]string{"*"}, "anything", true},
		{[]string{"*"}, "", true},
		{[]string{"a*b"}, "axxb", false},
		{[]string{"a*b"}, "a*b", true},
		{[]string{"*:lobby"}, "chat:lobby", false},
		{[]string{"chat:**"}, "chat:*x", true},
		{[]string{"chat:**"}, "chat:x", false},
		{[]string{"news", "chat:*"}, "chat:lobby", true},
		{[]string{"news", "chat:*"}, "sport", false},
		{[]string{""}, "news", false},
	}
	for _, tc := range cases {
		if got := Match(tc.patterns, tc.channel); got != tc.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tc.patterns, tc.channel, got, tc.want)
		}
	}
}
