package build

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sort"
	"strings"

	"github.com/pulse-sidecar/pulse-sidecar/internal/debian"
)

// The package layers. A node pulls the layers whose digests it lacks, so
// the split decides what a package update costs: with every package in one
// layer, a libssl3 fix re-pulled the whole 130 MB. The split is a function
// of the lock alone (no previous image, no history), so any build of a
// lock gives the same layers, and it keeps an update's change local:
//
//   - The unit is the source package: one security fix updates all its
//     binaries (openssl -> libssl3, openssl), which then change one layer.
//   - A source whose .debs weigh AloneBytes or more gets a layer of its
//     own (at most MaxAlone of them, the largest; ties by name), so a small
//     update never re-pulls ffmpeg or ICU's data with it.
//   - Every other source goes to one of Buckets layers chosen by a hash of
//     its name, which no other package's name, size or version affects.
//
// A package's files, its /usr/share/doc/<name>/copyright and its dpkg
// status.d entry all sit in its layer. A path several packages ship
// identically goes to the layer of the first of them by name (the tree's
// Origin), so adding or updating another of them leaves it in place.
const (
	AloneBytes = 2_000_000
	MaxAlone   = 12
	Buckets    = 16
)

// packageLayer is one planned layer: a set of source packages.
type packageLayer struct {
	// Key names the layer in its history entry: the source package for a
	// layer of its own, "bucket NN" for a shared one.
	Key      string
	Sources  []string // sorted
	Packages []string // binary package names, sorted
}

// planLayers splits pkgs into package layers, in a fixed order: the
// sources alone by name, then the buckets by number. Empty buckets are
// left out.
func planLayers(pkgs []debian.LockedPackage) []packageLayer {
	size := map[string]int64{}
	bins := map[string][]string{}
	for _, p := range pkgs {
		src := sourceOf(p)
		size[src] += p.Size
		bins[src] = append(bins[src], p.Name)
	}
	var big []string
	for src, n := range size {
		if n >= AloneBytes {
			big = append(big, src)
		}
	}
	sort.Slice(big, func(i, j int) bool {
		if size[big[i]] != size[big[j]] {
			return size[big[i]] > size[big[j]]
		}
		return big[i] < big[j]
	})
	if len(big) > MaxAlone {
		big = big[:MaxAlone]
	}
	sort.Strings(big)
	alone := map[string]bool{}
	var out []packageLayer
	for _, src := range big {
		alone[src] = true
		out = append(out, packageLayer{Key: src, Sources: []string{src}, Packages: sorted(bins[src])})
	}
	buckets := make([]packageLayer, Buckets)
	for src := range size {
		if alone[src] {
			continue
		}
		b := &buckets[bucketOf(src)]
		b.Sources = append(b.Sources, src)
		b.Packages = append(b.Packages, bins[src]...)
	}
	for i, b := range buckets {
		if len(b.Sources) == 0 {
			continue
		}
		b.Key = fmt.Sprintf("bucket %02d", i)
		sort.Strings(b.Sources)
		sort.Strings(b.Packages)
		out = append(out, b)
	}
	return out
}

// sourceOf is the package's source, or its own name when the lock does
// not say (a source named like its binary records none).
func sourceOf(p debian.LockedPackage) string {
	if p.Source != "" {
		return p.Source
	}
	return p.Name
}

// bucketOf hashes a source name to a bucket. SHA-256 rather than a
// runtime hash: the assignment is part of the image and must not change
// with the Go release or the process.
func bucketOf(source string) int {
	h := sha256.Sum256([]byte(source))
	return int(binary.BigEndian.Uint64(h[:8]) % Buckets)
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

// describe is the layer's history entry.
func (l packageLayer) describe() string {
	if len(l.Sources) == 1 && l.Key == l.Sources[0] {
		return fmt.Sprintf("imagectl: Debian source %s: %s", l.Key, strings.Join(l.Packages, " "))
	}
	return fmt.Sprintf("imagectl: Debian packages, %s: %s", l.Key, strings.Join(l.Packages, " "))
}
