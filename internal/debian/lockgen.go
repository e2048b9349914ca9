package debian

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"time"
)

// SuiteRef names a suite within an archive ("debian", "bookworm-updates").
type SuiteRef struct {
	Archive string
	Suite   string
}

func (s SuiteRef) String() string { return s.Archive + "/" + s.Suite }

// DefaultSuites are the Debian 12 suites an image is locked against: the
// release, its stable updates and its security updates.
func DefaultSuites() []SuiteRef {
	return []SuiteRef{
		{Archive: "debian", Suite: "bookworm"},
		{Archive: "debian", Suite: "bookworm-updates"},
		{Archive: "debian-security", Suite: "bookworm-security"},
	}
}

// VerifiedSuite is one suite as the archive client hands it over: its
// InRelease checked against the archive's pinned key, and every Packages
// index checked against that Release before it was parsed.
type VerifiedSuite struct {
	Ref     SuiteRef
	Release *Release
	// InReleaseSHA256 is the digest of the InRelease bytes as served.
	InReleaseSHA256 string
	// Indexes holds one parsed index per image architecture.
	Indexes map[string]VerifiedIndex
}

// VerifiedIndex is one Packages index, with the Release entry it matched.
type VerifiedIndex struct {
	File     IndexFile
	Packages []Package
}

// LockInput is everything a lock is computed from. Nothing here touches
// the network: the same verified suites give the same lock anywhere.
type LockInput struct {
	Suites  []VerifiedSuite
	Archs   []string
	Roots   []string
	Exclude []string
	// Now is when the lock is made; it becomes each suite's snapshot
	// timestamp.
	Now time.Time
	// Distribution is recorded in the lock; it defaults to "debian-12".
	Distribution string
}

// NewLock resolves the closure of Roots for each architecture over the
// verified suites and returns the lock, recording which signed Release and
// index each suite's part of it came from.
func NewLock(in LockInput) (*Lock, error) {
	switch {
	case len(in.Suites) == 0:
		return nil, fmt.Errorf("no suites given")
	case len(in.Archs) == 0:
		return nil, fmt.Errorf("no architectures given")
	case len(in.Roots) == 0:
		return nil, fmt.Errorf("no packages to lock")
	case in.Now.IsZero():
		return nil, fmt.Errorf("no reference time (Now)")
	}
	dist := in.Distribution
	if dist == "" {
		dist = "debian-12"
	}
	now := in.Now.UTC()
	refs := make([]SuiteRef, 0, len(in.Suites))
	for _, s := range in.Suites {
		refs = append(refs, s.Ref)
	}
	lock := &Lock{
		Version:       LockVersion,
		Distribution:  dist,
		Architectures: append([]string(nil), in.Archs...),
		Requested:     append([]string(nil), in.Roots...),
		SpecSHA256:    InputsDigest(in.Roots, in.Exclude, refs),
	}
	for _, s := range in.Suites {
		ls := LockSuite{
			Archive:         s.Ref.Archive,
			Suite:           s.Ref.Suite,
			Date:            s.Release.Date.Format(time.RFC3339),
			Snapshot:        now.Format("20060102T150405Z"),
			InReleaseSHA256: s.InReleaseSHA256,
		}
		for _, arch := range in.Archs {
			ix, ok := s.Indexes[arch]
			if !ok {
				return nil, fmt.Errorf("suite %s: no Packages index for %s", s.Ref, arch)
			}
			ls.Indexes = append(ls.Indexes, LockIndex{Architecture: arch, Path: ix.File.Path, SHA256: ix.File.SHA256, Size: ix.File.Size})
		}
		lock.Suites = append(lock.Suites, ls)
	}
	for _, arch := range in.Archs {
		indexes := make([]Index, 0, len(in.Suites))
		for _, s := range in.Suites {
			indexes = append(indexes, Index{Archive: s.Ref.Archive, Suite: s.Ref.Suite, Packages: s.Indexes[arch].Packages})
		}
		u, err := NewUniverse(arch, indexes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", arch, err)
		}
		closure, err := u.Resolve(in.Roots, in.Exclude)
		if err != nil {
			return nil, fmt.Errorf("resolving for %s: %w", arch, err)
		}
		for _, c := range closure {
			lock.Packages = append(lock.Packages, lockedPackage(c, arch))
		}
	}
	lock.Sort()
	if err := lock.Validate(); err != nil {
		return nil, err
	}
	return lock, nil
}

// InputsDigest is the sha256 of what a closure is computed from: the root
// packages, the excluded ones (each as a set: their order in the spec
// changes nothing) and the suites (in order: on equal versions the earlier
// suite wins). A lock records it so a build can tell the lock was made for
// another spec.
func InputsDigest(roots, exclude []string, suites []SuiteRef) string {
	h := sha256.New()
	write := func(kind string, items []string) {
		fmt.Fprintf(h, "%s %d\n", kind, len(items))
		for _, it := range items {
			fmt.Fprintf(h, "%q\n", it)
		}
	}
	sorted := func(s []string) []string {
		s = append([]string(nil), s...)
		sort.Strings(s)
		return s
	}
	write("packages", sorted(roots))
	write("exclude", sorted(exclude))
	refs := make([]string, 0, len(suites))
	for _, s := range suites {
		refs = append(refs, s.String())
	}
	write("suites", refs)
	return hex.EncodeToString(h.Sum(nil))
}

func lockedPackage(c *Candidate, forArch string) LockedPackage {
	return LockedPackage{
		Name:          c.Name,
		Version:       c.Version,
		Architecture:  c.Architecture,
		ForArch:       forArch,
		Archive:       c.Archive,
		Suite:         c.Suite,
		Filename:      c.Filename,
		Size:          c.Size,
		SHA256:        c.SHA256,
		Source:        c.Source,
		SourceVersion: c.SourceVersion,
	}
}

// SourceDateEpoch is the newest suite Date of the lock in Unix seconds: a
// timestamp derived from the inputs, so rebuilding from the same lock gives
// the same image whatever the wall clock says.
func SourceDateEpoch(l *Lock) (int64, error) {
	if len(l.Suites) == 0 {
		return 0, fmt.Errorf("lock lists no suites")
	}
	dates := make([]time.Time, 0, len(l.Suites))
	for _, s := range l.Suites {
		t, err := time.Parse(time.RFC3339, s.Date)
		if err != nil {
			return 0, fmt.Errorf("lock suite %s/%s: date: %w", s.Archive, s.Suite, err)
		}
		dates = append(dates, t)
	}
	sort.Slice(dates, func(i, j int) bool { return dates[i].Before(dates[j]) })
	return dates[len(dates)-1].Unix(), nil
}
