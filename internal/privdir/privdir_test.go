package privdir

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// Tests run as root, for whom every mode is writable; an unusable place is
// made by putting a regular file where a directory should be (ENOTDIR).
func TestFileFallsBackWhenItsDirectoryIsUnusable(t *testing.T) {
	root := t.TempDir()
	blocker := filepath.Join(root, "container")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	f := &Fallback{Parent: filepath.Join(root, "run")}
	os.Mkdir(f.Parent, 0o755)

	ok := filepath.Join(root, "writable", "speaker")
	got, moved, err := f.File(ok)
	if err != nil || got != ok || moved != nil {
		t.Fatalf("usable place: %q %v %v", got, moved, err)
	}
	if f.Created() != "" {
		t.Fatal("a fallback directory was made although nothing needed it")
	}

	got, moved, err = f.File(filepath.Join(blocker, "speaker"))
	if err != nil {
		t.Fatal(err)
	}
	if moved == nil || !errors.Is(moved.Why, syscall.ENOTDIR) || filepath.Base(got) != "speaker" || filepath.Dir(got) != f.Created() {
		t.Fatalf("moved to %q (%+v), want speaker in the fallback directory", got, moved)
	}
	fi, err := os.Lstat(f.Created())
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 || filepath.Dir(f.Created()) != f.Parent {
		t.Fatalf("fallback directory %q: %v %v, want a 0700 directory under %s", f.Created(), fi.Mode(), err, f.Parent)
	}
	// One fallback directory for everything.
	mic, _, err := f.File(filepath.Join(blocker, "microphone"))
	if err != nil || filepath.Dir(mic) != f.Created() {
		t.Fatalf("second file: %q %v", mic, err)
	}
	run, moved, err := f.Directory(filepath.Join(blocker, "desktop"))
	if err != nil || moved == nil || run != filepath.Join(f.Created(), "desktop") {
		t.Fatalf("run dir: %q %v %v", run, moved, err)
	}
	if fi, err := os.Lstat(run); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Fatalf("run dir %q: %v %v", run, fi, err)
	}
}

func TestFallbackIsFreshEveryTime(t *testing.T) {
	parent := t.TempDir()
	a, err := (&Fallback{Parent: parent}).Dir()
	if err != nil {
		t.Fatal(err)
	}
	b, err := (&Fallback{Parent: parent}).Dir()
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Fatalf("two daemons share %s", a)
	}
}

// A parent others may write to without the sticky bit could have the
// private directory renamed away and replaced: refused.
func TestFallbackRefusesAnOpenParent(t *testing.T) {
	parent := t.TempDir()
	if err := os.Chmod(parent, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := (&Fallback{Parent: parent}).Dir(); err == nil {
		t.Fatal("created a private directory in a world-writable, non-sticky parent")
	}
	if err := os.Chmod(parent, 0o777|fs.ModeSticky); err != nil {
		t.Fatal(err)
	}
	if _, err := (&Fallback{Parent: parent}).Dir(); err != nil {
		t.Fatalf("sticky parent (like a tmpfs /run): %v", err)
	}
	if _, err := (&Fallback{Parent: filepath.Join(parent, "missing")}).Dir(); err == nil {
		t.Fatal("missing parent accepted")
	}
}

func TestUsable(t *testing.T) {
	root := t.TempDir()
	file := filepath.Join(root, "f")
	os.WriteFile(file, nil, 0o600)
	if err := Usable(file); err == nil {
		t.Fatal("a regular file is usable as a directory")
	}
	if err := Usable(filepath.Join(root, "new", "dir")); err != nil {
		t.Fatalf("a creatable directory: %v", err)
	}
}
