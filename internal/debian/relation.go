package debian

import (
	"fmt"
	"strings"
)

// Op is a version relation operator.
type Op string

// The operators of Debian policy 7.1. The obsolete "<" and ">" are read as
// "<=" and ">=", which is what dpkg still does with them.
const (
	OpNone Op = ""
	OpLT   Op = "<<"
	OpLE   Op = "<="
	OpEQ   Op = "="
	OpGE   Op = ">="
	OpGT   Op = ">>"
)

// Satisfies reports whether version have satisfies "op want".
func (o Op) Satisfies(have, want string) bool {
	if o == OpNone {
		return true
	}
	c := CompareVersions(have, want)
	switch o {
	case OpLT:
		return c < 0
	case OpLE:
		return c <= 0
	case OpEQ:
		return c == 0
	case OpGE:
		return c >= 0
	case OpGT:
		return c > 0
	}
	return false
}

// Dependency is one alternative of a relation: a package name with an optional
// architecture qualifier, version constraint and restriction lists.
type Dependency struct {
	Name string
	// ArchQual is the text after ':' ("any", "native" or an architecture),
	// empty when the relation has no qualifier.
	ArchQual string
	Op       Op
	Version  string
	// Archs is the "[amd64 !arm64]" restriction list, if any.
	Archs []string
	// Profiles holds the "<!nocheck>" restriction formulas, one per <...> group.
	Profiles [][]string
}

// String renders the dependency the way it appears in a control field,
// without restriction lists (they are already applied where it is printed).
func (d Dependency) String() string {
	s := d.Name
	if d.ArchQual != "" {
		s += ":" + d.ArchQual
	}
	if d.Op != OpNone {
		s += " (" + string(d.Op) + " " + d.Version + ")"
	}
	return s
}

// AppliesTo reports whether the restriction lists keep this alternative for
// a binary build on arch with no build profiles active, the situation of
// every installed system.
func (d Dependency) AppliesTo(arch string) bool {
	if len(d.Archs) > 0 {
		negated := strings.HasPrefix(d.Archs[0], "!")
		match := false
		for _, a := range d.Archs {
			if archMatches(strings.TrimPrefix(a, "!"), arch) {
				match = true
				break
			}
		}
		if match == negated {
			return false
		}
	}
	// Each <...> group is a conjunction; several groups are a disjunction.
	if len(d.Profiles) > 0 {
		held := false
		for _, group := range d.Profiles {
			ok := true
			for _, term := range group {
				// With no profile active, only negated terms hold.
				if !strings.HasPrefix(term, "!") {
					ok = false
					break
				}
			}
			if ok {
				held = true
				break
			}
		}
		if !held {
			return false
		}
	}
	return true
}

// archMatches matches a Debian architecture wildcard against a Linux
// architecture name: "any", "linux-any", "any-<cpu>" and plain names.
func archMatches(pattern, arch string) bool {
	switch pattern {
	case "any", "linux-any", arch, "linux-" + arch, "any-" + arch:
		return true
	}
	return false
}

// Relation is one comma-separated element of a relation field: a list of
// alternatives, any one of which satisfies it.
type Relation []Dependency

// String renders the alternatives joined by " | ".
func (r Relation) String() string {
	parts := make([]string, len(r))
	for i, d := range r {
		parts[i] = d.String()
	}
	return strings.Join(parts, " | ")
}

// ParseRelations parses a Depends-style field. Line breaks count as spaces,
// because the field may be folded over several lines in a control file.
func ParseRelations(field string) ([]Relation, error) {
	var out []Relation
	for _, group := range strings.Split(field, ",") {
		if strings.TrimSpace(group) == "" {
			// Trailing commas occur in the wild and dpkg accepts them.
			continue
		}
		var rel Relation
		for _, alt := range strings.Split(group, "|") {
			d, err := parseDependency(alt)
			if err != nil {
				return nil, fmt.Errorf("relation %q: %w", strings.TrimSpace(group), err)
			}
			rel = append(rel, d)
		}
		out = append(out, rel)
	}
	return out, nil
}

func parseDependency(s string) (Dependency, error) {
	var d Dependency
	p := relScanner{s: s}
	p.skipSpace()
	name := p.until(" \t\r\n(:[<")
	if name == "" {
		return d, fmt.Errorf("missing package name in %q", strings.TrimSpace(s))
	}
	d.Name = name
	if p.eat(':') {
		d.ArchQual = p.until(" \t\r\n([<")
		if d.ArchQual == "" {
			return d, fmt.Errorf("%s: empty architecture qualifier", name)
		}
	}
	p.skipSpace()
	if p.eat('(') {
		p.skipSpace()
		op := p.while("<>=")
		switch op {
		case "<<", "<=", "=", ">=", ">>":
			d.Op = Op(op)
		case "<":
			d.Op = OpLE
		case ">":
			d.Op = OpGE
		default:
			return d, fmt.Errorf("%s: unknown version operator %q", name, op)
		}
		p.skipSpace()
		d.Version = p.until(" \t\r\n)")
		p.skipSpace()
		if d.Version == "" || !p.eat(')') {
			return d, fmt.Errorf("%s: malformed version constraint", name)
		}
		if _, err := ParseVersion(d.Version); err != nil {
			return d, fmt.Errorf("%s: %w", name, err)
		}
	}
	p.skipSpace()
	if p.eat('[') {
		list := p.until("]")
		if !p.eat(']') {
			return d, fmt.Errorf("%s: unterminated architecture list", name)
		}
		d.Archs = strings.Fields(list)
		if err := checkArchList(d.Archs); err != nil {
			return d, fmt.Errorf("%s: %w", name, err)
		}
	}
	for {
		p.skipSpace()
		if !p.eat('<') {
			break
		}
		list := p.until(">")
		if !p.eat('>') {
			return d, fmt.Errorf("%s: unterminated build profile list", name)
		}
		d.Profiles = append(d.Profiles, strings.Fields(list))
	}
	p.skipSpace()
	if !p.done() {
		return d, fmt.Errorf("%s: unexpected %q", name, p.rest())
	}
	return d, nil
}

// checkArchList rejects lists that mix negated and plain entries, which
// policy forbids and whose meaning would be a guess.
func checkArchList(archs []string) error {
	if len(archs) == 0 {
		return fmt.Errorf("empty architecture list")
	}
	neg := strings.HasPrefix(archs[0], "!")
	for _, a := range archs[1:] {
		if strings.HasPrefix(a, "!") != neg {
			return fmt.Errorf("architecture list %v mixes negated and plain entries", archs)
		}
	}
	return nil
}

// relScanner is a cursor over one alternative; the grammar is small enough
// that a hand-written scanner is clearer than a regular expression.
type relScanner struct {
	s string
	i int
}

func (p *relScanner) done() bool   { return p.i >= len(p.s) }
func (p *relScanner) rest() string { return p.s[p.i:] }

func (p *relScanner) skipSpace() {
	for p.i < len(p.s) && strings.IndexByte(" \t\r\n", p.s[p.i]) >= 0 {
		p.i++
	}
}

func (p *relScanner) eat(c byte) bool {
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *relScanner) until(stop string) string {
	start := p.i
	for p.i < len(p.s) && strings.IndexByte(stop, p.s[p.i]) < 0 {
		p.i++
	}
	return p.s[start:p.i]
}

func (p *relScanner) while(set string) string {
	start := p.i
	for p.i < len(p.s) && strings.IndexByte(set, p.s[p.i]) >= 0 {
		p.i++
	}
	return p.s[start:p.i]
}
