// Package atomicfile replaces files so that a reader, or a crash, sees the
// old content or the new, never a half-written file: the lock, the cookie,
// the SBOM and the image archives all go through it.
package atomicfile

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Write replaces path with what write produces. The content goes to a temp
// file in the same directory (so the rename cannot cross file systems),
// created with mode before the first byte is written (a secret is never
// readable by others, not even for a moment), synced, then renamed over
// path. On any error path is untouched and the temp file is gone.
func Write(path string, mode os.FileMode, write func(io.Writer) error) error {
	tmp, err := Stage(path, mode, write)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Stage is Write without the rename: it returns the synced temp file beside
// path, for a caller that puts several files in place only once all of them
// were written. The caller renames it to path or removes it; on error there
// is no temp file.
func Stage(path string, mode os.FileMode, write func(io.Writer) error) (tmpPath string, err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(mode); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	if err := write(tmp); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return tmp.Name(), nil
}

// WriteBytes is Write for content already in memory.
func WriteBytes(path string, b []byte, mode os.FileMode) error {
	return Write(path, mode, func(w io.Writer) error {
		_, err := io.Copy(w, bytes.NewReader(b))
		return err
	})
}
