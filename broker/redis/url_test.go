package redis

import (
	"slices"
	"strings"
	"testing"
)

func TestParseURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		url   string
		addrs []string
		pass  string
		db    int
		bad   bool
	}{
		{url: "redis://127.0.0.1:7000", addrs: []string{"127.0.0.1:7000"}},
		{url: "redis://h", addrs: []string{"h:6379"}},
		{url: "redis://a:7000,b:7001", addrs: []string{"a:7000", "b:7001"}},
		{url: "redis://:s3cret@a:7000,b,[::1]:7002/2", addrs: []string{"a:7000", "b:6379", "[::1]:7002"}, pass: "s3cret", db: 2},
		{url: " redis://a:1, b:2 ?addr=c:3", addrs: []string{"a:1", "b:2", "c:3"}},
		{url: "rediss://u:p@a:1,b:2", addrs: []string{"a:1", "b:2"}, pass: "p"},
		{url: "redis://a:7000?addr=b:7001", addrs: []string{"a:7000", "b:7001"}},
		{url: "redis://a:1,,b:2", bad: true},
		{url: "redis://a:1,", bad: true},
		{url: "redis://a:1,b:x", bad: true},
		{url: "redis://a:1,::1", bad: true},
		{url: "a:7000", bad: true},
		{url: "http://a:1,b:2", bad: true},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			t.Parallel()
			opt, err := parseURL(tc.url)
			if tc.bad {
				if err == nil {
					t.Fatalf("parseURL(%q) = %v, want an error", tc.url, opt.InitAddress)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseURL(%q): %v", tc.url, err)
			}
			if !slices.Equal(opt.InitAddress, tc.addrs) || opt.Password != tc.pass || opt.SelectDB != tc.db {
				t.Errorf("parseURL(%q) = %v %q db %d, want %v %q db %d", tc.url, opt.InitAddress, opt.Password, opt.SelectDB, tc.addrs, tc.pass, tc.db)
			}
		})
	}
}

// FuzzParseURL checks that parseURL never panics, never puts a password
// in its error, and returns at least one address whenever it succeeds.
func FuzzParseURL(f *testing.F) {
	for _, s := range []string{
		"redis://127.0.0.1:7000", "redis://:pw@a:7000,b:7001/0", "rediss://u:p@[::1]:7000,h",
		"redis://a:1,,b", "redis://a?addr=b:2", "unix:///tmp/r.sock", "redis://[::1", "redis://a:1,b:99999",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		opt, err := parseURL(s)
		if err != nil {
			if opt.Password != "" && len(opt.Password) > 3 && strings.Contains(err.Error(), opt.Password) {
				t.Fatalf("the error %q shows the password", err)
			}
			return
		}
		if len(opt.InitAddress) == 0 {
			t.Fatalf("parseURL(%q) succeeded with no address", s)
		}
		if opt.Password != "" && len(opt.Password) > 3 {
			for _, a := range opt.InitAddress {
				if strings.Contains(a, opt.Password) && !strings.Contains(s, a+opt.Password) && strings.Count(s, opt.Password) < 2 {
					t.Fatalf("address %q carries the password", a)
				}
			}
		}
	})
}
