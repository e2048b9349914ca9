package imgdiff

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// File is one filesystem entry as a layer describes it. Content is reduced
// to its size and sha256 while the layer streams by, so scanning an image
// costs memory per entry, never per byte.
type File struct {
	Path    string    `json:"path"` // absolute, cleaned: "/usr/bin/x"
	Type    string    `json:"type"` // file, dir, symlink, hardlink, char, block, fifo, whiteout
	Mode    int64     `json:"mode"` // permission and setuid/setgid/sticky bits (07777)
	UID     int       `json:"uid"`
	GID     int       `json:"gid"`
	Size    int64     `json:"size"`
	SHA256  string    `json:"sha256,omitempty"` // regular files only
	Link    string    `json:"link,omitempty"`   // symlink target or hardlink target path
	ModTime time.Time `json:"mtime"`
	Layer   int       `json:"layer"`            // index in the manifest, 0 = base
	Device  string    `json:"device,omitempty"` // "major,minor" of char and block devices
}

// Scan is an image's filesystem seen both ways: layer by layer, as the
// tars hold it, and flattened, as a container sees it.
type Scan struct {
	// Layers holds each layer's entries in tar order, whiteouts included.
	Layers [][]File
	// Files is the flattened tree sorted by path, whiteouts applied.
	Files []File
	// Content holds the bytes of the flattened regular files that the
	// caller asked to keep, by path.
	Content map[string][]byte
}

// Keep selects regular files whose bytes a scan should retain. Only small
// metadata files (dpkg status entries) are worth keeping.
type Keep func(path string) bool

// maxKept bounds a kept file so a hostile image cannot make a scan hold a
// layer's worth of bytes through one entry.
const maxKept = 4 << 20

const whiteoutPrefix = ".wh."
const opaqueMarker = ".wh..wh..opq"

// ScanImage reads every layer of img once. Layers are read top first, which
// is what lets the flattened view be built in the same pass: the first time a
// path is seen it is the visible one, exactly as mutate.Extract decides.
func ScanImage(img v1.Image, keep Keep) (*Scan, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("listing layers: %w", err)
	}
	s := &Scan{Layers: make([][]File, len(layers)), Content: map[string][]byte{}}
	flat := newFlattener()
	for i := len(layers) - 1; i >= 0; i-- {
		entries, err := readLayer(layers[i], i, func(f File) bool {
			return keep != nil && f.Type == "file" && f.Size <= maxKept && flat.wouldShow(f.Path) && keep(f.Path)
		}, s.Content)
		if err != nil {
			return nil, err
		}
		s.Layers[i] = entries
		flat.addLayer(entries)
	}
	s.Files = flat.files()
	return s, nil
}

func readLayer(l v1.Layer, index int, keep func(File) bool, content map[string][]byte) ([]File, error) {
	d, err := l.Digest()
	if err != nil {
		return nil, fmt.Errorf("layer %d: %w", index, err)
	}
	rc, err := l.Uncompressed()
	if err != nil {
		return nil, fmt.Errorf("layer %d (%s): %w", index, d, err)
	}
	defer rc.Close()
	var out []File
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			// Read on past the tar end marker to the blob's end: a verifying
			// source decides there, and a layer must not be reported on
			// before its digest is known to match.
			if _, err := io.Copy(io.Discard, rc); err != nil {
				return nil, fmt.Errorf("layer %d (%s): %w", index, d, err)
			}
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("layer %d (%s): %w", index, d, err)
		}
		f := fileOf(hdr, index)
		if f.Type == "file" {
			h := sha256.New()
			var w io.Writer = h
			var kept *bytes.Buffer
			if keep(f) {
				kept = &bytes.Buffer{}
				w = io.MultiWriter(h, kept)
			}
			n, err := io.Copy(w, tr)
			if err != nil {
				return nil, fmt.Errorf("layer %d (%s): %s: %w", index, d, f.Path, err)
			}
			f.Size = n
			f.SHA256 = hex.EncodeToString(h.Sum(nil))
			if kept != nil {
				content[f.Path] = kept.Bytes()
			}
		}
		out = append(out, f)
	}
}

