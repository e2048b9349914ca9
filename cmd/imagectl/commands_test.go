package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	spdxjson "github.com/spdx/tools-golang/json"

	"github.com/pulse-sidecar/pulse-sidecar/internal/archive/archivetest"
	"github.com/pulse-sidecar/pulse-sidecar/internal/debian"
	"github.com/pulse-sidecar/pulse-sidecar/internal/oci/ocitest"
	"github.com/pulse-sidecar/pulse-sidecar/internal/oci/source"
)

// Environment of the test binary re-executed as imagectl (verify runs its
// builds by re-executing itself, which in a test is this binary).
const (
	asImagectlEnv = "IMAGECTL_TEST_AS_IMAGECTL"
	// umaskStampEnv names a file the child writes one byte of its umask
	// into before building: a spec file sourced from it is the injected
	// nondeterminism verify must catch.
	umaskStampEnv = "IMAGECTL_TEST_UMASK_STAMP"
)

func TestMain(m *testing.M) {
	if os.Getenv(asImagectlEnv) == "1" {
		if stamp := os.Getenv(umaskStampEnv); stamp != "" {
			writeUmaskStamp(stamp)
		}
		main()
	}
	os.Exit(m.Run())
}

// writeUmaskStamp applies the umask verify hands its build and writes its
// group digit ('2' for 022, '7' for 077): one byte that depends on it.
func writeUmaskStamp(file string) {
	if u, err := strconv.ParseUint(os.Getenv("IMAGECTL_UMASK"), 8, 32); err == nil {
		syscall.Umask(int(u))
	}
	u := syscall.Umask(0)
	syscall.Umask(u)
	if err := os.WriteFile(file, []byte{byte('0' + (u>>3)&7)}, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(99)
	}
}

const repoSpec = "../../image/spec.json"

// specCopy writes the repository's spec, with edit applied to its JSON,
// into a temp dir together with the files it places in the image.
func specCopy(t *testing.T, edit func(map[string]any)) string {
	t.Helper()
	b, err := os.ReadFile(repoSpec)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "files"), 0o755)
	ns, err := os.ReadFile("../../image/files/nsswitch.conf")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "files", "nsswitch.conf"), ns, 0o644)
	out, _ := json.Marshal(m)
	p := filepath.Join(dir, "spec.json")
	if err := os.WriteFile(p, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestVerifyAgreesAndKeepsTheSBOM(t *testing.T) {
	t.Setenv(asImagectlEnv, "1")
	t.Setenv("SOURCE_DATE_EPOCH", "")
	lockPath, debs, daemon := offlineFixture(t)
	kept := filepath.Join(t.TempDir(), "layout")
	code, stdout, stderr := runCmd(t, "verify", "--spec", repoSpec, "--lock", lockPath, "--debs", debs,
		"--daemon-binary", daemon, "--version", "1.0.0", "--out", kept, "--seed", "7")
	if code != 0 {
		t.Fatalf("verify exited %d:\n%s\n%s", code, stdout, stderr)
	}
	for _, want := range []string{"umask 077", "shuffle:7", "TZ=Pacific/Chatham", "GOMAXPROCS=", "elsewhere/deeper", "agree"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("verify's log does not show %q:\n%s", want, stderr)
		}
	}
	// verify's digest is the one a plain build prints.
	code, plain, stderr := runCmd(t, "build", "--spec", repoSpec, "--lock", lockPath, "--debs", debs,
		"--daemon-binary", daemon, "--version", "1.0.0")
	if code != 0 {
		t.Fatal(stderr)
	}
	if lastLine(stdout) != lastLine(plain) {
		t.Fatalf("verify printed %q, build %q", lastLine(stdout), lastLine(plain))
	}
	img, err := source.Load(kept)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := img.Digest(); d.String() != lastLine(stdout) {
		t.Fatalf("kept layout holds %s", d)
	}
	f, err := os.Open(kept + ".spdx.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := spdxjson.Read(f)
	if err != nil {
		t.Fatalf("SBOM does not parse: %v", err)
	}
	// The image itself plus every locked package; the fake daemon has no
	// Go build info, hence no modules.
	if got, want := len(doc.Packages), 1+3; got != want {
		t.Fatalf("SBOM has %d packages, want %d", got, want)
	}
	// The layout holds the image alone, so every tool reads it unnamed.
	var index struct {
		Manifests []struct{ Digest string }
	}
	b, _ := os.ReadFile(filepath.Join(kept, "index.json"))
	json.Unmarshal(b, &index)
	if len(index.Manifests) != 1 || index.Manifests[0].Digest != lastLine(stdout) {
		t.Fatalf("layout index does not list exactly the image:\n%s", b)
	}
}

// TestVerifyCatchesOneNondeterministicByte: a spec file whose one byte is
// the build's umask makes verify fail with a file-level diff naming it.
func TestVerifyCatchesOneNondeterministicByte(t *testing.T) {
	t.Setenv(asImagectlEnv, "1")
	lockPath, debs, daemon := offlineFixture(t)
	specPath := specCopy(t, func(m map[string]any) {
		m["files"] = append(m["files"].([]any), map[string]any{
			"path": "/etc/umask-stamp", "source": "stamp", "uid": 0, "gid": 0, "mode": "0644",
		})
	})
	t.Setenv(umaskStampEnv, filepath.Join(filepath.Dir(specPath), "stamp"))
	code, stdout, stderr := runCmd(t, "verify", "--spec", specPath, "--lock", lockPath, "--debs", debs, "--daemon-binary", daemon)
	if code != exitError {
		t.Fatalf("verify exited %d, want 1:\n%s\n%s", code, stdout, stderr)
	}
	t.Logf("verify's report:\n%s", stdout)
	for _, want := range []string{"differ:", "SBOM: first difference", "~ /etc/umask-stamp: sha256 ", "different"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("verify's report lacks %q:\n%s", want, stdout)
		}
	}
	// The configuration layer, after however many package layers the
	// lock's packages make (see internal/build/layers.go).
	if !regexp.MustCompile(`(?m)^  layer [0-9]+: sha256:`).MatchString(stdout) {
		t.Errorf("verify's report names no layer:\n%s", stdout)
	}
	if strings.Contains(stdout, "pulse-sidecar:") || strings.Contains(stdout, "/etc/passwd") {
		t.Errorf("report names files that did not change:\n%s", stdout)
	}
}

