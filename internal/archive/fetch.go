package archive

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/pulse-sidecar/pulse-sidecar/internal/debian"
	"github.com/pulse-sidecar/pulse-sidecar/internal/fetch"
)

// Size caps for what is read from a mirror. They are far above today's
// sizes (bookworm's amd64 Packages is ~45 MB uncompressed) and exist so a
// misbehaving server cannot exhaust memory.
const (
	maxInRelease    = 16 << 20
	maxIndex        = 256 << 20
	maxIndexDecoded = 1 << 30
)

// suiteURL is the dists/<suite>/ directory of a suite on a mirror.
func suiteURL(base, suite string) string {
	return strings.TrimSuffix(base, "/") + "/dists/" + suite + "/"
}

// release is one suite's verified InRelease.
type release struct {
	ref    debian.SuiteRef
	base   string
	rel    *debian.Release
	sha256 string
}

// fetchRelease downloads a suite's InRelease and verifies it against the
// keys bound to the suite's archive.
func (c *Client) fetchRelease(ctx context.Context, ref debian.SuiteRef) (*release, error) {
	base := c.Mirrors[ref.Archive]
	if base == "" {
		return nil, fmt.Errorf("suite %s: no mirror URL for archive %q", ref, ref.Archive)
	}
	ring, err := c.Keys.For(ref.Archive)
	if err != nil {
		return nil, fmt.Errorf("suite %s: %w", ref, err)
	}
	raw, err := c.http().Get(ctx, suiteURL(base, ref.Suite)+"InRelease", maxInRelease)
	if err != nil {
		return nil, fmt.Errorf("suite %s: %w", ref, err)
	}
	rel, err := debian.VerifyInRelease(ref.String(), raw, ring, debian.VerifyOptions{Now: c.Now, AllowExpired: c.AllowExpired})
	if err != nil {
		return nil, err
	}
	if rel.Suite != ref.Suite && rel.Codename != ref.Suite {
		// A mirror answering with another suite's Release is a
		// downgrade attack or a misconfiguration; either way stop.
		return nil, fmt.Errorf("suite %s: signed Release is for suite %q (codename %q)", ref, rel.Suite, rel.Codename)
	}
	sum := sha256.Sum256(raw)
	return &release{ref: ref, base: base, rel: rel, sha256: hex.EncodeToString(sum[:])}, nil
}

// indexNames are the forms of a Packages index in the order they are tried:
// smallest download first, plain last since current archives no longer
// serve it.
var indexNames = []string{"Packages.xz", "Packages.gz", "Packages"}

// indexItem is the download of one form of an index, pinned by the
// signed Release.
func indexItem(r *release, want debian.IndexFile, dir string) fetch.Item {
	url := suiteURL(r.base, r.ref.Suite) + want.Path
	if r.rel.AcquireByHash {
		// The by-hash name is immutable, so the file cannot change
		// between reading Release and reading the index.
		url = suiteURL(r.base, r.ref.Suite) + dir + "by-hash/SHA256/" + want.SHA256
	}
	return fetch.Item{Name: r.ref.Suite + " " + want.Path, SHA256: want.SHA256, Size: want.Size, URLs: []string{url}}
}

// fetchPackages downloads the Packages index of one component and
// architecture, checks it against the signed Release and parses it.
func (c *Client) fetchPackages(ctx context.Context, r *release, component, arch string) (debian.VerifiedIndex, error) {
	suite := r.ref.Suite
	dir := component + "/binary-" + arch + "/"
	var tried []string
	for _, name := range indexNames {
		want, ok := r.rel.SHA256[dir+name]
		if !ok {
			continue // not published in this form
		}
		if want.Size > maxIndex {
			return debian.VerifiedIndex{}, fmt.Errorf("%s %s: Release says %d bytes, more than the %d this client reads", suite, want.Path, want.Size, maxIndex)
		}
		it := indexItem(r, want, dir)
		data, err := c.http().Bytes(ctx, it, c.Progress)
		if errors.Is(err, fetch.ErrNotFound) {
			tried = append(tried, want.Path)
			continue
		}
		c.progress().Done(it, false, err)
		if err != nil {
			return debian.VerifiedIndex{}, fmt.Errorf("suite %s: %w", suite, err)
		}
		// Checked again here, where the bytes are parsed, so the parser
		// never depends on what the transport promised.
		if err := debian.VerifyIndexFile(suite, want, data); err != nil {
			return debian.VerifiedIndex{}, err
		}
		plain, err := debian.Decompress(want.Path, data, maxIndexDecoded)
		if err != nil {
			return debian.VerifiedIndex{}, fmt.Errorf("suite %s: %w", suite, err)
		}
		pkgs, err := debian.ParsePackages("suite "+suite+" "+want.Path, plain)
		if err != nil {
			return debian.VerifiedIndex{}, err
		}
		return debian.VerifiedIndex{File: want, Packages: pkgs}, nil
	}
	if len(tried) == 0 {
		return debian.VerifiedIndex{}, fmt.Errorf("suite %s: Release lists no Packages index for %s", suite, dir)
	}
	return debian.VerifiedIndex{}, fmt.Errorf("suite %s: no Packages index found on the mirror (tried %s)", suite, strings.Join(tried, ", "))
}
