package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pulse-sidecar/pulse-sidecar/internal/deb/debtest"
	"github.com/pulse-sidecar/pulse-sidecar/internal/debian"
	"github.com/pulse-sidecar/pulse-sidecar/internal/oci/source"
	"github.com/pulse-sidecar/pulse-sidecar/internal/testenv"
)

// TestFailedLastOutputKeepsEarlierOutputs: outputs are all or nothing. A
// rebuild whose last output (the SBOM) cannot be written must leave the
// layout and archive of the previous build exactly as they were.
func TestFailedLastOutputKeepsEarlierOutputs(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "")
	lockPath, debs, daemon := offlineFixture(t)
	specPath := filepath.Join("..", "..", "image", "spec.json")
	out := t.TempDir()
	lay, archive := filepath.Join(out, "layout"), filepath.Join(out, "img.tar")
	common := []string{"build", "--spec", specPath, "--lock", lockPath, "--debs", debs, "--daemon-binary", daemon, "--revision", "test", "--out", lay, "--oci-archive", archive}
	if code, _, stderr := runCmd(t, append(common, "--version", "1.0.0")...); code != 0 {
		t.Fatalf("build exited %d: %s", code, stderr)
	}
	index, _ := os.ReadFile(filepath.Join(lay, "index.json"))
	tarBytes, _ := os.ReadFile(archive)
	before, _ := os.ReadDir(out)

	notADir := filepath.Join(out, "file")
	os.WriteFile(notADir, nil, 0o644)
	code, _, stderr := runCmd(t, append(common, "--version", "2.0.0", "--sbom", filepath.Join(notADir, "sbom.spdx.json"))...)
	if code == 0 {
		t.Fatal("build succeeded with an SBOM path under a regular file")
	}
	if !strings.Contains(stderr, "sbom.spdx.json") {
		t.Errorf("error does not name the SBOM path: %s", stderr)
	}
	if b, _ := os.ReadFile(filepath.Join(lay, "index.json")); !bytes.Equal(b, index) {
		t.Error("the layout was replaced by a build that failed")
	}
	if b, _ := os.ReadFile(archive); !bytes.Equal(b, tarBytes) {
		t.Error("the OCI archive was replaced by a build that failed")
	}
	after, _ := os.ReadDir(out)
	if len(after) != len(before)+1 { // + notADir
		t.Errorf("leftovers: before %v, after %v", before, after)
	}
}

func TestBadTagIsAUsageErrorBeforeBuilding(t *testing.T) {
	lockPath, debs, daemon := offlineFixture(t)
	out := t.TempDir()
	lay := filepath.Join(out, "layout")
	code, _, stderr := runCmd(t, "build", "--spec", filepath.Join("..", "..", "image", "spec.json"), "--lock", lockPath, "--debs", debs,
		"--daemon-binary", daemon, "--revision", "test", "--tag", "Not A Tag!", "--out", lay, "--docker-archive", filepath.Join(out, "d.tar"))
	if code != exitUsage || !strings.Contains(stderr, "--tag") || !strings.Contains(stderr, "Not A Tag!") {
		t.Fatalf("exit %d, stderr %s", code, stderr)
	}
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Fatalf("a build with a bad --tag wrote %v", ents)
	}
}

// TestCacheFileOfTheRightSizeButWrongContent: the cache matches files by
// name and size; the build must still refuse one whose bytes are not the
// pinned package, and write nothing.
func TestCacheFileOfTheRightSizeButWrongContent(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "")
	lockPath, debs, daemon := offlineFixture(t)
	lock, err := debian.ReadLock(lockPath)
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	for _, p := range lock.Packages {
		if p.Name == "base-files" { // intact, as offlineFixture wrote it
			b, err := os.ReadFile(filepath.Join(debs, p.SHA256))
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(cache, p.SHA256), b, 0o644)
			continue
		}
		// As offlineFixture, but liblapack3's library upper-cased: the
		// members are uncompressed, so the size stays the same.
		lib := map[string]string{"libblas3": "blas", "liblapack3": "lapack"}[p.Name]
		body := lib
		if p.Name == "liblapack3" {
			body = strings.ToUpper(lib)
		}
		b := debtest.Deb(t, debtest.Package{Name: p.Name, Version: p.Version, Data: []debtest.Entry{
			debtest.File(fmt.Sprintf("./usr/lib/x86_64-linux-gnu/%s/%s.so.3", lib, "lib"+lib), body),
		}})
		if int64(len(b)) != p.Size {
			t.Fatalf("fixture: %s is %d bytes, lock says %d", p.Name, len(b), p.Size)
		}
		os.WriteFile(filepath.Join(cache, p.SHA256), b, 0o644)
	}
	var requests atomic.Int32
	mirror := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		http.NotFound(w, r)
	}))
	t.Cleanup(mirror.Close)
	out := t.TempDir()
	code, _, stderr := runCmd(t, "build", "--spec", filepath.Join("..", "..", "image", "spec.json"), "--lock", lockPath,
		"--daemon-binary", daemon, "--revision", "test", "--cache", cache,
		"--mirror", mirror.URL, "--security-mirror", mirror.URL, "--snapshot-mirror", mirror.URL,
		"--out", filepath.Join(out, "layout"), "--oci-archive", filepath.Join(out, "img.tar"))
	if code == 0 {
		t.Fatal("built from a cached .deb whose content is not the pinned one")
	}
	if !strings.Contains(stderr, "liblapack3") || !strings.Contains(stderr, "sha256") {
		t.Errorf("error does not name the package and its digest: %s", stderr)
	}
	if strings.Contains(stderr, "libblas3") {
		t.Errorf("the intact package is blamed too: %s", stderr)
	}
	if requests.Load() != 0 {
		t.Errorf("%d requests to the mirror: the cache should have served both", requests.Load())
	}
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Fatalf("a failed build wrote %v", ents)
	}
}

