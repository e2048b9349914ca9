// Package privdir finds places the daemon can write to. The configured
// places (/container for the FIFOs, /var/run/desktop for the cookie and
// PulseAudio's HOME) are mounts in the original pod; in a container run
// read-only with nothing mounted but the desktop's /tmp they are not
// writable, and the daemon falls back to one private directory it creates
// itself.
//
// Threat model: the desktop shares /tmp with the sidecar and may plant
// files or symlinks in any directory it can write to. The fallback directory
// is therefore never made in the shared /tmp (config refuses it as a parent)
// nor under a parent others may write without the sticky bit, is created fresh with a name nobody can predict (mkdir never follows a
// symlink in its last component, and fails on anything already there), with
// mode 0700, and is checked after creation to be a directory of this uid.
package privdir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Usable reports why dir cannot hold what the daemon creates, or nil: it must
// be a directory (created with mode 0700 if missing) that this process can
// write to.
func Usable(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s: not a directory", dir)
	}
	// access(2) answers for this uid, a read-only mount included (EROFS).
	if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
		return &fs.PathError{Op: "access", Path: dir, Err: err}
	}
	return nil
}

// Fallback creates, the first time it is needed, the one private directory
// that paths fall back to.
type Fallback struct {
	Parent string // e.g. /run

	once sync.Once
	dir  string
	err  error
}

// Dir creates the private directory on the first call and returns it.
func (f *Fallback) Dir() (string, error) {
	f.once.Do(func() { f.dir, f.err = create(f.Parent) })
	return f.dir, f.err
}

// Created returns the private directory if Dir made one, else "".
func (f *Fallback) Created() string {
	if f.err != nil {
		return ""
	}
	return f.dir
}

func create(parent string) (string, error) {
	pfi, err := os.Stat(parent)
	if err != nil {
		return "", fmt.Errorf("fallback directory: %w", err)
	}
	if !pfi.IsDir() {
		return "", fmt.Errorf("fallback directory: %s is not a directory", parent)
	}
	// Where others may write, only the sticky bit stops them from renaming
	// or removing what this process made.
	if pfi.Mode().Perm()&0o022 != 0 && pfi.Mode()&fs.ModeSticky == 0 {
		return "", fmt.Errorf("fallback directory: %s is writable by others without the sticky bit (mode %v); refusing to create a private directory there", parent, pfi.Mode())
	}
	dir, err := os.MkdirTemp(parent, "pulse-sidecar-")
	if err != nil {
		return "", fmt.Errorf("fallback directory: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return "", fmt.Errorf("fallback directory: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || fi.Mode().Perm() != 0o700 || !ok || int(st.Uid) != os.Geteuid() {
		return "", fmt.Errorf("fallback directory: %s is not a private directory of uid %d (mode %v)", dir, os.Geteuid(), fi.Mode())
	}
	return dir, nil
}

// Moved is one path that had to fall back.
type Moved struct {
	From, To string
	Why      error
}

// File returns path when its directory is usable; otherwise the same base
// name inside the fallback directory.
func (f *Fallback) File(path string) (string, *Moved, error) {
	why := Usable(filepath.Dir(path))
	if why == nil {
		return path, nil, nil
	}
	dir, err := f.Dir()
	if err != nil {
		return "", nil, errors.Join(fmt.Errorf("%s: %w", filepath.Dir(path), why), err)
	}
	to := filepath.Join(dir, filepath.Base(path))
	return to, &Moved{From: path, To: to, Why: why}, nil
}

// Directory returns dir when usable; otherwise a directory of the same base
// name created (0700) inside the fallback directory.
func (f *Fallback) Directory(dir string) (string, *Moved, error) {
	why := Usable(dir)
	if why == nil {
		return dir, nil, nil
	}
	fb, err := f.Dir()
	if err != nil {
		return "", nil, errors.Join(fmt.Errorf("%s: %w", dir, why), err)
	}
	to := filepath.Join(fb, filepath.Base(dir))
	if err := os.Mkdir(to, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", nil, fmt.Errorf("fallback directory: %w", err)
	}
	return to, &Moved{From: dir, To: to, Why: why}, nil
}
