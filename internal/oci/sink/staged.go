// Package sink writes images where other tools read them: OCI layout
// directories, OCI archives, docker archives and registries. Every file
// output is staged beside its destination and put in place by a rename, so
// a reader or a crash sees the previous output or the new one, never half.
package sink

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/pulse-sidecar/pulse-sidecar/internal/atomicfile"
)

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

// StageFile stages any file written beside the image (the SBOM), so it is
// committed together with the image outputs.
func StageFile(file string, mode os.FileMode, write func(io.Writer) error) (*Staged, error) {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	tmp, err := atomicfile.Stage(file, mode, write)
	if err != nil {
		return nil, err
	}
	return &Staged{tmp: tmp, dst: file}, nil
}

// tempDir makes an empty directory beside path; files go through
// atomicfile.Stage instead.
func tempDir(path string) (string, error) {
	parent, base := filepath.Dir(path), filepath.Base(path)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", err
	}
	return os.MkdirTemp(parent, "."+base+".tmp-*")
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
	old, err := tempDir(dst + ".old")
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
