// Package testenv lets tests use real tools (pulseaudio, ffmpeg, podman, ...)
// and fail loudly in CI when one is missing, instead of skipping silently.
package testenv

import (
	"net"
	"os"
	"os/exec"
	"testing"
)

// CI reports whether the tests run in CI, where nothing may be skipped.
func CI() bool { return os.Getenv("CI") == "true" }

// Tool returns the path of a program the test needs. Missing, it fails the
// test in CI and skips it elsewhere (a developer without podman can still run
// the rest).
func Tool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if CI() {
		t.Fatalf("%s is required in CI and was not found: %v", name, err)
	}
	t.Skipf("%s not installed: %v", name, err)
	return ""
}

// FreeAddr returns a loopback address with a port that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// ShortTempDir is a temp dir short enough for unix socket paths (108 bytes),
// which t.TempDir's long names can exceed.
func ShortTempDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("/tmp", "ps")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}
