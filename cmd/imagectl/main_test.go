package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/pulse-sidecar/pulse-sidecar/internal/deb/debtest"
	"github.com/pulse-sidecar/pulse-sidecar/internal/debian"
	"github.com/pulse-sidecar/pulse-sidecar/internal/spec"
)

// offlineFixture writes a lock, a --debs directory and a daemon binary that
// the repository's spec builds from without network.
func offlineFixture(t *testing.T) (lockPath, debsDir, daemon string) {
	t.Helper()
	dir := t.TempDir()
	debsDir = filepath.Join(dir, "debs")
	os.Mkdir(debsDir, 0o755)
	lock := &debian.Lock{
		Version: debian.LockVersion, Distribution: "debian-12", Architectures: []string{"amd64"},
		Requested: []string{"libblas3"},
		Suites: []debian.LockSuite{
			{Archive: "debian", Suite: "bookworm", Date: "2025-05-17T09:00:00Z", Snapshot: "20250520T000000Z"},
		},
	}
	for i, p := range []debtest.Package{
		{Name: "libblas3", Version: "3.11.0-2", Data: []debtest.Entry{
			debtest.File("./usr/lib/x86_64-linux-gnu/blas/libblas.so.3", "blas"),
		}},
		{Name: "liblapack3", Version: "3.11.0-2", Data: []debtest.Entry{
			debtest.File("./usr/lib/x86_64-linux-gnu/lapack/liblapack.so.3", "lapack"),
		}},
		// The OS identity `imagectl policy` requires of an image with packages.
		{Name: "base-files", Version: "12.4+deb12u15", Data: []debtest.Entry{
			debtest.Symlink("./etc/os-release", "../usr/lib/os-release"),
			debtest.File("./usr/lib/os-release", "ID=debian\nVERSION_ID=\"12\"\n"),
		}},
	} {
		b := debtest.Deb(t, p)
		sum := sha256.Sum256(b)
		pool := fmt.Sprintf("pool/main/%c/%s/%s_%s_amd64.deb", p.Name[0], p.Name, p.Name, p.Version)
		// One file by sha256, one by pool basename: both ways front ends name them.
		name := hex.EncodeToString(sum[:])
		if i == 1 {
			name = filepath.Base(pool)
		}
		os.WriteFile(filepath.Join(debsDir, name), b, 0o644)
		lock.Packages = append(lock.Packages, debian.LockedPackage{
			Name: p.Name, Version: p.Version, Architecture: "amd64", ForArch: "amd64",
			Archive: "debian", Suite: "bookworm", Filename: pool, Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:]),
		})
	}
	// Made for the repository's spec, as `imagectl lock` would record it.
	s, err := spec.Load(filepath.Join("..", "..", "image", "spec.json"))
	if err != nil {
		t.Fatal(err)
	}
	lock.SpecSHA256 = debian.InputsDigest(s.Packages, s.Exclude, specSuites(s))
	lockPath = filepath.Join(dir, "debian.lock.json")
	if err := debian.WriteLock(lockPath, lock); err != nil {
		t.Fatal(err)
	}
	daemon = filepath.Join(dir, "pulse-sidecar")
	os.WriteFile(daemon, []byte("\x7fELF fake daemon"), 0o755)
	return lockPath, debsDir, daemon
}

func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(context.Background(), args, &o, &e)
	return code, o.String(), e.String()
}

func TestBuildOfflineIsReproducible(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "")
	lockPath, debs, daemon := offlineFixture(t)
	specPath := filepath.Join("..", "..", "image", "spec.json")
	out := t.TempDir()
	var digests []string
	for i := range 2 {
		code, stdout, stderr := runCmd(t, "build", "--spec", specPath, "--lock", lockPath, "--debs", debs,
			"--daemon-binary", daemon, "--version", "1.0.0",
			"--out", filepath.Join(out, fmt.Sprint("layout", i)),
			"--oci-archive", filepath.Join(out, fmt.Sprint("img", i, ".tar")),
			"--docker-archive", filepath.Join(out, fmt.Sprint("docker", i, ".tar")))
		if code != 0 {
			t.Fatalf("build exited %d: %s", code, stderr)
		}
		d := lastLine(stdout)
		if !strings.HasPrefix(d, "sha256:") || len(d) != 71 {
			t.Fatalf("last stdout line %q is not a digest", d)
		}
		digests = append(digests, d)
	}
	if digests[0] != digests[1] {
		t.Fatalf("two builds: %s and %s", digests[0], digests[1])
	}
	a, _ := os.ReadFile(filepath.Join(out, "img0.tar"))
	b, _ := os.ReadFile(filepath.Join(out, "img1.tar"))
	if !bytes.Equal(a, b) {
		t.Fatal("OCI archives differ")
	}

	// SOURCE_DATE_EPOCH changes every timestamp, hence the digest.
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	code, stdout, stderr := runCmd(t, "build", "--spec", specPath, "--lock", lockPath, "--debs", debs, "--daemon-binary", daemon, "--version", "1.0.0")
	if code != 0 {
		t.Fatalf("build exited %d: %s", code, stderr)
	}
	if lastLine(stdout) == digests[0] {
		t.Fatal("SOURCE_DATE_EPOCH did not change the digest")
	}

	// Push the layout and check the registry's digest.
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	repo := strings.TrimPrefix(srv.URL, "http://") + "/pulse-sidecar"
	code, stdout, stderr = runCmd(t, "push", filepath.Join(out, "img0.tar"), "--repository", repo, "--tag", "1.0.0")
	if code != 0 {
		t.Fatalf("push exited %d: %s", code, stderr)
	}
	if got := strings.TrimSpace(stdout); got != repo+"@"+digests[0] {
		t.Fatalf("push printed %q, want %s@%s", got, repo, digests[0])
	}
}