func TestVerifyAgainst(t *testing.T) {
	t.Setenv(asImagectlEnv, "1")
	lockPath, debs, daemon := offlineFixture(t)
	dir := t.TempDir()
	common := []string{"--spec", repoSpec, "--lock", lockPath, "--debs", debs, "--daemon-binary", daemon}
	code, _, stderr := runCmd(t, append([]string{"build", "--docker-archive", filepath.Join(dir, "d.tar"), "--oci-archive", filepath.Join(dir, "o.tar")}, common...)...)
	if code != 0 {
		t.Fatal(stderr)
	}
	for _, against := range []string{filepath.Join(dir, "o.tar"), filepath.Join(dir, "d.tar")} {
		code, stdout, stderr := runCmd(t, append([]string{"verify", "--against", against}, common...)...)
		if code != 0 {
			t.Fatalf("against %s: exit %d\n%s\n%s", against, code, stdout, stderr)
		}
	}
	// Built elsewhere with another version: different.
	code, _, stderr = runCmd(t, append([]string{"build", "--version", "other", "--out", filepath.Join(dir, "other")}, common...)...)
	if code != 0 {
		t.Fatal(stderr)
	}
	code, stdout, _ := runCmd(t, append([]string{"verify", "--against", filepath.Join(dir, "other")}, common...)...)
	if code != exitError || !strings.Contains(stdout, "org.opencontainers.image.version") {
		t.Fatalf("against another version: exit %d\n%s", code, stdout)
	}
}

