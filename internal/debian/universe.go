package debian

import (
	"fmt"
	"sort"
)

// Index is the parsed Packages index of one suite and architecture.
type Index struct {
	Archive  string // "debian" or "debian-security"
	Suite    string
	Packages []Package
}

// Candidate is the version of a package apt would install: the highest
// version across all suites, with where it came from.
type Candidate struct {
	Package
	Archive string
	Suite   string
}

// provider is a candidate offering a virtual package, with the version it
// provides ("" for an unversioned Provides).
type provider struct {
	c       *Candidate
	version string
}

// Universe is the merged package set of several suites for one image
// architecture, one candidate per package name.
type Universe struct {
	arch      string
	pkgs      map[string]*Candidate
	providers map[string][]provider
}

// NewUniverse merges indexes into one candidate per name for arch. The
// highest version wins, as with apt's default pins; on equal versions the
// earlier index wins, so the result does not depend on map order.
func NewUniverse(arch string, indexes []Index) (*Universe, error) {
	u := &Universe{arch: arch, pkgs: map[string]*Candidate{}, providers: map[string][]provider{}}
	for _, ix := range indexes {
		for i := range ix.Packages {
			p := &ix.Packages[i]
			if p.Architecture != arch && p.Architecture != "all" {
				continue
			}
			if old, ok := u.pkgs[p.Name]; ok && CompareVersions(p.Version, old.Version) <= 0 {
				continue
			}
			u.pkgs[p.Name] = &Candidate{Package: *p, Archive: ix.Archive, Suite: ix.Suite}
		}
	}
	names := make([]string, 0, len(u.pkgs))
	for name, c := range u.pkgs {
		if c.Provides != "" {
			names = append(names, name)
		}
	}
	// Providers are recorded in name order so every later choice among
	// them is deterministic.
	sort.Strings(names)
	for _, name := range names {
		c := u.pkgs[name]
		rels, err := ParseRelations(c.Provides)
		if err != nil {
			return nil, fmt.Errorf("%s %s (%s): Provides: %w", c.Name, c.Version, c.Suite, err)
		}
		for _, rel := range rels {
			for _, d := range rel {
				if d.Op != OpNone && d.Op != OpEQ {
					return nil, fmt.Errorf("%s %s (%s): Provides %s: only \"=\" is allowed", c.Name, c.Version, c.Suite, d)
				}
				u.providers[d.Name] = append(u.providers[d.Name], provider{c: c, version: d.Version})
			}
		}
	}
	return u, nil
}

// Candidate returns the candidate for a package name.
func (u *Universe) Candidate(name string) (*Candidate, bool) {
	c, ok := u.pkgs[name]
	return c, ok
}

// Len is the number of package names with a candidate.
func (u *Universe) Len() int { return len(u.pkgs) }
