package debian

import (
	"fmt"
	"strconv"
	"strings"
)

// Version is a Debian package version split per Debian policy 5.6.12.
type Version struct {
	Epoch    int
	Upstream string
	Revision string
}

// ParseVersion splits s into epoch, upstream version and revision. It only
// rejects what would make comparison meaningless (an empty upstream part or a
// non-numeric epoch), because real archives carry versions that bend the
// policy's "should" rules and apt still orders them.
func ParseVersion(s string) (Version, error) {
	var v Version
	rest := strings.TrimSpace(s)
	if i := strings.IndexByte(rest, ':'); i >= 0 {
		e, err := strconv.Atoi(rest[:i])
		if err != nil || e < 0 {
			return Version{}, fmt.Errorf("version %q: epoch %q is not a non-negative number", s, rest[:i])
		}
		v.Epoch = e
		rest = rest[i+1:]
	}
	if i := strings.LastIndexByte(rest, '-'); i >= 0 {
		v.Revision = rest[i+1:]
		rest = rest[:i]
	}
	if rest == "" {
		return Version{}, fmt.Errorf("version %q: empty upstream version", s)
	}
	v.Upstream = rest
	return v, nil
}

// String renders the version the way it appears in control files.
func (v Version) String() string {
	var b strings.Builder
	if v.Epoch != 0 {
		b.WriteString(strconv.Itoa(v.Epoch))
		b.WriteByte(':')
	}
	b.WriteString(v.Upstream)
	if v.Revision != "" {
		b.WriteByte('-')
		b.WriteString(v.Revision)
	}
	return b.String()
}

// Compare returns -1, 0 or +1 as v sorts before, equal to or after w.
func (v Version) Compare(w Version) int {
	switch {
	case v.Epoch < w.Epoch:
		return -1
	case v.Epoch > w.Epoch:
		return 1
	}
	if c := compareFragment(v.Upstream, w.Upstream); c != 0 {
		return c
	}
	return compareFragment(v.Revision, w.Revision)
}

// CompareVersions compares two version strings. A string that does not parse
// sorts by plain byte comparison after every valid version, so a broken index
// entry can never win a "highest version" contest by accident.
func CompareVersions(a, b string) int {
	va, errA := ParseVersion(a)
	vb, errB := ParseVersion(b)
	switch {
	case errA != nil && errB != nil:
		return strings.Compare(a, b)
	case errA != nil:
		return -1
	case errB != nil:
		return 1
	}
	return va.Compare(vb)
}

// compareFragment implements the policy's alternating comparison: a run of
// non-digits compared by a modified ASCII order, then a run of digits compared
// numerically, until both strings are used up.
func compareFragment(a, b string) int {
	for a != "" || b != "" {
		// Non-digit run. Comparing character by character with order()
		// handles the end of a run (weight 0) without finding it first.
		for (a != "" && !isDigit(a[0])) || (b != "" && !isDigit(b[0])) {
			ca, cb := charOrder(a), charOrder(b)
			if ca != cb {
				if ca < cb {
					return -1
				}
				return 1
			}
			a, b = a[1:], b[1:]
		}
		var da, db string
		da, a = digitRun(a)
		db, b = digitRun(b)
		if c := compareNumeric(da, db); c != 0 {
			return c
		}
	}
	return 0
}

// charOrder is the weight of the first byte of s within a non-digit run:
// '~' sorts before everything, even the end of the run; letters sort before
// all other characters. A digit or the end of s ends the run (weight 0).
func charOrder(s string) int {
	if s == "" {
		return 0
	}
	c := s[0]
	switch {
	case c == '~':
		return -1
	case isDigit(c):
		return 0
	case isLetter(c):
		return int(c)
	default:
		return int(c) + 256
	}
}

func digitRun(s string) (run, rest string) {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return s[:i], s[i:]
}

// compareNumeric compares decimal digit strings of any length without
// converting them, because upstream versions such as dates overflow int64.
func compareNumeric(a, b string) int {
	a = strings.TrimLeft(a, "0")
	b = strings.TrimLeft(b, "0")
	if len(a) != len(b) {
		if len(a) < len(b) {
			return -1
		}
		return 1
	}
	return strings.Compare(a, b)
}

func isDigit(c byte) bool  { return '0' <= c && c <= '9' }
func isLetter(c byte) bool { return ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') }