func TestDiffCommand(t *testing.T) {
	lockPath, debs, daemon := offlineFixture(t)
	dir := t.TempDir()
	common := []string{"--spec", repoSpec, "--lock", lockPath, "--debs", debs, "--daemon-binary", daemon}
	for _, v := range []string{"1", "2"} {
		if code, _, stderr := runCmd(t, append([]string{"build", "--version", v, "--out", filepath.Join(dir, v), "--oci-archive", filepath.Join(dir, v+".tar")}, common...)...); code != 0 {
			t.Fatal(stderr)
		}
	}
	a, b := filepath.Join(dir, "1"), filepath.Join(dir, "2")
	if code, stdout, stderr := runCmd(t, "diff", a, filepath.Join(dir, "1.tar")); code != 0 {
		t.Fatalf("layout vs OCI archive of one build: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, _ := runCmd(t, "diff", a, b)
	if code != 1 || !strings.Contains(stdout, "org.opencontainers.image.version") {
		t.Fatalf("exit %d:\n%s", code, stdout)
	}
	code, stdout, _ = runCmd(t, "diff", a, b, "--format", "json")
	var r map[string]any
	if code != 1 || json.Unmarshal([]byte(stdout), &r) != nil {
		t.Fatalf("json: exit %d:\n%s", code, stdout)
	}
	if code, _, stderr := runCmd(t, "diff", a); code != exitUsage {
		t.Fatalf("one argument: exit %d %s", code, stderr)
	}
	if code, _, stderr := runCmd(t, "diff", a, filepath.Join(dir, "missing")); code != exitError || !strings.Contains(stderr, "missing") {
		t.Fatalf("missing image: exit %d %s", code, stderr)
	}
}

func TestPolicyCommand(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "")
	lockPath, debs, daemon := offlineFixture(t)
	dir := t.TempDir()
	lay := filepath.Join(dir, "img")
	if code, _, stderr := runCmd(t, "build", "--spec", repoSpec, "--lock", lockPath, "--debs", debs,
		"--daemon-binary", daemon, "--version", "1.0.0", "--revision", "abc", "--out", lay); code != 0 {
		t.Fatal(stderr)
	}
	ours := []string{"--spec", repoSpec, "--lock", lockPath}
	if code, stdout, stderr := runCmd(t, append([]string{"policy", lay}, ours...)...); code != 0 {
		t.Fatalf("our image fails the policy: exit %d\n%s%s", code, stdout, stderr)
	}
	// Through a registry too.
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	code, pushed, stderr := runCmd(t, "push", lay, "--repository", strings.TrimPrefix(srv.URL, "http://")+"/ps")
	if code != 0 {
		t.Fatal(stderr)
	}
	if code, stdout, stderr := runCmd(t, append([]string{"policy", strings.TrimSpace(pushed), "--format", "json"}, ours...)...); code != 0 || !strings.Contains(stdout, `"pass": true`) {
		t.Fatalf("registry image: exit %d\n%s%s", code, stdout, stderr)
	}

	// Each expectation is enforced and named.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--user", "0:0"}, "102:104"},
		{[]string{"--source-date-epoch", "1700000000"}, "created"},
		{[]string{"--user-dir", "/srv/data"}, "/srv/data"},
	} {
		code, stdout, _ := runCmd(t, append(append([]string{"policy", lay}, ours...), c.args...)...)
		if code != 1 || !strings.Contains(stdout, c.want) {
			t.Errorf("%q: exit %d, report lacks %q:\n%s", c.args, code, c.want, stdout)
		}
	}
	// A lock pinning other bytes: the dpkg status SHA256 catches it.
	l, err := debian.ReadLock(lockPath)
	if err != nil {
		t.Fatal(err)
	}
	l.Packages[0].SHA256 = strings.Repeat("0", 64)
	other := filepath.Join(dir, "other.lock.json")
	if err := debian.WriteLock(other, l); err != nil {
		t.Fatal(err)
	}
	code, stdout, _ := runCmd(t, "policy", lay, "--spec", repoSpec, "--lock", other)
	if code != 1 || !strings.Contains(stdout, "/var/lib/dpkg/status.d/"+l.Packages[0].Name) || !strings.Contains(stdout, "sha256") {
		t.Fatalf("wrong sha256 in the lock: exit %d\n%s", code, stdout)
	}

	// Explicit paths must exist; defaults may be absent (someone else's image).
	if code, _, stderr := runCmd(t, "policy", lay, "--lock", filepath.Join(dir, "nope.json")); code != exitError || !strings.Contains(stderr, "nope.json") {
		t.Fatalf("missing --lock: exit %d %s", code, stderr)
	}
	if code, _, stderr := runCmd(t, "policy", lay, "--skip", "no-such-rule"); code != exitUsage {
		t.Fatalf("bad --skip: exit %d %s", code, stderr)
	}
}

