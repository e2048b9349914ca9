// Package origin decides which browser origins may open the relays'
// websockets. Both relays share it so that one --allowed-origins value means
// the same thing on every port.
package origin

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// normalize puts an origin into the form browsers send: scheme and host are
// case-insensitive (RFC 6454) and an Origin header never carries a path, so
// a configured "https://Desktop.example/" must match "https://desktop.example".
func normalize(o string) string {
	return strings.ToLower(strings.TrimRight(strings.TrimSpace(o), "/"))
}

// Validate refuses configured origins that no browser can ever send, so a
// typo fails at start instead of locking every user out: a path, a query,
// user info, a scheme other than http or https, or the scheme's default port
// (browsers leave it out of the Origin header).
func Validate(allowed []string) error {
	for _, o := range allowed {
		if strings.TrimSpace(o) == "" {
			continue // ignored by Checker too
		}
		u, err := url.Parse(strings.TrimSpace(o))
		switch {
		case err != nil || u.Host == "" || u.Opaque != "":
			return fmt.Errorf("origin %q: want scheme://host[:port], e.g. https://desktop.example", o)
		case u.Scheme != "http" && u.Scheme != "https":
			return fmt.Errorf("origin %q: scheme must be http or https", o)
		case u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
			return fmt.Errorf("origin %q: an origin has no user, path, query or fragment", o)
		case (u.Scheme == "https" && u.Port() == "443") || (u.Scheme == "http" && u.Port() == "80"):
			return fmt.Errorf("origin %q: browsers omit the default port, so it can never match; leave it out", o)
		case strings.HasSuffix(u.Host, ":"):
			return fmt.Errorf("origin %q: empty port, so it can never match", o)
		}
	}
	return nil
}

// Checker returns a check that allows the listed origins, or any when the
// list is empty. A request without Origin is let through: only browsers send
// one, and the check exists to stop other sites' pages from opening a stream
// in a user's browser, not to authenticate (that is the token's job).
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
