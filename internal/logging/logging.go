// Package logging builds the daemon's slog logger: stderr for the container
// runtime, and optionally a size-capped file in the log directory, where
// abcdesktop collects the desktop's logs.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
)

// Options says where and how to log.
type Options struct {
	Format string // "text" or "json"
	Level  slog.Level
	Stderr io.Writer
	// Dir, when set, also receives pulse-sidecar.log, capped at MaxBytes
	// with one rotated copy, so a chatty child cannot fill the volume.
	Dir      string
	MaxBytes int64
}

// New returns the logger and a closer for the log file (a no-op without one).
// A log directory that cannot take the file (a read-only container without
// the log volume) is not fatal: the logger writes to stderr only, and says
// so once.
func New(o Options) (*slog.Logger, io.Closer) {
	var w io.Writer = o.Stderr
	var closer io.Closer = nopCloser{}
	var fileErr error
	if o.Dir != "" {
		if o.MaxBytes <= 0 {
			o.MaxBytes = 10 << 20
		}
		f, err := openCapped(filepath.Join(o.Dir, "pulse-sidecar.log"), o.MaxBytes)
		if err == nil {
			w = io.MultiWriter(o.Stderr, f)
			closer = f
		}
		fileErr = err
	}
	hopts := &slog.HandlerOptions{Level: o.Level}
	var h slog.Handler
	switch o.Format {
	case "json":
		h = slog.NewJSONHandler(w, hopts)
	default:
		h = slog.NewTextHandler(w, hopts)
	}
	log := slog.New(h)
	if fileErr != nil {
		log.Warn("log directory not writable; logging to stderr only", "dir", o.Dir, "err", fileErr)
	}
	return log, closer
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }

// capped is an append-only file that is rotated to NAME.1 when it would grow
// past max. Writes from many goroutines are serialised by the mutex; slog's
// handlers already write whole records per call, so lines never interleave.
type capped struct {
	mu   sync.Mutex
	path string
	max  int64
	f    *os.File
	size int64
}

func openCapped(path string, max int64) (*capped, error) {
	c := &capped{path: path, max: max}
	if err := c.open(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *capped) open() error {
	f, err := os.OpenFile(c.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("log file %s: %w", c.path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("log file %s: %w", c.path, err)
	}
	c.f, c.size = f, fi.Size()
	return nil
}

func (c *capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.f == nil {
		return len(p), nil
	}
	if c.size+int64(len(p)) > c.max && c.size > 0 {
		c.f.Close()
		c.f = nil
		// Rotation failing must not take logging to stderr down with it.
		_ = os.Rename(c.path, c.path+".1")
		if err := c.open(); err != nil {
			return len(p), nil
		}
	}
	n, err := c.f.Write(p)
	c.size += int64(n)
	return n, err
}

func (c *capped) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.f == nil {
		return nil
	}
	err := c.f.Close()
	c.f = nil
	return err
}
