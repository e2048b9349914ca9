package oci

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/pulse-sidecar/pulse-sidecar/internal/atomicfile"
)

// RefNameAnnotation names an image inside an OCI layout's index.
const RefNameAnnotation = "org.opencontainers.image.ref.name"

// WriteLayout writes img as an OCI image layout at dir. The layout is built
// in a sibling temp directory and renamed into place, so dir is never seen
// half-written; an existing dir is replaced only once the new one is complete.
// Each of also runs on the finished temp layout before the rename, so what
// it adds (an SBOM referring to the image) is part of the same atomic step.
func WriteLayout(dir string, img v1.Image, refName string, also ...func(layoutDir string) error) error {
	s, err := StageLayout(dir, img, refName, also...)
	if err != nil {
		return err
	}
	return s.Commit()
}

// WriteOCIArchive writes img as a tar of an OCI image layout (what podman
// and skopeo call oci-archive). Entries are sorted, owned by 0:0 and dated
// at the image's creation time, so the archive is as reproducible as the image.
func WriteOCIArchive(file string, img v1.Image, refName string) error {
	s, err := StageOCIArchive(file, img, refName)
	if err != nil {
		return err
	}
	return s.Commit()
}

// WriteDockerArchive writes img in the `docker save` format under tag.
func WriteDockerArchive(file string, img v1.Image, tag string) error {
	s, err := StageDockerArchive(file, img, tag)
	if err != nil {
		return err
	}
	return s.Commit()
}

// Staged is an output written in full beside its destination but not yet in
// place. A build with several outputs stages them all and commits them only
// then, so a failure in the last leaves every earlier output as it was.
type Staged struct {
	tmp, dst string
	dir      bool
}

// Commit moves the staged output into place, replacing what was there.
func (s *Staged) Commit() error {
	if s.dir {
		if err := replace(s.tmp, s.dst); err != nil {
			os.RemoveAll(s.tmp)
			return fmt.Errorf("%s: %w", s.dst, err)
		}
		return nil
	}
	if err := os.Rename(s.tmp, s.dst); err != nil {
		os.Remove(s.tmp)
		return fmt.Errorf("%s: %w", s.dst, err)
	}
	return nil
}

// Discard removes the staged output; the destination is untouched.
func (s *Staged) Discard() error { return os.RemoveAll(s.tmp) }

// StageLayout is WriteLayout up to, not including, the rename.
func StageLayout(dir string, img v1.Image, refName string, also ...func(layoutDir string) error) (_ *Staged, err error) {
	tmp, err := tempSibling(dir, true)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	if err := writeLayout(tmp, img, refName); err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	for _, fn := range also {
		if err := fn(tmp); err != nil {
			return nil, fmt.Errorf("%s: %w", dir, err)
		}
	}
	return &Staged{tmp: tmp, dst: dir, dir: true}, nil
}

func writeLayout(dir string, img v1.Image, refName string) error {
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	var opts []layout.Option
	if refName != "" {
		opts = append(opts, layout.WithAnnotations(map[string]string{RefNameAnnotation: refName}))
	}
	return p.AppendImage(img, opts...)
}

// StageOCIArchive is WriteOCIArchive up to, not including, the rename.
func StageOCIArchive(file string, img v1.Image, refName string) (*Staged, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(filepath.Dir(file), "."+filepath.Base(file)+".layout-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := writeLayout(dir, img, refName); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return StageFile(file, 0o644, func(w io.Writer) error {
		return tarDir(w, dir, cf.Created.Time)
	})
}

// StageDockerArchive is WriteDockerArchive up to, not including, the rename.
func StageDockerArchive(file string, img v1.Image, tag string) (*Staged, error) {
	t, err := name.NewTag(tag)
	if err != nil {
		return nil, fmt.Errorf("docker archive tag %q: %w", tag, err)
	}
	return StageFile(file, 0o644, func(w io.Writer) error {
		return tarball.Write(t, img, w)
	})
}

// StageFile stages any file written beside the image (the SBOM), so it is
// committed together with the image outputs.
func StageFile(file string, mode os.FileMode, write func(io.Writer) error) (*Staged, error) {
	tmp, err := atomicfile.Stage(file, mode, write)
	if err != nil {
		return nil, err
	}
	return &Staged{tmp: tmp, dst: file}, nil
}

func tarDir(w io.Writer, root string, mtime time.Time) error {
	var paths []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != root {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(paths)
	tw := tar.NewWriter(w)
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: filepath.ToSlash(rel), ModTime: mtime.UTC(), Format: tar.FormatPAX, Mode: 0o644, Typeflag: tar.TypeReg, Size: fi.Size()}
		if fi.IsDir() {
			hdr.Name += "/"
			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeDir, 0o755, 0
		} else if !fi.Mode().IsRegular() {
			return fmt.Errorf("%s: not a regular file", p)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeReg {
			if err := copyFile(tw, p); err != nil {
				return err
			}
		}
	}
	return tw.Close()
}

func copyFile(w io.Writer, p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

func tempSibling(path string, dir bool) (string, error) {
	parent, base := filepath.Dir(path), filepath.Base(path)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", err
	}
	if dir {
		return os.MkdirTemp(parent, "."+base+".tmp-*")
	}
	f, err := os.CreateTemp(parent, "."+base+".tmp-*")
	if err != nil {
		return "", err
	}
	return f.Name(), f.Close()
}

// replace moves the finished directory tmp to dst. An existing dst is moved
// aside first and removed after, so at every moment dst is either the old
// complete layout, briefly absent, or the new complete one.
func replace(tmp, dst string) error {
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	err := os.Rename(tmp, dst)
	if err == nil {
		return nil
	}
	if _, serr := os.Lstat(dst); serr != nil {
		return err
	}
	old, err := tempSibling(dst+".old", true)
	if err != nil {
		return err
	}
	if err := os.Remove(old); err != nil {
		return err
	}
	if err := os.Rename(dst, old); err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		// Put the old layout back rather than leave nothing.
		os.Rename(old, dst)
		return err
	}
	return os.RemoveAll(old)
}
