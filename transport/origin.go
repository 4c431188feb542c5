package transport

import (
	"net"
	"net/http"
	"net/url"
	"strings"
)

// OriginPolicy decides which browser origins may open a WebSocket.
//
// A request without an Origin header (not a browser) and a same-origin
// request are always allowed. When Allowed is empty, origins on loopback
// hosts (localhost, 127.0.0.1, [::1], any scheme and port) and "null" (a
// page opened from a file) are allowed too, so local development works; set
// Allowed in production. "*" in Allowed allows every origin; an entry may
// start with "*." to allow every subdomain, as in "https://*.example.com".
type OriginPolicy struct {
	Allowed []string
}

// Check reports whether r's origin is allowed.
func (p OriginPolicy) Check(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	for _, a := range p.Allowed {
		if a == "*" || matchOrigin(a, origin) {
			return true
		}
	}
	if origin == "null" {
		return len(p.Allowed) == 0
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	return len(p.Allowed) == 0 && isLoopback(u.Hostname())
}

// matchOrigin matches origin against an allowed entry, which may have a
// "*." wildcard for subdomains after its scheme.
func matchOrigin(allowed, origin string) bool {
	if strings.EqualFold(allowed, origin) {
		return true
	}
	scheme, host, ok := strings.Cut(allowed, "://*.")
	if !ok {
		return false
	}
	oscheme, ohost, ok := strings.Cut(origin, "://")
	if !ok || !strings.EqualFold(scheme, oscheme) {
		return false
	}
	return len(ohost) > len(host)+1 && strings.HasSuffix(strings.ToLower(ohost), "."+strings.ToLower(host))
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
