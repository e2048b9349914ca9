package debian

import (
	"fmt"
	"sort"
	"strings"
)

// ResolveError is an unsatisfiable dependency with the chain of packages
// that led to it, so the user can see why a package was wanted at all.
type ResolveError struct {
	Chain    []string // root first, ending with the package whose relation failed
	Relation string
	Detail   string
}

func (e *ResolveError) Error() string {
	parts := append(append([]string(nil), e.Chain...), e.Relation)
	return strings.Join(parts, " -> ") + ": " + e.Detail
}

// priorityRank orders the Priority field the way apt prefers providers.
var priorityRank = map[string]int{"required": 0, "important": 1, "standard": 2, "optional": 3, "extra": 4}

func rankOf(p string) int {
	if r, ok := priorityRank[p]; ok {
		return r
	}
	return len(priorityRank)
}

// Resolve computes the Depends and Pre-Depends closure of roots.
//
// Choices follow apt's classic MarkInstall: relations are visited depth
// first in field order (Pre-Depends before Depends); a relation already
// satisfied by a selected package is left alone; otherwise the first
// alternative with a fitting candidate is taken, and a virtual package goes
// to the provider apt would prefer. Packages named in exclude count as
// installed: every relation they (or what they provide) satisfy is
// satisfied, and they are not part of the result.
//
// Recommends, Suggests, Conflicts and Breaks are not considered: the image is
// unpacked, never configured, and holds no packages beyond the closure.
// The result is sorted by name.
func (u *Universe) Resolve(roots, exclude []string) ([]*Candidate, error) {
	r := &resolver{
		u:        u,
		selected: map[string]*Candidate{},
		provided: map[string][]provider{},
		excluded: map[string]bool{},
		// What excluded packages provide counts as installed too, e.g.
		// the perlapi-* virtual package of perl-base.
		excludedVirtual: map[string]bool{},
	}
	for _, name := range exclude {
		r.excluded[name] = true
	}
	for virt, ps := range u.providers {
		for _, p := range ps {
			if r.excluded[p.c.Name] {
				r.excludedVirtual[virt] = true
			}
		}
	}
	for _, name := range roots {
		rel := Relation{{Name: name}}
		if err := r.require(rel, nil); err != nil {
			return nil, err
		}
	}
	out := make([]*Candidate, 0, len(r.selected))
	for _, c := range r.selected {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

type resolver struct {
	u               *Universe
	selected        map[string]*Candidate
	provided        map[string][]provider // virtual name -> selected providers
	excluded        map[string]bool
	excludedVirtual map[string]bool
}

// require makes sure one alternative of rel is installed, selecting and
// descending into a new package when none is. chain is the path from a root
// to the package that declares rel.
func (r *resolver) require(rel Relation, chain []string) error {
	var alts Relation
	for _, d := range rel {
		if d.AppliesTo(r.u.arch) {
			alts = append(alts, d)
		}
	}
	if len(alts) == 0 {
		return nil // every alternative is restricted to other architectures
	}
	for _, d := range alts {
		if r.satisfied(d) {
			return nil
		}
	}
	var why []string
	for _, d := range alts {
		c, reason := r.pick(d)
		if c == nil {
			why = append(why, reason)
			continue
		}
		return r.install(c, chain)
	}
	return &ResolveError{Chain: chain, Relation: rel.String(), Detail: "no candidate (" + strings.Join(why, "; ") + ")"}
}

// install selects c and descends into its relations.
func (r *resolver) install(c *Candidate, chain []string) error {
	r.selected[c.Name] = c
	rels, err := ParseRelations(c.Provides)
	if err != nil {
		return fmt.Errorf("%s %s: Provides: %w", c.Name, c.Version, err)
	}
	for _, rel := range rels {
		for _, d := range rel {
			r.provided[d.Name] = append(r.provided[d.Name], provider{c: c, version: d.Version})
		}
	}
	chain = append(chain[:len(chain):len(chain)], c.Name)
	for _, field := range []struct{ name, value string }{{"Pre-Depends", c.PreDepends}, {"Depends", c.Depends}} {
		rels, err := ParseRelations(field.value)
		if err != nil {
			return fmt.Errorf("%s %s (%s): %s: %w", c.Name, c.Version, c.Suite, field.name, err)
		}
		for _, rel := range rels {
			if err := r.require(rel, chain); err != nil {
				return err
			}
		}
	}
	return nil
}

// satisfied reports whether d is met by what is already selected or excluded.
func (r *resolver) satisfied(d Dependency) bool {
	if r.excluded[d.Name] || r.excludedVirtual[d.Name] {
		return true
	}
	if c, ok := r.selected[d.Name]; ok && r.fits(d, c, c.Version) {
		return true
	}
	for _, p := range r.provided[d.Name] {
		if r.providerFits(d, p) {
			return true
		}
	}
	return false
}

// pick returns the candidate apt would choose for d, or why there is none.
func (r *resolver) pick(d Dependency) (*Candidate, string) {
	reason := d.Name + " is not in any suite"
	if c, ok := r.u.pkgs[d.Name]; ok {
		if r.fits(d, c, c.Version) {
			return c, ""
		}
		reason = fmt.Sprintf("%s has %s %s (%s, Multi-Arch: %s)", c.Suite, c.Name, c.Version, c.Architecture, orNone(c.MultiArch))
	}
	var best *Candidate
	for _, p := range r.u.providers[d.Name] {
		if !r.providerFits(d, p) {
			continue
		}
		if best == nil || betterProvider(p.c, best) {
			best = p.c
		}
	}
	if best != nil {
		return best, ""
	}
	if len(r.u.providers[d.Name]) > 0 && d.Op != OpNone {
		reason += "; no provider offers a version " + string(d.Op) + " " + d.Version
	}
	return nil, reason
}

// betterProvider is apt's preference among providers of a virtual package
// when none is selected yet: essential first, then by Priority, then by name
// so the choice never depends on index order.
func betterProvider(a, b *Candidate) bool {
	if a.Essential != b.Essential {
		return a.Essential
	}
	if ra, rb := rankOf(a.Priority), rankOf(b.Priority); ra != rb {
		return ra < rb
	}
	return a.Name < b.Name
}

// fits checks a real package against a dependency's version and architecture
// qualifier. Every candidate is native or "all": the universe holds one
// architecture, and dpkg treats "all" as native.
func (r *resolver) fits(d Dependency, c *Candidate, version string) bool {
	if !archQualFits(d.ArchQual, r.u.arch, c) {
		return false
	}
	return d.Op.Satisfies(version, d.Version)
}

// providerFits checks a Provides entry: a versioned dependency is met only by
// a versioned Provides (policy 7.5).
func (r *resolver) providerFits(d Dependency, p provider) bool {
	if d.Op != OpNone && p.version == "" {
		return false
	}
	if !archQualFits(d.ArchQual, r.u.arch, p.c) {
		return false
	}
	return d.Op.Satisfies(p.version, d.Version)
}

// archQualFits applies the multiarch rules for a single-architecture system.
// "pkg:any" is met only by a package that declares it may satisfy
// dependencies of any architecture (Multi-Arch: allowed, or foreign, which
// satisfies them regardless); "pkg:native" and "pkg:<image arch>" by any
// candidate, since all of them are native.
func archQualFits(qual, arch string, c *Candidate) bool {
	switch qual {
	case "":
		return true
	case "any":
		return c.MultiArch == "allowed" || c.MultiArch == "foreign"
	case "native":
		return true
	default:
		return qual == arch
	}
}

func orNone(s string) string {
	if s == "" {
		return "no"
	}
	return s
}
