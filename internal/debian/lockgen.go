package debian

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
)

// SuiteRef names a suite within an archive ("debian", "bookworm-updates").
type SuiteRef struct {
	Archive string
	Suite   string
}

func (s SuiteRef) String() string { return s.Archive + "/" + s.Suite }

// Options are the inputs of ResolveLock.
type Options struct {
	// Mirrors maps an archive name to its base URL (the directory that
	// holds dists/ and pool/).
	Mirrors map[string]string
	Suites  []SuiteRef
	// Component defaults to "main".
	Component string
	Archs     []string
	Roots     []string
	// Exclude lists packages treated as already installed: they satisfy
	// relations but are left out of the closure.
	Exclude []string
	Keyring openpgp.KeyRing
	HTTP    *http.Client
	// Now is when the lock is made: it is checked against Valid-Until and
	// becomes each suite's snapshot timestamp.
	Now time.Time
	// AllowExpired accepts Releases past their Valid-Until (old snapshots).
	AllowExpired bool
	// Distribution is recorded in the lock; it defaults to "debian-12".
	Distribution string
}

func (o *Options) check() error {
	switch {
	case len(o.Suites) == 0:
		return fmt.Errorf("no suites given")
	case len(o.Archs) == 0:
		return fmt.Errorf("no architectures given")
	case len(o.Roots) == 0:
		return fmt.Errorf("no packages to lock")
	case o.Keyring == nil:
		return fmt.Errorf("no keyring to verify InRelease files with")
	case o.Now.IsZero():
		return fmt.Errorf("no reference time (Now)")
	}
	for _, s := range o.Suites {
		if o.Mirrors[s.Archive] == "" {
			return fmt.Errorf("suite %s: no mirror URL for archive %q", s, s.Archive)
		}
	}
	return nil
}

// ResolveLock fetches and verifies every suite's InRelease and Packages
// indexes, resolves the closure of Roots for each architecture and returns
// the lock. Nothing is written; the caller decides where the lock goes.
func ResolveLock(ctx context.Context, opts Options) (*Lock, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	client := opts.HTTP
	if client == nil {
		client = http.DefaultClient
	}
	component := opts.Component
	if component == "" {
		component = "main"
	}
	dist := opts.Distribution
	if dist == "" {
		dist = "debian-12"
	}
	now := opts.Now.UTC()
	lock := &Lock{
		Version:       LockVersion,
		Distribution:  dist,
		Architectures: append([]string(nil), opts.Archs...),
		Requested:     append([]string(nil), opts.Roots...),
	}
	releases := make([]*Release, len(opts.Suites))
	for i, s := range opts.Suites {
		base := opts.Mirrors[s.Archive]
		raw, err := get(ctx, client, suiteURL(base, s.Suite)+"InRelease", maxInRelease)
		if err != nil {
			return nil, fmt.Errorf("suite %s: %w", s, err)
		}
		rel, err := VerifyInRelease(s.String(), raw, opts.Keyring, VerifyOptions{Now: now, AllowExpired: opts.AllowExpired})
		if err != nil {
			return nil, err
		}
		if rel.Suite != s.Suite && rel.Codename != s.Suite {
			// A mirror answering with another suite's Release is a
			// downgrade attack or a misconfiguration; either way stop.
			return nil, fmt.Errorf("suite %s: signed Release is for suite %q (codename %q)", s, rel.Suite, rel.Codename)
		}
		releases[i] = rel
		lock.Suites = append(lock.Suites, LockSuite{
			Archive:  s.Archive,
			Suite:    s.Suite,
			Date:     rel.Date.Format(time.RFC3339),
			Snapshot: now.Format("20060102T150405Z"),
		})
	}
	for _, arch := range opts.Archs {
		var indexes []Index
		for i, s := range opts.Suites {
			pkgs, err := fetchPackages(ctx, client, opts.Mirrors[s.Archive], s.Suite, component, arch, releases[i])
			if err != nil {
				return nil, fmt.Errorf("%s (%s): %w", s, arch, err)
			}
			indexes = append(indexes, Index{Archive: s.Archive, Suite: s.Suite, Packages: pkgs})
		}
		u, err := NewUniverse(arch, indexes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", arch, err)
		}
		closure, err := u.Resolve(opts.Roots, opts.Exclude)
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