func TestBuildGoneFromMirrorExits3(t *testing.T) {
	lockPath, _, daemon := offlineFixture(t)
	mirror := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(mirror.Close)
	code, _, stderr := runCmd(t, "build", "--spec", filepath.Join("..", "..", "image", "spec.json"),
		"--lock", lockPath, "--daemon-binary", daemon, "--cache", t.TempDir(),
		"--mirror", mirror.URL, "--security-mirror", mirror.URL, "--snapshot-mirror", mirror.URL+"/snapshot")
	if code != exitGone {
		t.Fatalf("exit %d, want %d: %s", code, exitGone, stderr)
	}
	for _, want := range []string{"libblas3 3.11.0-2", "liblapack3", "imagectl lock", mirror.URL + "/snapshot/archive/debian/20250520T000000Z/pool/main/l/libblas3/"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"frobnicate"},
		{"push"},
		{"push", "x"},
		{"build", "extra"},
		{"build", "--source-date-epoch", "yesterday", "--spec", filepath.Join("..", "..", "image", "spec.json"), "--lock", "/nonexistent"},
	} {
		code, _, stderr := runCmd(t, args...)
		if code == 0 || stderr == "" {
			t.Errorf("%q: exit %d, stderr %q", args, code, stderr)
		}
	}
	code, _, stderr := runCmd(t, "build", "--lock", "/nonexistent/lock.json", "--spec", filepath.Join("..", "..", "image", "spec.json"))
	if code != exitError || !strings.Contains(stderr, "/nonexistent/lock.json") {
		t.Errorf("missing lock: exit %d, %q", code, stderr)
	}
}

// TestDebsDirMatchesMirrorBuild is the front ends' contract: Nix and Bazel
// fetch the locked .debs themselves and call imagectl with --debs and
// --daemon-binary, offline. Given the same daemon binary, that must give the
// digest of a normal build that downloads from a mirror.
func TestDebsDirMatchesMirrorBuild(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "")
	lockPath, debs, daemon := offlineFixture(t)
	lock, err := debian.ReadLock(lockPath)
	if err != nil {
		t.Fatal(err)
	}
	// A mirror serving the same files under their pool paths.
	pool := map[string]string{}
	ents, _ := os.ReadDir(debs)
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(debs, e.Name()))
		sum := sha256.Sum256(b)
		for _, p := range lock.Packages {
			if p.SHA256 == hex.EncodeToString(sum[:]) {
				pool["/"+p.Filename] = filepath.Join(debs, e.Name())
			}
		}
	}
	if len(pool) != len(lock.Packages) {
		t.Fatalf("fixture: %d files for %d packages", len(pool), len(lock.Packages))
	}
	mirror := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, ok := pool[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		http.ServeFile(w, r, f)
	}))
	t.Cleanup(mirror.Close)

	specPath := filepath.Join("..", "..", "image", "spec.json")
	common := []string{"build", "--spec", specPath, "--lock", lockPath, "--daemon-binary", daemon, "--version", "1.0.0", "--revision", "test"}
	code, fromMirror, stderr := runCmd(t, append(common, "--mirror", mirror.URL, "--security-mirror", mirror.URL, "--cache", t.TempDir())...)
	if code != 0 {
		t.Fatalf("mirror build exited %d: %s", code, stderr)
	}
	code, fromDir, stderr := runCmd(t, append(common, "--debs", debs)...)
	if code != 0 {
		t.Fatalf("--debs build exited %d: %s", code, stderr)
	}
	if !strings.HasPrefix(lastLine(fromDir), "sha256:") || lastLine(fromMirror) != lastLine(fromDir) {
		t.Fatalf("mirror build %s, --debs build %s", lastLine(fromMirror), lastLine(fromDir))
	}
}
