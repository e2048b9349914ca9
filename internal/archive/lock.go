package archive

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/pulse-sidecar/pulse-sidecar/internal/debian"
	"github.com/pulse-sidecar/pulse-sidecar/internal/fetch"
)

// Client reads the suites of a Debian archive.
type Client struct {
	// Mirrors maps an archive name to its base URL (the directory that
	// holds dists/ and pool/).
	Mirrors map[string]string
	// Keys are the pinned keys, each bound to its archive.
	Keys debian.Keys
	// HTTP is the source of every byte; nil means fetch's defaults.
	HTTP *fetch.Client
	// Progress is told about index downloads; nil for none.
	Progress fetch.Progress
	// Now is checked against Valid-Until, key lifetimes and Release dates.
	Now time.Time
	// AllowExpired accepts Releases past their Valid-Until (old snapshots).
	AllowExpired bool
	// Component defaults to "main".
	Component string
	// Log receives one line per step; nil for none.
	Log io.Writer
}

func (c *Client) http() *fetch.Client {
	if c.HTTP == nil {
		c.HTTP = &fetch.Client{}
	}
	return c.HTTP
}

type nopProgress struct{}

func (nopProgress) Start(int, int64)             {}
func (nopProgress) Add(int64)                    {}
func (nopProgress) Done(fetch.Item, bool, error) {}
func (nopProgress) Finish()                      {}

func (c *Client) progress() fetch.Progress {
	if c.Progress == nil {
		return nopProgress{}
	}
	return c.Progress
}

func (c *Client) logf(format string, args ...any) {
	if c.Log != nil {
		fmt.Fprintf(c.Log, format+"\n", args...)
	}
}

// Freshness says which Release dates a fetch accepts.
type Freshness struct {
	// Previous is the lock being replaced (or compared with): a suite's
	// Release must not be older than the one it recorded. Nil for none.
	Previous *debian.Lock
	// AllowDowngrade names suites ("bookworm") for which an older or
	// future-dated Release is accepted on purpose.
	AllowDowngrade []string
}

// Suites fetches and verifies every suite: first all InRelease files (so
// a bad signature or a replayed Release stops the run before any index is
// downloaded), then each architecture's Packages index.
func (c *Client) Suites(ctx context.Context, refs []debian.SuiteRef, archs []string, fresh Freshness) ([]debian.VerifiedSuite, error) {
	if c.Now.IsZero() {
		return nil, fmt.Errorf("no reference time (Now)")
	}
	if len(refs) == 0 {
		return nil, fmt.Errorf("no suites given")
	}
	component := c.Component
	if component == "" {
		component = "main"
	}
	releases := make([]*release, 0, len(refs))
	for _, ref := range refs {
		r, err := c.fetchRelease(ctx, ref)
		if err != nil {
			return nil, err
		}
		if err := debian.CheckReleaseDate(ref, r.rel, fresh.Previous, c.Now); err != nil {
			if !slices.Contains(fresh.AllowDowngrade, ref.Suite) {
				return nil, err
			}
			c.logf("warning: %v: accepted (--allow-downgrade %s)", err, ref.Suite)
		}
		releases = append(releases, r)
	}
	var total int64
	n := 0
	for _, r := range releases {
		for _, arch := range archs {
			dir := component + "/binary-" + arch + "/"
			for _, name := range indexNames {
				if f, ok := r.rel.SHA256[dir+name]; ok {
					total += f.Size
					n++
					break
				}
			}
		}
	}
	p := c.progress()
	p.Start(n, total)
	defer p.Finish()
	out := make([]debian.VerifiedSuite, 0, len(releases))
	for _, r := range releases {
		vs := debian.VerifiedSuite{Ref: r.ref, Release: r.rel, InReleaseSHA256: r.sha256, Indexes: map[string]debian.VerifiedIndex{}}
		for _, arch := range archs {
			ix, err := c.fetchPackages(ctx, r, component, arch)
			if err != nil {
				return nil, fmt.Errorf("%s (%s): %w", r.ref, arch, err)
			}
			vs.Indexes[arch] = ix
		}
		out = append(out, vs)
	}
	return out, nil
}

// LockOptions are what a lock is made from, besides the client.
type LockOptions struct {
	Suites  []debian.SuiteRef
	Archs   []string
	Roots   []string
	Exclude []string
	Fresh   Freshness
}

// Lock resolves the closure against the current signed archive and
// returns the lock; nothing is written.
func (c *Client) Lock(ctx context.Context, o LockOptions) (*debian.Lock, error) {
	if len(o.Archs) == 0 {
		return nil, fmt.Errorf("no architectures given")
	}
	c.logf("locking %s for %s against %d suites", strings.Join(o.Roots, " "), strings.Join(o.Archs, ","), len(o.Suites))
	suites, err := c.Suites(ctx, o.Suites, o.Archs, o.Fresh)
	if err != nil {
		return nil, err
	}
	return debian.NewLock(debian.LockInput{Suites: suites, Archs: o.Archs, Roots: o.Roots, Exclude: o.Exclude, Now: c.Now})
}

// Outdated compares a lock with the current signed archive: every locked
// package for which a re-lock would pick a newer version. The archive must
// not be older than the lock (a mirror hiding updates by replaying old
// metadata would otherwise report "nothing outdated").
func (c *Client) Outdated(ctx context.Context, l *debian.Lock) ([]debian.Update, error) {
	refs := make([]debian.SuiteRef, 0, len(l.Suites))
	for _, s := range l.Suites {
		refs = append(refs, debian.SuiteRef{Archive: s.Archive, Suite: s.Suite})
	}
	// The lock keeps suites sorted by name; the spec's order only breaks
	// ties between equal versions, which no update report depends on.
	suites, err := c.Suites(ctx, refs, l.Architectures, Freshness{Previous: l})
	if err != nil {
		return nil, err
	}
	return debian.Outdated(l, suites)
}