func TestLockCommand(t *testing.T) {
	key := archivetest.NewKey(t, "test archive")
	keys := testKeys(t, key)
	date := time.Date(2025, 5, 17, 9, 0, 0, 0, time.UTC)
	srv := archivetest.Serve(t,
		archivetest.Suite{Archive: "debian", Suite: "bookworm", Codename: "bookworm", Date: date, Archs: []string{"amd64"}, Signer: key, Compression: "xz",
			Packages: []archivetest.Pkg{
				{Name: "pulseaudio", Version: "16.1", Arch: "amd64", Depends: "libpulse0 (>= 16), adduser"},
				{Name: "libpulse0", Version: "16.1", Arch: "amd64"},
				{Name: "adduser", Version: "3.134", Arch: "all"},
			}},
		archivetest.Suite{Archive: "debian-security", Suite: "bookworm-security", Codename: "bookworm-security", Date: date, Archs: []string{"amd64"}, Signer: key},
	)
	specPath := specCopy(t, func(m map[string]any) {
		m["suites"] = []any{
			map[string]any{"archive": "debian", "suite": "bookworm"},
			map[string]any{"archive": "debian-security", "suite": "bookworm-security"},
		}
		m["packages"] = []any{"pulseaudio"}
		m["exclude"] = []any{"adduser"}
		m["architectures"] = []any{"amd64"}
	})
	lockPath := filepath.Join(t.TempDir(), "debian.lock.json")
	args := []string{"lock", "--spec", specPath, "--lock", lockPath, "--keys", keys,
		"--mirror", srv.URL + "/debian", "--security-mirror", srv.URL + "/debian-security", "--apt-root", t.TempDir()}
	code, _, stderr := runCmd(t, args...)
	if code != 0 {
		t.Fatalf("lock exited %d: %s", code, stderr)
	}
	l, err := debian.ReadLock(lockPath)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range l.Packages {
		names = append(names, p.Name)
	}
	if strings.Join(names, " ") != "libpulse0 pulseaudio" || strings.Join(l.Architectures, ",") != "amd64" {
		t.Fatalf("locked %v for %v", names, l.Architectures)
	}

	// An unresolvable root is named.
	specPath = specCopy(t, func(m map[string]any) {
		m["suites"] = []any{map[string]any{"archive": "debian", "suite": "bookworm"}}
		m["packages"] = []any{"no-such-package"}
		m["architectures"] = []any{"amd64"}
	})
	args[2] = specPath
	code, _, stderr = runCmd(t, args...)
	if code != exitError || !strings.Contains(stderr, "no-such-package") {
		t.Fatalf("unresolvable: exit %d %s", code, stderr)
	}
}