func TestSourceDateEpoch(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "")
	lock := &debian.Lock{}
	for v, want := range map[string]time.Time{"0": time.Unix(0, 0), "1700000000": time.Unix(1700000000, 0)} {
		got, err := sourceDateEpoch(v, lock)
		if err != nil || !got.Equal(want) {
			t.Errorf("--source-date-epoch=%s: %v, %v", v, got, err)
		}
	}
	t.Setenv("SOURCE_DATE_EPOCH", "0")
	if got, err := sourceDateEpoch("", lock); err != nil || got.Unix() != 0 {
		t.Errorf("SOURCE_DATE_EPOCH=0: %v, %v", got, err)
	}
	for _, bad := range []string{"-1", "+5", "yesterday", "1.5", " 1"} {
		t.Setenv("SOURCE_DATE_EPOCH", bad)
		if _, err := sourceDateEpoch("", lock); err == nil || !strings.Contains(err.Error(), "SOURCE_DATE_EPOCH") || !strings.Contains(err.Error(), bad) {
			t.Errorf("SOURCE_DATE_EPOCH=%q: %v", bad, err)
		}
	}
}

func TestRevisionNoneLeavesTheLabelOut(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "")
	lockPath, debs, daemon := offlineFixture(t)
	lay := filepath.Join(t.TempDir(), "layout")
	code, _, stderr := runCmd(t, "build", "--spec", filepath.Join("..", "..", "image", "spec.json"), "--lock", lockPath, "--debs", debs,
		"--daemon-binary", daemon, "--revision", "none", "--out", lay)
	if code != 0 {
		t.Fatalf("build exited %d: %s", code, stderr)
	}
	img, err := source.Load(lay)
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	const key = "org.opencontainers.image.revision"
	if v, ok := m.Annotations[key]; ok {
		t.Errorf("annotation %s=%q with --revision none", key, v)
	}
	if v, ok := cf.Config.Labels[key]; ok {
		t.Errorf("label %s=%q with --revision none", key, v)
	}
}

// TestBuiltLayoutReadUnnamedBySkopeo: what `imagectl build --out` writes is
// read by skopeo without naming the image; the SBOM is beside it, not in
// it (skopeo refused the layout that listed the SBOM artifact too).
func TestBuiltLayoutReadUnnamedBySkopeo(t *testing.T) {
	skopeo := testenv.Tool(t, "skopeo")
	t.Setenv("SOURCE_DATE_EPOCH", "")
	lockPath, debs, daemon := offlineFixture(t)
	dir, err := os.MkdirTemp("", "imgoci-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	lay := filepath.Join(dir, "image")
	code, stdout, stderr := runCmd(t, "build", "--spec", repoSpec, "--lock", lockPath, "--debs", debs,
		"--daemon-binary", daemon, "--revision", "test", "--out", lay, "--oci-archive", filepath.Join(dir, "img.tar"))
	if code != 0 {
		t.Fatalf("build exited %d: %s", code, stderr)
	}
	for _, f := range []string{lay + ".spdx.json", filepath.Join(dir, "img.tar.spdx.json")} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("no SBOM beside the output: %v", err)
		}
	}
	out, err := exec.Command(skopeo, "inspect", "oci:"+lay).CombinedOutput()
	if err != nil {
		t.Fatalf("skopeo inspect oci:%s: %v\n%s", lay, err, out)
	}
	var inspect struct{ Digest string }
	if err := json.Unmarshal(out, &inspect); err != nil || inspect.Digest != lastLine(stdout) {
		t.Fatalf("skopeo sees %q (%v), build printed %s", inspect.Digest, err, lastLine(stdout))
	}
}
