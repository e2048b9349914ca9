package arm64test

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

const (
	whiteoutPrefix = ".wh."
	opaqueWhiteout = ".wh..wh..opq"
)

// Extract applies img's layers in order to dir, an existing empty directory,
// as a container runtime would: later layers replace earlier entries, and
// whiteouts (".wh.NAME", and ".wh..wh..opq" for a directory's earlier
// contents) delete. Each layer is checked against its digest as it streams.
//
// What comes out is a tree to run programs from, not a faithful copy:
// ownership is not kept, directories get owner rwx (so the tree can be
// removed without privileges), set-id and sticky bits are dropped, devices
// and FIFOs are left out, and every symbolic link is made to resolve inside
// dir (see linkTarget). Nothing is ever written outside dir.
func Extract(img v1.Image, dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for i, l := range layers {
		if err := applyLayer(root, l); err != nil {
			d, _ := l.Digest()
			return fmt.Errorf("layer %d (%s): %w", i, d, err)
		}
	}
	return nil
}

func applyLayer(root *os.Root, l v1.Layer) error {
	want, err := l.Digest()
	if err != nil {
		return err
	}
	mt, err := l.MediaType()
	if err != nil {
		return err
	}
	rc, err := l.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	h := sha256.New()
	blob := io.TeeReader(rc, h)
	var r io.Reader
	switch mt {
	case types.OCILayer, types.DockerLayer, types.DockerForeignLayer, types.OCIRestrictedLayer:
		zr, err := gzip.NewReader(blob)
		if err != nil {
			return err
		}
		defer zr.Close()
		r = zr
	case types.OCILayerZStd:
		zr, err := zstd.NewReader(blob)
		if err != nil {
			return err
		}
		defer zr.Close()
		r = zr
	case types.OCIUncompressedLayer, types.OCIUncompressedRestrictedLayer, types.DockerUncompressedLayer:
		r = blob
	default:
		return fmt.Errorf("media type %q is not a layer this extracts", mt)
	}
	if err := applyTar(root, tar.NewReader(r)); err != nil {
		return err
	}
	// The tar ends before the blob does (padding, compression trailer).
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, blob); err != nil {
		return err
	}
	return checkHash(h, want)
}

func checkHash(h hash.Hash, want v1.Hash) error {
	if want.Algorithm != "sha256" {
		return fmt.Errorf("digest algorithm %q: only sha256 is checked", want.Algorithm)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want.Hex {
		return fmt.Errorf("content has digest sha256:%s", got)
	}
	return nil
}

func applyTar(root *os.Root, tr *tar.Reader) error {
	// What this layer wrote: an opaque whiteout hides the earlier layers'
	// entries of its directory only, whichever order the tar lists them in.
	written := make(map[string]bool)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "/"))
		if name == "." {
			continue
		}
		if !filepath.IsLocal(name) {
			return fmt.Errorf("entry %q leaves the root", h.Name)
		}
		dir, base := path.Split(name)
		dir = path.Clean(dir)
		switch {
		case base == opaqueWhiteout:
			if err := removeChildren(root, dir, written); err != nil {
				return err
			}
			continue
		case strings.HasPrefix(base, whiteoutPrefix):
			if err := root.RemoveAll(path.Join(dir, strings.TrimPrefix(base, whiteoutPrefix))); err != nil {
				return err
			}
			continue
		}
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := applyEntry(root, name, h, tr); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		written[name] = true
	}
}

// removeChildren empties dir of everything but what this layer wrote.
func removeChildren(root *os.Root, dir string, keep map[string]bool) error {
	f, err := root.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return err
	}
	for _, n := range names {
		if p := path.Join(dir, n); !keep[p] {
			if err := root.RemoveAll(p); err != nil {
				return err
			}
		}
	}
	return nil
}

