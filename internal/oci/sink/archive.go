package sink

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
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

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

// StageOCIArchive is WriteOCIArchive up to, not including, the rename.
func StageOCIArchive(file string, img v1.Image, refName string) (*Staged, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	dir, err := tempDir(file + ".layout")
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

// tarDir writes the tree at root as a reproducible tar: sorted, 0:0, mtime.
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
