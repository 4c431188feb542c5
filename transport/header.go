package transport

import (
	"net/http"
	"strings"
)

// headerHasToken reports whether a comma-separated header holds token,
// case-insensitively (Connection: keep-alive, Upgrade).
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for part := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(part), token) {
				return true
			}
		}
	}
	return false
}