func applyEntry(root *os.Root, name string, h *tar.Header, tr *tar.Reader) error {
	old, err := root.Lstat(name)
	switch {
	case err == nil && old.IsDir() && h.Typeflag == tar.TypeDir:
		// A directory over a directory keeps its contents.
		return root.Chmod(name, dirMode(h))
	case err == nil:
		if err := root.RemoveAll(name); err != nil {
			return err
		}
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	switch h.Typeflag {
	case tar.TypeDir:
		if err := root.Mkdir(name, 0o700); err != nil {
			return err
		}
		return root.Chmod(name, dirMode(h))
	case tar.TypeReg:
		f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, tr)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		return root.Chmod(name, fs.FileMode(h.Mode).Perm())
	case tar.TypeSymlink:
		return root.Symlink(linkTarget(name, h.Linkname), name)
	case tar.TypeLink:
		target := path.Clean(strings.TrimPrefix(h.Linkname, "/"))
		if !filepath.IsLocal(target) {
			return fmt.Errorf("hard link to %q leaves the root", h.Linkname)
		}
		return root.Link(target, name)
	default:
		// Devices and FIFOs: a runtime provides /dev, and a program
		// needing one in its image would be a finding of its own.
		return nil
	}
}

func dirMode(h *tar.Header) fs.FileMode {
	return fs.FileMode(h.Mode).Perm() | 0o700
}

// linkTarget returns the target a symbolic link at name (relative to the
// root) gets, so that the host resolves it inside the root. qemu's -L maps
// an emulated program's path /usr/lib/X to ROOT/usr/lib/X when that exists,
// but the host kernel follows the links under ROOT: an absolute target would
// lead to the host's own /usr/lib. An absolute target becomes the relative
// path to the same place in the root; a relative one that climbs above the
// root is clamped at it, as ".." at "/" is; any other relative target stays
// as written (lexical cleaning could change its meaning across links).
func linkTarget(name, target string) string {
	dir := path.Dir("/" + name)
	if !path.IsAbs(target) && !climbsAbove(dir, target) {
		return target
	}
	abs := path.Join(dir, target) // Join cleans: ".." at "/" stays there
	if path.IsAbs(target) {
		abs = path.Clean(target)
	}
	rel, err := filepath.Rel(dir, abs)
	if err != nil {
		return "." // unreachable: both paths are absolute and clean
	}
	return rel
}

// climbsAbove reports whether the relative target, followed from dir (an
// absolute path), goes above "/" at some point.
func climbsAbove(dir, target string) bool {
	depth := len(slices.DeleteFunc(strings.Split(dir, "/"), func(s string) bool { return s == "" }))
	for _, c := range strings.Split(target, "/") {
		switch c {
		case "", ".":
		case "..":
			depth--
			if depth < 0 {
				return true
			}
		default:
			depth++
		}
	}
	return false
}

// MissingAlternatives names the links Debian's update-alternatives would
// have made for the BLAS and LAPACK libraries under usr/lib/TRIPLET of root
// but that are not there (or do not resolve). Without them ffmpeg does not
// start (libavfilter -> pocketsphinx -> liblapack3 -> libblas3 install their
// libraries only under blas/ and lapack/), and maintainer scripts never run
// in an image build, so the build has to make them for each architecture.
func MissingAlternatives(dir, triplet string) ([]string, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	libdir := path.Join("usr/lib", triplet)
	var missing []string
	for _, sub := range []string{"blas", "lapack"} {
		f, err := root.Open(path.Join(libdir, sub))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		names, err := f.Readdirnames(-1)
		f.Close()
		if err != nil {
			return nil, err
		}
		slices.Sort(names)
		for _, n := range names {
			// The soname (libblas.so.3) is what the loader looks for; the
			// fully versioned file beside it is what it points to.
			if strings.Count(n, ".so.") != 1 || strings.Count(strings.SplitN(n, ".so.", 2)[1], ".") != 0 {
				continue
			}
			link := path.Join(libdir, n)
			if _, err := root.Stat(link); err != nil {
				missing = append(missing, fmt.Sprintf("/%s (-> %s/%s)", link, sub, n))
			}
		}
	}
	return missing, nil
}
