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

// TestCompileIgnoresCodegenSettings: GOFLAGS, GOAMD64 and GOARM64 from the
// environment or from a `go env -w` file must not change the daemon's bytes.
func TestCompileIgnoresCodegenSettings(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("go not on PATH")
		}
		t.Skip("go not on PATH")
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.test/daemon\n\ngo 1.25.0\n"), 0o644)
	os.MkdirAll(filepath.Join(dir, "cmd", "d"), 0o755)
	os.WriteFile(filepath.Join(dir, "cmd", "d", "main.go"), []byte("package main\n\nvar tag = \"none\"\n\nfunc main() { println(tag) }\n"), 0o644)
	// A build tag that, if it leaked in through GOFLAGS, changes the binary.
	os.WriteFile(filepath.Join(dir, "cmd", "d", "foo.go"), []byte("//go:build foo\n\npackage main\n\nfunc init() { tag = \"foo-tag-leaked\" }\n"), 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	d := Daemon{ModuleRoot: dir, Package: "./cmd/d", Arch: runtime.GOARCH, Stderr: &stderr}
	plain, err := d.Compile(ctx)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}

	t.Setenv("GOAMD64", "v3")
	t.Setenv("GOARM64", "v8.2")
	t.Setenv("GOFLAGS", "-tags=foo")
	tuned, err := d.Compile(ctx)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	if bytes.Contains(tuned, []byte("foo-tag-leaked")) || !bytes.Equal(plain, tuned) {
		t.Fatal("GOAMD64/GOARM64/GOFLAGS in the environment changed the daemon")
	}

	// The same through the go env file, which an empty GOFLAGS falls back to.
	t.Setenv("GOAMD64", "")
	t.Setenv("GOARM64", "")
	t.Setenv("GOFLAGS", "")
	goenv := filepath.Join(t.TempDir(), "env")
	os.WriteFile(goenv, []byte("GOFLAGS=-tags=foo\nGOAMD64=v3\n"), 0o644)
	t.Setenv("GOENV", goenv)
	fromFile, err := d.Compile(ctx)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	if !bytes.Equal(plain, fromFile) {
		t.Fatal("GOFLAGS/GOAMD64 from the go env file changed the daemon")
	}
}
