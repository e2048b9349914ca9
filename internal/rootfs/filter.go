package rootfs

import (
	"fmt"
	"path"
	"strings"
)

// DocRules are the documentation drop rules of the image: manuals, info
// pages, translations, lintian overrides and doc-base registrations serve
// nobody in a container without a shell, but the licence of every package
// (usr/share/doc/<package>/copyright) must ship with the binaries.
// A fresh slice is returned each call so callers may extend it.
func DocRules() (drop, keep []string) {
	return []string{
			"/usr/share/doc/**",
			"/usr/share/doc-base/**",
			"/usr/share/info/**",
			"/usr/share/lintian/**",
			"/usr/share/locale/**",
			"/usr/share/man/**",
		}, []string{
			"/usr/share/doc/*/copyright",
		}
}

// PathFilter builds a Filter from drop and keep patterns. Patterns are
// absolute paths; "*", "?" and "[...]" match within one path element (as
// path.Match), and a final "/**" matches the directory itself and
// everything below it. A path is kept when no drop pattern matches it, or
// when a keep pattern matches it or something below it: keep wins, and the
// directories leading to a kept file stay so it keeps its real modes.
// A Filter sees paths only, not types, so a plain file at such an ancestor
// position (usr/share/doc/README) is kept too; Debian puts none there.
func PathFilter(drop, keep []string) (Filter, error) {
	dropP, err := compilePatterns(drop)
	if err != nil {
		return nil, err
	}
	keepP, err := compilePatterns(keep)
	if err != nil {
		return nil, err
	}
	return func(p string) bool {
		elems := strings.Split(strings.Trim(p, "/"), "/")
		dropped := false
		for _, d := range dropP {
			if d.match(elems) {
				dropped = true
				break
			}
		}
		if !dropped {
			return true
		}
		for _, k := range keepP {
			if k.match(elems) || k.matchAncestor(elems) {
				return true
			}
		}
		return false
	}, nil
}

// OnlyFilter keeps the paths the patterns (as PathFilter's) match, and the
// directories leading to them: it restricts one package to the few files
// the image takes from it.
func OnlyFilter(patterns []string) (Filter, error) {
	ps, err := compilePatterns(patterns)
	if err != nil {
		return nil, err
	}
	return func(p string) bool {
		elems := strings.Split(strings.Trim(p, "/"), "/")
		for _, k := range ps {
			if k.match(elems) || k.matchAncestor(elems) {
				return true
			}
		}
		return false
	}, nil
}

type pattern struct {
	elems    []string
	subtree  bool // ended in "/**"
	original string
}

func compilePatterns(ps []string) ([]pattern, error) {
	out := make([]pattern, 0, len(ps))
	for _, p := range ps {
		if !strings.HasPrefix(p, "/") {
			return nil, fmt.Errorf("path pattern %q: must be absolute", p)
		}
		pt := pattern{original: p}
		body := strings.TrimPrefix(p, "/")
		if rest, ok := strings.CutSuffix(body, "/**"); ok {
			pt.subtree, body = true, rest
		}
		pt.elems = strings.Split(body, "/")
		for _, e := range pt.elems {
			if e == "" || e == "." || e == ".." || strings.Contains(e, "**") {
				return nil, fmt.Errorf("path pattern %q: bad element %q", p, e)
			}
			if _, err := path.Match(e, ""); err != nil {
				return nil, fmt.Errorf("path pattern %q: %w", p, err)
			}
		}
		out = append(out, pt)
	}
	return out, nil
}

func (pt pattern) match(elems []string) bool {
	if len(elems) < len(pt.elems) || (!pt.subtree && len(elems) != len(pt.elems)) {
		return false
	}
	return elemsMatch(pt.elems, elems[:len(pt.elems)])
}

// matchAncestor reports whether elems is a proper ancestor of something the
// pattern matches.
func (pt pattern) matchAncestor(elems []string) bool {
	return len(elems) < len(pt.elems) && elemsMatch(pt.elems[:len(elems)], elems)
}

func elemsMatch(pats, elems []string) bool {
	for i, e := range elems {
		if ok, _ := path.Match(pats[i], e); !ok {
			return false
		}
	}
	return true
}
