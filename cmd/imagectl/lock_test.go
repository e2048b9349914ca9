package main

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/pulse-sidecar/pulse-sidecar/internal/archive/archivetest"
	"github.com/pulse-sidecar/pulse-sidecar/internal/debian"
)

// testKeys writes key as the pinned key of both archives.
func testKeys(t *testing.T, key *openpgp.Entity) string {
	t.Helper()
	dir := t.TempDir()
	for _, archive := range []string{"debian", "debian-security"} {
		os.MkdirAll(filepath.Join(dir, archive), 0o755)
		if err := os.WriteFile(filepath.Join(dir, archive, "test.asc"), archivetest.ArmoredPublicKey(t, key), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// archiveAt is the small two-archive test repository as published at
// day, with libzstd1's security update when security is set.
func archiveAt(t *testing.T, key *openpgp.Entity, day time.Time, security bool) string {
	t.Helper()
	main := []archivetest.Pkg{
		{Name: "pulseaudio", Version: "16.1", Arch: "amd64", Depends: "libpulse0 (>= 16), libzstd1"},
		{Name: "pulseaudio", Version: "16.1", Arch: "arm64", Depends: "libpulse0 (>= 16), libzstd1"},
		{Name: "libpulse0", Version: "16.1", Arch: "amd64"},
		{Name: "libpulse0", Version: "16.1", Arch: "arm64"},
		{Name: "libzstd1", Version: "1.5.4+dfsg2-5", Arch: "amd64"},
		{Name: "libzstd1", Version: "1.5.4+dfsg2-5", Arch: "arm64"},
	}
	var sec []archivetest.Pkg
	var updates []archivetest.Pkg
	if security {
		sec = []archivetest.Pkg{
			{Name: "libzstd1", Version: "1.5.4+dfsg2-5+deb12u1", Arch: "amd64"},
			{Name: "libzstd1", Version: "1.5.4+dfsg2-5+deb12u1", Arch: "arm64"},
		}
		updates = []archivetest.Pkg{{Name: "libpulse0", Version: "16.1+deb12u1", Arch: "amd64"}}
	}
	archs := []string{"amd64", "arm64"}
	srv := archivetest.Serve(t,
		archivetest.Suite{Archive: "debian", Suite: "bookworm", Codename: "bookworm", Date: day, Archs: archs, Signer: key, Compression: "xz", Packages: main},
		archivetest.Suite{Archive: "debian", Suite: "bookworm-updates", Codename: "bookworm-updates", Date: day, Archs: archs, Signer: key, Packages: updates},
		archivetest.Suite{Archive: "debian-security", Suite: "bookworm-security", Codename: "bookworm-security", Date: day, Archs: archs, Signer: key, Compression: "gz", Packages: sec},
	)
	return srv.URL
}

func lockArgs(specPath, lockPath, keys, url string, extra ...string) []string {
	return append([]string{"lock", "--spec", specPath, "--lock", lockPath, "--keys", keys,
		"--mirror", url + "/debian", "--security-mirror", url + "/debian-security", "--apt-root", "/nonexistent"}, extra...)
}

func smallSpec(t *testing.T) string {
	return specCopy(t, func(m map[string]any) {
		m["packages"] = []any{"pulseaudio"}
		m["exclude"] = []any{}
		m["architectures"] = []any{"amd64", "arm64"}
	})
}

// TestLockRecordsArchiveStateAndRefusesRollback: the lock records each
// suite's InRelease and index digests; a mirror serving an older signed
// Release afterwards is refused unless --allow-downgrade names the suite.
func TestLockRecordsArchiveStateAndRefusesRollback(t *testing.T) {
	key := archivetest.NewKey(t, "test archive")
	keys := testKeys(t, key)
	specPath := smallSpec(t)
	lockPath := filepath.Join(t.TempDir(), "debian.lock.json")
	now := time.Now().UTC().Truncate(time.Second)

	newer := archiveAt(t, key, now.Add(-time.Hour), false)
	if code, _, stderr := runCmd(t, lockArgs(specPath, lockPath, keys, newer)...); code != 0 {
		t.Fatalf("lock exited %d: %s", code, stderr)
	}
	l, err := debian.ReadLock(lockPath)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(l.Architectures, ",") != "amd64,arm64" || len(l.PackagesFor("arm64")) != 3 {
		t.Fatalf("architectures %v, arm64 packages %v", l.Architectures, l.PackagesFor("arm64"))
	}
	for _, s := range l.Suites {
		if len(s.InReleaseSHA256) != 64 || len(s.Indexes) != 2 || s.Indexes[0].Architecture != "amd64" || len(s.Indexes[1].SHA256) != 64 || s.Date != now.Add(-time.Hour).Format(time.RFC3339) {
			t.Errorf("suite record %+v", s)
		}
	}
	if l.SpecSHA256 == "" {
		t.Error("no spec checksum")
	}

	// A day older: a replay. Refused, naming the suite, and the lock is untouched.
	before, _ := os.ReadFile(lockPath)
	older := archiveAt(t, key, now.Add(-25*time.Hour), false)
	code, _, stderr := runCmd(t, lockArgs(specPath, lockPath, keys, older)...)
	if code != exitError || !strings.Contains(stderr, "debian/bookworm:") || !strings.Contains(stderr, "older than") || !strings.Contains(stderr, "--allow-downgrade") {
		t.Fatalf("rollback: exit %d: %s", code, stderr)
	}
	if after, _ := os.ReadFile(lockPath); string(after) != string(before) {
		t.Fatal("a refused lock run changed the lock")
	}
	// Naming one suite is not enough: every replayed suite must be named.
	code, _, stderr = runCmd(t, lockArgs(specPath, lockPath, keys, older, "--allow-downgrade", "bookworm")...)
	if code != exitError || !strings.Contains(stderr, "bookworm-updates") {
		t.Fatalf("one suite allowed: exit %d: %s", code, stderr)
	}
	code, _, stderr = runCmd(t, lockArgs(specPath, lockPath, keys, older,
		"--allow-downgrade", "bookworm", "--allow-downgrade", "bookworm-updates", "--allow-downgrade", "bookworm-security")...)
	if code != 0 || !strings.Contains(stderr, "accepted (--allow-downgrade bookworm)") {
		t.Fatalf("all allowed: exit %d: %s", code, stderr)
	}

	// Dated two days ahead: refused even without a previous lock.
	future := archiveAt(t, key, now.Add(48*time.Hour), false)
	code, _, stderr = runCmd(t, lockArgs(specPath, filepath.Join(t.TempDir(), "new.lock.json"), keys, future)...)
	if code != exitError || !strings.Contains(stderr, "more than a day after now") {
		t.Fatalf("future Release: exit %d: %s", code, stderr)
	}
}

// TestLockRefusesKeyOfOtherArchive: the main archive's key does not vouch
// for the security archive.
func TestLockRefusesKeyOfOtherArchive(t *testing.T) {
	key := archivetest.NewKey(t, "main archive")
	other := archivetest.NewKey(t, "security archive")
	keys := t.TempDir()
	os.MkdirAll(filepath.Join(keys, "debian"), 0o755)
	os.MkdirAll(filepath.Join(keys, "debian-security"), 0o755)
	os.WriteFile(filepath.Join(keys, "debian", "main.asc"), archivetest.ArmoredPublicKey(t, key), 0o644)
	os.WriteFile(filepath.Join(keys, "debian-security", "security.asc"), archivetest.ArmoredPublicKey(t, other), 0o644)
	url := archiveAt(t, key, time.Now().Add(-time.Hour), false) // all signed by the main key
	code, _, stderr := runCmd(t, lockArgs(smallSpec(t), filepath.Join(t.TempDir(), "l.json"), keys, url)...)
	if code != exitError || !strings.Contains(stderr, "debian-security/bookworm-security") || !strings.Contains(stderr, "not signed by a pinned key") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
}

// TestLockStalledMirror: a mirror that accepts connections and never
// answers fails the lock within its timeout instead of hanging CI.
func TestLockStalledMirror(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for range 64 { // bounded: the lock makes a few attempts
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c) // read nothing, answer nothing
		}
	}()
	url := "http://" + ln.Addr().String()
	start := time.Now()
	code, _, stderr := runCmd(t, lockArgs(smallSpec(t), filepath.Join(t.TempDir(), "l.json"), testKeys(t, archivetest.NewKey(t, "k")), url, "--timeout", "200ms")...)
	took := time.Since(start)
	if code != exitError || !strings.Contains(stderr, "InRelease") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	// Four attempts of 200 ms with 1+2+4 s of backoff: well under 30 s.
	if took > 30*time.Second {
		t.Fatalf("the lock took %s against a stalled mirror", took)
	}
	t.Logf("failed after %s: %s", took, stderr)
}

// TestOutdated: outdated lists what a re-lock would update, marks the
// security updates and exits 1 when there is one.
func TestOutdated(t *testing.T) {
	key := archivetest.NewKey(t, "test archive")
	keys := testKeys(t, key)
	specPath := smallSpec(t)
	lockPath := filepath.Join(t.TempDir(), "debian.lock.json")
	now := time.Now().UTC()
	if code, _, stderr := runCmd(t, lockArgs(specPath, lockPath, keys, archiveAt(t, key, now.Add(-2*time.Hour), false))...); code != 0 {
		t.Fatalf("lock exited %d: %s", code, stderr)
	}
	url := archiveAt(t, key, now.Add(-time.Hour), true)
	args := []string{"outdated", "--lock", lockPath, "--keys", keys, "--mirror", url + "/debian", "--security-mirror", url + "/debian-security", "--apt-root", "/nonexistent"}
	code, stdout, stderr := runCmd(t, args...)
	if code != exitError {
		t.Fatalf("outdated exited %d, want 1: %s %s", code, stdout, stderr)
	}
	t.Logf("report:\n%s", stdout)
	var lines []string
	for _, l := range strings.Split(stdout, "\n") {
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	report := strings.Join(lines, "\n")
	for _, want := range []string{
		"libzstd1 amd64 1.5.4+dfsg2-5 1.5.4+dfsg2-5+deb12u1 debian-security/bookworm-security security\n",
		"libzstd1 arm64 1.5.4+dfsg2-5 1.5.4+dfsg2-5+deb12u1 debian-security/bookworm-security security\n",
		"libpulse0 amd64 16.1 16.1+deb12u1 debian/bookworm-updates\n",
		"3 update(s), 2 from the security archive",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	code, stdout, _ = runCmd(t, append(args, "--format", "json")...)
	var rep outdatedReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || code != exitError || rep.Security != 2 || len(rep.Updates) != 3 {
		t.Fatalf("json: exit %d, %v: %s", code, err, stdout)
	}
	// An archive older than the lock hides updates: refused, not "current".
	old := archiveAt(t, key, now.Add(-3*time.Hour), false)
	oldArgs := []string{"outdated", "--lock", lockPath, "--keys", keys, "--mirror", old + "/debian", "--security-mirror", old + "/debian-security", "--apt-root", "/nonexistent"}
	if code, stdout, stderr := runCmd(t, oldArgs...); code != exitError || !strings.Contains(stderr, "older than") || strings.Contains(stdout, "current") {
		t.Fatalf("older archive: exit %d %s %s", code, stdout, stderr)
	}
	// No security update: exit 0 even with other updates.
	noSec := archiveAt(t, key, now.Add(-time.Hour), false)
	args = []string{"outdated", "--lock", lockPath, "--keys", keys, "--mirror", noSec + "/debian", "--security-mirror", noSec + "/debian-security", "--apt-root", "/nonexistent"}
	if code, stdout, stderr := runCmd(t, args...); code != 0 || !strings.Contains(stdout, "every locked package is current") {
		t.Fatalf("current: exit %d %s %s", code, stdout, stderr)
	}
}

// TestBuildRefusesLockOfAnotherSpec: a spec whose packages changed since
// the lock was made is refused before anything is fetched.
func TestBuildRefusesLockOfAnotherSpec(t *testing.T) {
	lockPath, debs, daemon := offlineFixture(t)
	specPath := specCopy(t, func(m map[string]any) {
		m["packages"] = append(m["packages"].([]any), "sox")
	})
	code, _, stderr := runCmd(t, "build", "--spec", specPath, "--lock", lockPath, "--debs", debs, "--daemon-binary", daemon)
	if code != exitError || !strings.Contains(stderr, "made for another spec") || !strings.Contains(stderr, "imagectl lock") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
}
