package fifo

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestMakeModesAndRefusals(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	old := unix.Umask(0o022)
	defer unix.Umask(old)
	if err := Make(p, 0o600); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(p)
	if fi.Mode()&os.ModeNamedPipe == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
	// An existing FIFO is kept and its mode corrected (PulseAudio makes 0666).
	os.Chmod(p, 0o666)
	if err := Make(p, 0o600); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode not corrected: %v", fi.Mode())
	}
	reg := filepath.Join(dir, "regular")
	os.WriteFile(reg, []byte("keep me"), 0o644)
	if err := Make(reg, 0o600); err == nil {
		t.Error("Make over a regular file succeeded")
	}
	if b, _ := os.ReadFile(reg); string(b) != "keep me" {
		t.Error("regular file clobbered")
	}
	if err := Remove(reg); err == nil {
		t.Error("Remove of a regular file succeeded")
	}
	if _, err := OpenReadWrite(reg); err == nil {
		t.Error("OpenReadWrite of a regular file succeeded")
	}
	if err := Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := Remove(p); err != nil {
		t.Errorf("Remove of a missing FIFO: %v", err)
	}
}

func TestReadWriteNeverEOFAndNonblockingWriter(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := Make(p, 0o600); err != nil {
		t.Fatal(err)
	}
	// No reader yet: a non-blocking writer is refused at once, not hung.
	if _, err := OpenWriteNonblock(p); !errors.Is(err, unix.ENXIO) {
		t.Errorf("open for writing without a reader: %v, want ENXIO", err)
	}
	r, err := OpenReadWrite(p)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w, err := OpenWriteNonblock(p)
	if err != nil {
		t.Fatal(err)
	}
	got, err := SetPipeSize(w, 4096)
	if err != nil || got < 4096 {
		t.Fatalf("SetPipeSize: %d %v", got, err)
	}
	if n, _ := PipeSize(w); n != got {
		t.Errorf("PipeSize %d, set %d", n, got)
	}
	// Fill the pipe: the writer gets EAGAIN instead of blocking.
	buf := make([]byte, 1024)
	var full bool
	for i := 0; i < 1000 && !full; i++ {
		if _, err := RawWrite(w, buf); errors.Is(err, unix.EAGAIN) {
			full = true
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if !full {
		t.Fatal("pipe never reported full")
	}
	// The writer going away is not EOF for the read-write reader.
	w.Close()
	n, err := r.Read(make([]byte, 1<<20))
	if err != nil || n == 0 {
		t.Fatalf("read after writer closed: %d %v", n, err)
	}
}
