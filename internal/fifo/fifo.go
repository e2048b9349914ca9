// Package fifo holds the few Linux calls the relays need around named pipes:
// creating them with tight modes, opening them so that a peer going away is
// not an end of stream, and shrinking the kernel buffer so stale audio cannot
// pile up in it.
package fifo

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// Make creates a FIFO at path with mode (umask does not apply). An existing
// FIFO is kept and its mode corrected; anything else at the path is an error,
// so a misconfigured path never clobbers a regular file.
func Make(path string, mode os.FileMode) error {
	fi, err := os.Lstat(path)
	switch {
	case err == nil && fi.Mode()&fs.ModeNamedPipe != 0:
		if err := os.Chmod(path, mode); err != nil {
			return fmt.Errorf("fifo %s: %w", path, err)
		}
		return nil
	case err == nil:
		return fmt.Errorf("fifo %s: exists and is not a FIFO (%s)", path, fi.Mode().Type())
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("fifo %s: %w", path, err)
	}
	if err := unix.Mkfifo(path, uint32(mode.Perm())); err != nil {
		return fmt.Errorf("fifo %s: mkfifo: %w", path, err)
	}
	// mkfifo honours the umask; chmod makes the mode exactly what was asked.
	if err := os.Chmod(path, mode); err != nil {
		return fmt.Errorf("fifo %s: %w", path, err)
	}
	return nil
}

// OpenReadWrite opens a FIFO for reading in a way that never sees EOF: on Linux
// a read-write open counts as a writer, so the last real writer exiting (an
// encoder restart) leaves the reader blocked instead of at end of file. The
// returned file is in the Go runtime's poller, so Close from another goroutine
// unblocks a pending Read.
func OpenReadWrite(path string) (*os.File, error) {
	if err := requireFIFO(path); err != nil {
		return nil, err
	}
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("fifo %s: open: %w", path, err)
	}
	return os.NewFile(uintptr(fd), path), nil
}

// OpenWriteNonblock opens a FIFO for writing without blocking: with no reader
// the open fails (ENXIO) instead of hanging, and writes to a full pipe return
// EAGAIN instead of stalling the caller. Use RawWrite to see EAGAIN directly.
func OpenWriteNonblock(path string) (*os.File, error) {
	if err := requireFIFO(path); err != nil {
		return nil, err
	}
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("fifo %s: open for writing: %w", path, err)
	}
	// The runtime's poller would turn EAGAIN into a wait on Write; callers that
	// want to drop instead use RawWrite, which never parks.
	return os.NewFile(uintptr(fd), path), nil
}

// OpenWriteBlocking opens a FIFO for writing and blocks until a reader is
// there; it is what a child process's stdout wants.
func OpenWriteBlocking(path string) (*os.File, error) {
	if err := requireFIFO(path); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("fifo %s: open for writing: %w", path, err)
	}
	return f, nil
}

// SetPipeSize asks the kernel for a pipe buffer of n bytes and returns what it
// granted (it rounds up to a power-of-two number of pages).
func SetPipeSize(f *os.File, n int) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("fifo %s: %w", f.Name(), err)
	}
	var got int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		got, serr = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, n)
	}); err != nil {
		return 0, fmt.Errorf("fifo %s: %w", f.Name(), err)
	}
	if serr != nil {
		return 0, fmt.Errorf("fifo %s: F_SETPIPE_SZ %d: %w", f.Name(), n, serr)
	}
	return got, nil
}

// PipeSize reports the pipe buffer size of f.
func PipeSize(f *os.File) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var got int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		got, serr = unix.FcntlInt(fd, unix.F_GETPIPE_SZ, 0)
	}); err != nil {
		return 0, err
	}
	return got, serr
}

// RawWrite writes to a non-blocking file and reports unix.EAGAIN when the pipe
// is full, so the caller can drop and count instead of waiting.
func RawWrite(f *os.File, b []byte) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var werr error
	if err := rc.Write(func(fd uintptr) bool {
		n, werr = unix.Write(int(fd), b)
		// true: never park in the poller. os.NewFile did register the
		// non-blocking fd with it, and parking would turn EAGAIN into a wait.
		return true
	}); err != nil {
		return 0, err
	}
	if n < 0 {
		n = 0
	}
	return n, werr
}

// Remove deletes the FIFO at path if it is one; a missing path is not an error.
func Remove(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeNamedPipe == 0 {
		return fmt.Errorf("fifo %s: not a FIFO, not removing it", path)
	}
	return os.Remove(path)
}

func requireFIFO(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("fifo %s: %w", path, err)
	}
	if fi.Mode()&fs.ModeNamedPipe == 0 {
		return fmt.Errorf("fifo %s: not a FIFO (%s)", path, fi.Mode().Type())
	}
	return nil
}
