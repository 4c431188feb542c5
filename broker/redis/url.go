package redis

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/redis/rueidis"
)

// parseURL parses Config.URL into rueidis options. Beyond what
// rueidis.ParseURL reads (redis://[[user]:password@]host[:port][/db], rediss://
// for TLS, unix://, and extra seed addresses as ?addr=host:port), it takes
// several comma-separated addresses in the host part, the way Redis
// Cluster users name their seed nodes:
//
//	redis://:secret@10.0.0.1:7000,10.0.0.2:7001,10.0.0.3/0
//
// Every address gets port 6379 when it names none; IPv6 addresses are
// written in brackets ([::1]:7000). The credentials, database, TLS and
// query parameters apply to every address. An empty address (two commas in
// a row, a trailing comma) is an error, not silently skipped. The error
// never repeats the URL, which may hold a password.
func parseURL(s string) (rueidis.ClientOption, error) {
	s = strings.TrimSpace(s)
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || strings.ContainsAny(scheme, "/?#@") {
		return rueidis.ClientOption{}, errors.New("redis: parse URL: want redis://host:port (or rediss://, unix://)")
	}
	if scheme == "unix" {
		return parseOne(s)
	}
	// The authority ends at the first '/', '?' or '#'.
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	userinfo, hosts := "", authority
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		userinfo, hosts = authority[:i+1], authority[i+1:]
	}
	if !strings.Contains(hosts, ",") {
		return parseOne(s)
	}
	parts := strings.Split(hosts, ",")
	addrs := make([]string, 0, len(parts))
	for i, h := range parts {
		h = strings.TrimSpace(h)
		if h == "" {
			return rueidis.ClientOption{}, fmt.Errorf("redis: parse URL: address %d of %d is empty", i+1, len(parts))
		}
		addr, err := hostPort(h)
		if err != nil {
			return rueidis.ClientOption{}, fmt.Errorf("redis: parse URL: address %d of %d: %w", i+1, len(parts), err)
		}
		addrs = append(addrs, addr)
	}
	// The first address stands for all in what rueidis parses (TLS server
	// name, credentials, database); the others are added as seeds.
	opt, err := parseOne(scheme + "://" + userinfo + strings.TrimSpace(parts[0]) + tail)
	if err != nil {
		return opt, err
	}
	extra := opt.InitAddress[1:] // from ?addr=
	opt.InitAddress = append(addrs, extra...)
	return opt, nil
}

// parseOne parses a URL of one address with rueidis.ParseURL, keeping the
// URL (and its password) out of the error.
func parseOne(s string) (rueidis.ClientOption, error) {
	opt, err := rueidis.ParseURL(s)
	if err != nil {
		// url.Error repeats the URL, and with it any password.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return opt, fmt.Errorf("redis: parse URL: %w", err)
	}
	if len(opt.InitAddress) == 0 || opt.InitAddress[0] == "" {
		return opt, errors.New("redis: parse URL: no address")
	}
	return opt, nil
}

// hostPort checks one seed address and gives it the default port 6379 when
// it has none.
func hostPort(h string) (string, error) {
	if strings.ContainsAny(h, "/?#@ \t") {
		return "", fmt.Errorf("bad character in %q", h)
	}
	host, port, err := net.SplitHostPort(h)
	if err != nil {
		// No port: a bare host name, IPv4 address or bracketed IPv6 one.
		host, port = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"), "6379"
		if strings.Contains(host, ":") && !strings.HasPrefix(h, "[") {
			return "", fmt.Errorf("%q: write an IPv6 address in brackets, [::1]:7000", h)
		}
	}
	if host == "" {
		return "", fmt.Errorf("%q has no host", h)
	}
	if strings.ContainsAny(host, "[]") {
		return "", fmt.Errorf("%q: bad brackets", h)
	}
	for _, c := range port {
		if c < '0' || c > '9' {
			return "", fmt.Errorf("%q: bad port", h)
		}
	}
	if port == "" || len(port) > 5 {
		return "", fmt.Errorf("%q: bad port", h)
	}
	return net.JoinHostPort(host, port), nil
}
