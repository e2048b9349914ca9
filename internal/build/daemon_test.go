package build

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// TestCompileIsReproducible compiles a tiny module twice with the flags the
// daemon ships with: same bytes, version stamped, statically linked.
func TestCompileIsReproducible(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("go not on PATH")
		}
		t.Skip("go not on PATH")
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.test/daemon\n\ngo 1.25.0\n"), 0o644)
	os.MkdirAll(filepath.Join(dir, "cmd", "d"), 0o755)
	os.WriteFile(filepath.Join(dir, "cmd", "d", "main.go"), []byte(`package main

var version = "dev"

func main() { println(version) }
`), 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	d := Daemon{ModuleRoot: dir, Package: "./cmd/d", Arch: runtime.GOARCH, VersionVar: "main.version", Version: "9.8.7", Stderr: &stderr}
	a, err := d.Compile(ctx)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	b, err := d.Compile(ctx)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	if !bytes.Equal(a, b) {
		t.Fatal("two compiles differ")
	}
	if !bytes.Contains(a, []byte("9.8.7")) {
		t.Fatal("version not stamped")
	}
	if bytes.Contains(a, []byte(dir)) {
		t.Fatal("binary contains the build directory: -trimpath missing")
	}
	if _, err := (Daemon{ModuleRoot: dir, Package: "./cmd/d", Arch: runtime.GOARCH, VersionVar: "main.version", Version: "a b"}).Compile(ctx); err == nil {
		t.Fatal("version with a space accepted")
	}
}
