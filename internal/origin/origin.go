// Package origin decides which browser origins may open the relays'
// websockets. Both relays share it so that one --allowed-origins value means
// the same thing on every port.
package origin

import (
	"net/http"
	"strings"
)

// normalize puts an origin into the form browsers send: scheme and host are
// case-insensitive (RFC 6454) and an Origin header never carries a path, so
// a configured "https://Desktop.example/" must match "https://desktop.example".
func normalize(o string) string {
	return strings.ToLower(strings.TrimRight(strings.TrimSpace(o), "/"))
}

// Checker returns a websocket CheckOrigin that allows the listed origins, or
// any when the list is empty. A request without Origin is let through: only
// browsers send one, and the check exists to stop other sites' pages from
// opening a stream in a user's browser, not to authenticate (the proxy in
// front checks jwt_token).
func Checker(allowed []string) func(*http.Request) bool {
	set := make(map[string]bool, len(allowed))
	for _, o := range allowed {
		if n := normalize(o); n != "" {
			set[n] = true
		}
	}
	if len(set) == 0 {
		return func(*http.Request) bool { return true }
	}
	return func(req *http.Request) bool {
		o := req.Header.Get("Origin")
		return o == "" || set[normalize(o)]
	}
}
