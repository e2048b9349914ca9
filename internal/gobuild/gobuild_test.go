package gobuild

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pulse-sidecar/pulse-sidecar/internal/testenv"
)

// pinned is the repository's own toolchain line: the tests compile with
// the release the daemon ships with, which is the local go here, so
// nothing is downloaded.
func pinned(t *testing.T) string {
	t.Helper()
	root, err := ModuleRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	v, err := Toolchain(root)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// module writes a tiny module with the repository's toolchain line.
func module(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	os.MkdirAll(filepath.Join(dir, "cmd", "d"), 0o755)
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.test/daemon\n\ngo 1.25.0\n\ntoolchain "+pinned(t)+"\n"), 0o644)
	for name, content := range files {
		os.WriteFile(filepath.Join(dir, "cmd", "d", name), []byte(content), 0o644)
	}
}

// TestCompileIsReproducible compiles a tiny module twice with the flags the
// daemon ships with: same bytes, version stamped, statically linked.
func TestCompileIsReproducible(t *testing.T) {
	testenv.Tool(t, "go")
	dir := t.TempDir()
	module(t, dir, map[string]string{"main.go": "package main\n\nvar version = \"dev\"\n\nfunc main() { println(version) }\n"})
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
	testenv.Tool(t, "go")
	dir := t.TempDir()
	module(t, dir, map[string]string{
		"main.go": "package main\n\nvar tag = \"none\"\n\nfunc main() { println(tag) }\n",
		// A build tag that, if it leaked in through GOFLAGS, changes the binary.
		"foo.go": "//go:build foo\n\npackage main\n\nfunc init() { tag = \"foo-tag-leaked\" }\n",
	})
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

// TestCompileIsIsolated: the go tool runs with GOTOOLCHAIN set to go.mod's
// toolchain line and GOWORK=off, so a go.work above the module (found by
// the go tool's upward search) or named by GOWORK, and a GOTOOLCHAIN from
// the user, change nothing; GoCache replaces the user's build cache, and
// GOMAXPROCS and TZ reach the compile (verify varies them). A wrapper named
// go, first on PATH, records what the go tool receives and runs the real one.
func TestCompileIsIsolated(t *testing.T) {
	realGo := testenv.Tool(t, "go")
	parent := t.TempDir()
	dir := filepath.Join(parent, "mod")
	module(t, dir, map[string]string{"main.go": "package main\n\nfunc main() {}\n"})
	// A workspace that breaks any build that reads it.
	work := "go 1.25.0\n\nuse ./does-not-exist\n"
	os.WriteFile(filepath.Join(parent, "go.work"), []byte(work), 0o644)
	named := filepath.Join(t.TempDir(), "named.work")
	os.WriteFile(named, []byte(work), 0o644)

	bin := t.TempDir()
	log := filepath.Join(t.TempDir(), "go.log")
	script := "#!/bin/sh\n" +
		"echo \"$1 GOTOOLCHAIN=$GOTOOLCHAIN GOWORK=$GOWORK GOCACHE=$GOCACHE GOMAXPROCS=$GOMAXPROCS TZ=$TZ\" >> " + log + "\n" +
		"exec " + realGo + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(bin, "go"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv("GOTOOLCHAIN", "local")
	t.Setenv("GOWORK", named)
	t.Setenv("GOMAXPROCS", "3")
	t.Setenv("TZ", "Pacific/Chatham")
	cache := t.TempDir()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	d := Daemon{ModuleRoot: dir, Package: "./cmd/d", Arch: runtime.GOARCH, GoCache: cache, Stderr: &stderr}
	if _, err := d.Compile(ctx); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	b, _ := os.ReadFile(log)
	var build string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "build ") {
			build = l
		}
	}
	for _, want := range []string{"GOTOOLCHAIN=" + pinned(t) + " ", "GOWORK=off ", "GOCACHE=" + cache + " ", "GOMAXPROCS=3 ", "TZ=Pacific/Chatham"} {
		if !strings.Contains(build, want) {
			t.Errorf("go build ran with %q, want %s", build, want)
		}
	}
	if ents, _ := os.ReadDir(cache); len(ents) == 0 {
		t.Error("the given GOCACHE was not used")
	}
}

func TestToolchain(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ gomod, want string }{
		{"module m\n\ngo 1.25.0\n\ntoolchain go1.26.8\n", "go1.26.8"},
		{"module m\n\ngo 1.25.0\ntoolchain go1.27 // pinned\n", "go1.27"},
		{"module m\n\ngo 1.25.0\n", ""},
		{"module m\n\n// toolchain go1.26.8\n", ""},
	} {
		os.WriteFile(filepath.Join(dir, "go.mod"), []byte(c.gomod), 0o644)
		got, err := Toolchain(dir)
		if got != c.want || (c.want == "") != (err != nil) {
			t.Errorf("%q: %q, %v; want %q", c.gomod, got, err, c.want)
		}
	}
	if got := pinned(t); got != "go1.26.8" {
		t.Errorf("the repository pins %s; README and BENCHMARKS name go1.26.8", got)
	}
}

func TestModuleRoot(t *testing.T) {
	root, err := ModuleRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatal(err)
	}
	if _, err := ModuleRoot(t.TempDir()); err == nil {
		t.Fatal("found a module root in an empty temp dir")
	}
}
