// Package imgdiff compares two images semantically: config fields, then
// files by path, so a reproducibility failure reads as "this file changed",
// not as two unrelated layer digests.
package imgdiff

import (
	"fmt"
	"sort"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Options tune what counts as a difference.
type Options struct {
	// IgnoreTimestamps still reports mtimes, created and history dates, and
	// the layer digests they perturb, but does not count them: the images
	// are then equal when their content, modes and owners are.
	IgnoreTimestamps bool
	// PerLayer also compares layer i of A with layer i of B, which tells
	// which layer a difference was introduced in.
	PerLayer bool
}

// Result is everything that differs between A and B.
type Result struct {
	A      Digests      `json:"a"`
	B      Digests      `json:"b"`
	Config []FieldDiff  `json:"config,omitempty"`
	Files  []FileDiff   `json:"files,omitempty"`
	Layers []LayerDiffs `json:"layers,omitempty"`
}

// Digests identify one side.
type Digests struct {
	Manifest string `json:"manifest"`
	Config   string `json:"config"`
}

// FieldDiff is one manifest or config field with differing values,
// rendered as JSON so any field type compares and prints the same way.
type FieldDiff struct {
	Field   string `json:"field"`
	A       string `json:"a,omitempty"`
	B       string `json:"b,omitempty"`
	Ignored bool   `json:"ignored,omitempty"`
}

// FileDiff is one path present on one side only, or on both with differing
// attributes.
type FileDiff struct {
	Path    string   `json:"path"`
	Kind    string   `json:"kind"` // added (only in B), removed (only in A), changed
	A       *File    `json:"a,omitempty"`
	B       *File    `json:"b,omitempty"`
	Changes []Change `json:"changes,omitempty"`
	Ignored bool     `json:"ignored,omitempty"` // only ignored attributes differ
}

// Change is one attribute of a file that differs.
type Change struct {
	Attr    string `json:"attr"`
	A       string `json:"a"`
	B       string `json:"b"`
	Ignored bool   `json:"ignored,omitempty"`
}

// LayerDiffs are the file differences inside one layer index.
type LayerDiffs struct {
	Index int        `json:"index"`
	A     string     `json:"a,omitempty"` // layer digest, empty when the side has no such layer
	B     string     `json:"b,omitempty"`
	Files []FileDiff `json:"files,omitempty"`
}

// Identical reports whether nothing that counts differs.
func (r *Result) Identical() bool {
	for _, f := range r.Config {
		if !f.Ignored {
			return false
		}
	}
	for _, f := range r.Files {
		if !f.Ignored {
			return false
		}
	}
	for _, l := range r.Layers {
		for _, f := range l.Files {
			if !f.Ignored {
				return false
			}
		}
	}
	return true
}

// ExitCode is what a diff command exits with: 0 identical, 1 different.
func (r *Result) ExitCode() int {
	if r.Identical() {
		return 0
	}
	return 1
}

// Diff compares a and b. Equal manifest digests mean equal images, so that
// case reads no layer at all.
func Diff(a, b v1.Image, opts Options) (*Result, error) {
	var r Result
	var err error
	if r.A, err = digests(a); err != nil {
		return nil, fmt.Errorf("image A: %w", err)
	}
	if r.B, err = digests(b); err != nil {
		return nil, fmt.Errorf("image B: %w", err)
	}
	if r.A.Manifest == r.B.Manifest {
		return &r, nil
	}
	if r.Config, err = diffConfig(a, b, opts); err != nil {
		return nil, err
	}
	sa, err := ScanImage(a, nil)
	if err != nil {
		return nil, fmt.Errorf("image A: %w", err)
	}
	sb, err := ScanImage(b, nil)
	if err != nil {
		return nil, fmt.Errorf("image B: %w", err)
	}
	r.Files = diffFiles(sa.Files, sb.Files, opts)
	if opts.PerLayer {
		if r.Layers, err = diffLayers(a, b, sa, sb, opts); err != nil {
			return nil, err
		}
	}
	return &r, nil
}

func digests(img v1.Image) (Digests, error) {
	m, err := img.Digest()
	if err != nil {
		return Digests{}, fmt.Errorf("manifest digest: %w", err)
	}
	c, err := img.ConfigName()
	if err != nil {
		return Digests{}, fmt.Errorf("config digest: %w", err)
	}
	return Digests{Manifest: m.String(), Config: c.String()}, nil
}

func diffLayers(a, b v1.Image, sa, sb *Scan, opts Options) ([]LayerDiffs, error) {
	la, err := a.Layers()
	if err != nil {
		return nil, fmt.Errorf("image A: %w", err)
	}
	lb, err := b.Layers()
	if err != nil {
		return nil, fmt.Errorf("image B: %w", err)
	}
	var out []LayerDiffs
	for i := 0; i < max(len(la), len(lb)); i++ {
		ld := LayerDiffs{Index: i}
		var fa, fb []File
		if i < len(la) {
			d, err := la[i].Digest()
			if err != nil {
				return nil, fmt.Errorf("image A layer %d: %w", i, err)
			}
			ld.A, fa = d.String(), sa.Layers[i]
		}
		if i < len(lb) {
			d, err := lb[i].Digest()
			if err != nil {
				return nil, fmt.Errorf("image B layer %d: %w", i, err)
			}
			ld.B, fb = d.String(), sb.Layers[i]
		}
		if ld.A == ld.B {
			continue
		}
		ld.Files = diffFiles(sortedByPath(fa), sortedByPath(fb), opts)
		out = append(out, ld)
	}
	return out, nil
}

func sortedByPath(fs []File) []File {
	out := append([]File(nil), fs...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}