func fileOf(hdr *tar.Header, layer int) File {
	f := File{
		Path:    cleanPath(hdr.Name),
		Mode:    hdr.Mode & 07777,
		Size:    hdr.Size,
		UID:     hdr.Uid,
		GID:     hdr.Gid,
		ModTime: hdr.ModTime.UTC(),
		Layer:   layer,
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeRegA:
		f.Type = "file"
	case tar.TypeDir:
		f.Type = "dir"
	case tar.TypeSymlink:
		f.Type, f.Link = "symlink", hdr.Linkname
	case tar.TypeLink:
		f.Type, f.Link = "hardlink", cleanPath(hdr.Linkname)
	case tar.TypeChar:
		f.Type, f.Device = "char", fmt.Sprintf("%d,%d", hdr.Devmajor, hdr.Devminor)
	case tar.TypeBlock:
		f.Type, f.Device = "block", fmt.Sprintf("%d,%d", hdr.Devmajor, hdr.Devminor)
	case tar.TypeFifo:
		f.Type = "fifo"
	default:
		f.Type = fmt.Sprintf("tar-type-%q", hdr.Typeflag)
	}
	if strings.HasPrefix(path.Base(f.Path), whiteoutPrefix) {
		f.Type = "whiteout"
	}
	if f.Type != "file" {
		// Only regular files have content; a hard link's size is its target's.
		f.Size = 0
	}
	return f
}

// cleanPath makes "./a/b/", "a/b" and "/a/b" the same key.
func cleanPath(p string) string {
	return path.Clean("/" + p)
}

// flattener applies layers top first. A path seen in an upper layer, or
// hidden by an upper layer's whiteout or opaque directory, is not visible
// from lower layers.
type flattener struct {
	seen    map[string]File
	deleted map[string]bool // whited-out paths
	opaque  map[string]bool // directories whose lower contents are hidden
}

func newFlattener() *flattener {
	return &flattener{seen: map[string]File{}, deleted: map[string]bool{}, opaque: map[string]bool{}}
}

// wouldShow reports whether a lower layer's entry at p is still visible
// given the layers added so far.
func (fl *flattener) wouldShow(p string) bool {
	if _, ok := fl.seen[p]; ok {
		return false
	}
	if fl.deleted[p] {
		return false
	}
	for dir := path.Dir(p); ; dir = path.Dir(dir) {
		if fl.deleted[dir] || fl.opaque[dir] {
			return false
		}
		if seen, ok := fl.seen[dir]; ok && seen.Type != "dir" {
			// An upper layer replaced the directory with a file or link.
			return false
		}
		if dir == "/" {
			return true
		}
	}
}

// addLayer takes one layer's entries. Within a layer a later entry for the
// same path replaces an earlier one, as extraction would; whiteouts only
// hide lower layers, so everything here is decided against the upper layers.
func (fl *flattener) addLayer(entries []File) {
	var deleted, opaque []string
	visible := map[string]File{}
	for _, f := range entries {
		base := path.Base(f.Path)
		switch {
		case base == opaqueMarker:
			opaque = append(opaque, path.Dir(f.Path))
		case f.Type == "whiteout":
			deleted = append(deleted, path.Join(path.Dir(f.Path), strings.TrimPrefix(base, whiteoutPrefix)))
		case f.Path == "/":
			// The root entry carries no information a diff or policy uses.
		case fl.wouldShow(f.Path):
			visible[f.Path] = f
		}
	}
	for p, f := range visible {
		fl.seen[p] = f
	}
	for _, p := range deleted {
		fl.deleted[p] = true
	}
	for _, p := range opaque {
		fl.opaque[p] = true
	}
}

func (fl *flattener) files() []File {
	out := make([]File, 0, len(fl.seen))
	for _, f := range fl.seen {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}