// TestVerifyCompilesIsolated: without --daemon-binary both builds compile
// the daemon with go.mod's toolchain and no workspace; the second with a
// fresh Go build cache and the perturbed umask, TZ and GOMAXPROCS, which
// must reach go build to be tested at all. A stand-in go, first on PATH,
// records what it receives and writes a fake binary.
func TestVerifyCompilesIsolated(t *testing.T) {
	t.Setenv(asImagectlEnv, "1")
	t.Setenv("SOURCE_DATE_EPOCH", "")
	lockPath, debs, _ := offlineFixture(t)
	specPath := specCopy(t, func(map[string]any) {})
	os.WriteFile(filepath.Join(filepath.Dir(specPath), "go.mod"), []byte("module example.test/d\n\ngo 1.25.0\n\ntoolchain go1.26.8\n"), 0o644)
	bin := t.TempDir()
	log := filepath.Join(t.TempDir(), "go.log")
	script := `#!/bin/sh
echo "$1 umask=$(umask) GOTOOLCHAIN=$GOTOOLCHAIN GOWORK=$GOWORK GOCACHE=$GOCACHE GOMAXPROCS=$GOMAXPROCS TZ=$TZ" >> ` + log + `
case "$1" in
env) echo "{\"GOCACHE\": \"$GOCACHE\"}" ;;
build) while [ $# -gt 1 ]; do [ "$1" = -o ] && printf 'fake daemon' > "$2"; shift; done ;;
esac
`
	os.WriteFile(filepath.Join(bin, "go"), []byte(script), 0o755)
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv("GOTOOLCHAIN", "auto")
	t.Setenv("GOCACHE", "/users/cache")

	code, stdout, stderr := runCmd(t, "verify", "--spec", specPath, "--lock", lockPath, "--debs", debs, "--version", "1.0.0")
	if code != 0 {
		t.Fatalf("verify exited %d:\n%s\n%s", code, stdout, stderr)
	}
	b, _ := os.ReadFile(log)
	var builds []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "build ") {
			builds = append(builds, l)
		}
	}
	if len(builds) != 2 {
		t.Fatalf("go build ran %d times:\n%s", len(builds), b)
	}
	for _, l := range builds {
		for _, want := range []string{"GOTOOLCHAIN=go1.26.8 ", "GOWORK=off "} {
			if !strings.Contains(l, want) {
				t.Errorf("go build ran with %q, want %s", l, want)
			}
		}
	}
	ref, per := builds[0], builds[1]
	if !strings.Contains(ref, "GOCACHE=/users/cache ") || !strings.Contains(ref, "umask=0022") || !strings.Contains(ref, "TZ=UTC") {
		t.Errorf("reference build's go build: %s", ref)
	}
	if strings.Contains(per, "GOCACHE=/users/cache ") || !strings.Contains(per, "/gocache ") ||
		!strings.Contains(per, "umask=0077") || !strings.Contains(per, "TZ=Pacific/Chatham") || strings.Contains(per, "GOMAXPROCS= ") {
		t.Errorf("perturbed build's go build: %s", per)
	}
	if !strings.Contains(stderr, "fresh Go build cache") {
		t.Errorf("verify's log does not say the second build has a fresh Go build cache:\n%s", stderr)
	}
}

// TestTamperedLayerIsRefusedByEveryCommand: a layer replaced by a
// different gzip of the same size (policy and diff used to stop at the tar
// end marker and never see the digest mismatch) makes policy, diff, verify
// --against and push fail, naming the blob and its expected digest, and
// push sends nothing.
func TestTamperedLayerIsRefusedByEveryCommand(t *testing.T) {
	t.Setenv(asImagectlEnv, "1")
	t.Setenv("SOURCE_DATE_EPOCH", "")
	lockPath, debs, daemon := offlineFixture(t)
	dir := t.TempDir()
	common := []string{"--spec", repoSpec, "--lock", lockPath, "--debs", debs, "--daemon-binary", daemon, "--revision", "test"}
	good, bad := filepath.Join(dir, "good"), filepath.Join(dir, "bad")
	for _, lay := range []string{good, bad} {
		if code, _, stderr := runCmd(t, append([]string{"build", "--out", lay}, common...)...); code != 0 {
			t.Fatal(stderr)
		}
	}
	img, err := source.Load(bad)
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	layer := m.Layers[0].Digest
	blob := filepath.Join(bad, "blobs", "sha256", layer.Hex)
	original, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	evil := ocitest.SameSizeGzip(t, original, ocitest.Tar(t, "usr/bin/pulse-sidecar", "#!/bin/sh\necho owned\n"))
	if err := os.WriteFile(blob, evil, 0o644); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	repo := strings.TrimPrefix(srv.URL, "http://") + "/tampered"
	for _, args := range [][]string{
		{"policy", bad, "--spec", repoSpec, "--lock", lockPath},
		{"diff", good, bad},
		append([]string{"verify", "--against", bad}, common...),
		{"push", bad, "--repository", repo},
	} {
		code, stdout, stderr := runCmd(t, args...)
		if code != exitError || !strings.Contains(stderr, "blob "+layer.String()) || !strings.Contains(stderr, bad) {
			t.Errorf("imagectl %s: exit %d, want 1 with an error naming %s in %s:\n%s%s", args[0], code, layer, bad, stdout, stderr)
		}
	}
	// Nothing reached the registry: push checks every blob before it sends one.
	for _, d := range []string{"manifests/" + digestOf(t, img), "blobs/" + layer.String()} {
		resp, err := http.Head(srv.URL + "/v2/tampered/" + d)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("registry has %s: %s", d, resp.Status)
		}
	}
}

func digestOf(t *testing.T, img interface{ Digest() (v1.Hash, error) }) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}
