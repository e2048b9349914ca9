package main

import (
	"archive/tar"
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/pulse-sidecar/pulse-sidecar/internal/oci/source"
	"github.com/pulse-sidecar/pulse-sidecar/internal/sbom"
	"github.com/pulse-sidecar/pulse-sidecar/internal/testenv"
)

// TestIndexAndSinglePlatformBuildsAgree (issue 12): `imagectl build` makes
// an index of the spec's platforms, each built from its architecture's
// packages and daemon; --platform (or --arch) builds one platform, and its
// manifest digest is that platform's entry in the index. The docker archive
// holds the host's platform, or the one --platform names.
func TestIndexAndSinglePlatformBuildsAgree(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "")
	lockPath, debs, daemon := offlineFixture(t)
	dir := t.TempDir()
	common := []string{"build", "--spec", repoSpec, "--lock", lockPath, "--debs", debs, "--daemon-binary", daemon, "--revision", "test"}
	lay := filepath.Join(dir, "index")
	code, stdout, stderr := runCmd(t, append(common, "--out", lay, "--docker-archive", filepath.Join(dir, "host.docker.tar"))...)
	if code != 0 {
		t.Fatalf("build exited %d: %s", code, stderr)
	}
	a, err := source.LoadAny(lay)
	if err != nil {
		t.Fatal(err)
	}
	if a.Index == nil {
		t.Fatal("the default build wrote one image, not an index")
	}
	if d, _ := a.Digest(); d.String() != lastLine(stdout) {
		t.Fatalf("last line %q, index %s", lastLine(stdout), d)
	}
	im, _ := a.Index.IndexManifest()
	entries := map[string]v1.Descriptor{}
	for _, d := range im.Manifests {
		entries[d.Platform.OS+"/"+d.Platform.Architecture+"/"+d.Platform.Variant] = d
	}
	wantPlatforms := map[string]string{"linux/amd64/": "amd64", "linux/arm64/v8": "arm64"}
	if len(entries) != 2 || im.MediaType != "application/vnd.oci.image.index.v1+json" {
		t.Fatalf("index %s lists %v", im.MediaType, entries)
	}
	for p, arch := range wantPlatforms {
		d, ok := entries[p]
		if !ok {
			t.Fatalf("index lacks %s: %v", p, entries)
		}
		// Built from its own architecture's packages and daemon.
		img, _ := a.Index.Image(d.Digest)
		files := layerFiles(t, img)
		triplet := map[string]string{"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}[arch]
		if files["usr/lib/"+triplet+"/blas/libblas.so.3"] != "blas "+arch || files["usr/bin/pulse-sidecar"] != "\x7fELF fake daemon for "+arch {
			t.Errorf("%s image does not hold %s's packages and daemon", p, arch)
		}
		// Its line before the index digest, and its SBOM beside the layout.
		name := strings.TrimSuffix(p, "/")
		if !strings.Contains(stdout, name+" "+d.Digest.String()+"\n") {
			t.Errorf("stdout does not list %s %s:\n%s", name, d.Digest, stdout)
		}
		doc, err := os.ReadFile(lay + "." + strings.ReplaceAll(name, "/", "-") + ".spdx.json")
		if err != nil {
			t.Fatal(err)
		}
		if about, err := sbom.Describes(doc); err != nil || about != d.Digest {
			t.Errorf("%s SBOM describes %s (%v), want %s", name, about, err, d.Digest)
		}
	}

	for _, c := range []struct {
		flags []string
		entry string
	}{
		{[]string{"--platform", "linux/arm64"}, "linux/arm64/v8"},
		{[]string{"--platform", "linux/arm64/v8"}, "linux/arm64/v8"},
		{[]string{"--arch", "amd64"}, "linux/amd64/"},
	} {
		out := filepath.Join(dir, strings.NewReplacer("/", "-", " ", "").Replace(strings.Join(c.flags, "")))
		args := append(append(common, c.flags...), "--out", out, "--docker-archive", out+".docker.tar")
		code, stdout, stderr := runCmd(t, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", c.flags, code, stderr)
		}
		if got, want := lastLine(stdout), entries[c.entry].Digest.String(); got != want {
			t.Errorf("%v printed %s, the index's %s entry is %s", c.flags, got, c.entry, want)
		}
		single, err := source.Load(out)
		if err != nil {
			t.Fatalf("%v: %v", c.flags, err)
		}
		if d, _ := single.Digest(); d != entries[c.entry].Digest {
			t.Errorf("%v layout holds %s", c.flags, d)
		}
		if _, err := os.Stat(out + ".spdx.json"); err != nil {
			t.Errorf("%v: no SBOM beside the single-platform layout: %v", c.flags, err)
		}
		if got := dockerArch(t, out+".docker.tar"); got != strings.Split(c.entry, "/")[1] {
			t.Errorf("%v: docker archive holds %s", c.flags, got)
		}
	}
	if got := dockerArch(t, filepath.Join(dir, "host.docker.tar")); got != runtime.GOARCH {
		t.Errorf("docker archive of the index build holds %s, this machine is %s", got, runtime.GOARCH)
	}

	// Usage errors, before any building.
	for _, bad := range [][]string{{"--platform", "linux/s390x"}, {"--platform", "linux/arm64", "--arch", "arm64"}, {"--arch", "mips"}} {
		if code, _, stderr := runCmd(t, append(append(common[:len(common):len(common)], bad...), "--out", filepath.Join(dir, "bad"))...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d: %s", bad, code, exitUsage, stderr)
		}
	}
	onePath := []string{"build", "--spec", repoSpec, "--lock", lockPath, "--debs", debs, "--daemon-binary", strings.Split(strings.Split(daemon, ",")[0], "=")[1], "--out", filepath.Join(dir, "bad")}
	if code, _, stderr := runCmd(t, onePath...); code != exitUsage || !strings.Contains(stderr, "ARCH=PATH") {
		t.Errorf("one --daemon-binary for an index: exit %d: %s", code, stderr)
	}
}

func dockerArch(t *testing.T, file string) string {
	t.Helper()
	img, err := source.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	return cf.Architecture
}

// layerFiles reads every regular file of img's layers.
func layerFiles(t *testing.T, img v1.Image) map[string]string {
	t.Helper()
	out := map[string]string{}
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		for name, body := range tarFiles(t, rc) {
			out[name] = body
		}
		rc.Close()
	}
	return out
}

// TestPushIndexCommand: `imagectl push` of an index layout sends the index
// by digest, then the tag, to both registries; each platform's SBOM beside
// the layout becomes a referrer of that platform's manifest; diff and
// policy read the pushed index back and name each platform.
func TestPushIndexCommand(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "")
	lockPath, debs, daemon := offlineFixture(t)
	dir := t.TempDir()
	lay := filepath.Join(dir, "index")
	code, stdout, stderr := runCmd(t, "build", "--spec", repoSpec, "--lock", lockPath, "--debs", debs, "--daemon-binary", daemon, "--revision", "test", "--out", lay)
	if code != 0 {
		t.Fatal(stderr)
	}
	digest := lastLine(stdout)
	inProc := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(inProc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, host := range []string{strings.TrimPrefix(inProc.URL, "http://"), testenv.DockerRegistry(t)} {
		repo := host + "/pulse-sidecar"
		code, pushed, stderr := runCmd(t, "push", lay, "--repository", repo, "--tag", "multi")
		if code != 0 {
			t.Fatalf("push to %s: %s", host, stderr)
		}
		if got := strings.TrimSpace(pushed); got != repo+"@"+digest {
			t.Fatalf("push printed %s, want %s@%s", got, repo, digest)
		}
		tag, _ := name.NewTag(repo + ":multi")
		d, err := remote.Get(tag, remote.WithContext(ctx))
		if err != nil {
			t.Fatal(err)
		}
		if d.Digest.String() != digest {
			t.Errorf("%s serves %s, built %s", tag, d.Digest, digest)
		}
		a, err := source.LoadAny(lay)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range a.Platforms {
			pd, _ := p.Image.Digest()
			idx, err := remote.Referrers(tag.Context().Digest(pd.String()), remote.WithContext(ctx))
			if err != nil {
				t.Fatal(err)
			}
			m, _ := idx.IndexManifest()
			if len(m.Manifests) != 1 || m.Manifests[0].ArtifactType != sbom.MediaType {
				t.Errorf("%s: %s has referrers %+v, want its SBOM", host, p.Name(), m.Manifests)
			}
		}
		a.Close()
		// The pushed index passes the policy on every platform, and
		// compares equal to the layout.
		code, out, stderr := runCmd(t, "policy", strings.TrimSpace(pushed), "--spec", repoSpec, "--lock", lockPath, "--format", "json")
		var report struct {
			Platforms map[string]struct{ Pass bool }
		}
		if code != 0 || json.Unmarshal([]byte(out), &report) != nil || len(report.Platforms) != 2 || !report.Platforms["linux/arm64/v8"].Pass || !report.Platforms["linux/amd64"].Pass {
			t.Errorf("policy of the pushed index: exit %d\n%s%s", code, out, stderr)
		}
		if code, out, stderr := runCmd(t, "diff", lay, strings.TrimSpace(pushed)); code != 0 || !strings.Contains(out, "== linux/arm64/v8") {
			t.Errorf("diff of the layout and the pushed index: exit %d\n%s%s", code, out, stderr)
		}
	}
}

// TestDiffNamesThePlatform: two indexes that differ in one platform only
// are reported under that platform's name; an index against one platform's
// image compares that platform alone.
func TestDiffNamesThePlatform(t *testing.T) {
	t.Setenv(asImagectlEnv, "1") // verify re-executes this binary as imagectl
	t.Setenv("SOURCE_DATE_EPOCH", "")
	lockPath, debs, daemon := offlineFixture(t)
	dir := t.TempDir()
	other := filepath.Join(dir, "other-arm64-daemon")
	os.WriteFile(other, []byte("\x7fELF another arm64 daemon"), 0o755)
	amd := strings.Split(daemon, ",")[0]
	build := func(out, daemons string, extra ...string) string {
		args := append([]string{"build", "--spec", repoSpec, "--lock", lockPath, "--debs", debs, "--daemon-binary", daemons, "--revision", "test", "--out", out}, extra...)
		code, stdout, stderr := runCmd(t, args...)
		if code != 0 {
			t.Fatal(stderr)
		}
		return lastLine(stdout)
	}
	a, b, arm := filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "arm")
	build(a, daemon)
	build(b, amd+",arm64="+other)
	build(arm, daemon, "--platform", "linux/arm64")
	code, out, stderr := runCmd(t, "diff", a, b)
	if code != 1 {
		t.Fatalf("diff exit %d: %s%s", code, out, stderr)
	}
	amdPart, armPart, ok := strings.Cut(out, "== linux/arm64/v8")
	if !ok || !strings.Contains(amdPart, "== linux/amd64") || !strings.Contains(armPart, "/usr/bin/pulse-sidecar") || strings.Contains(amdPart, "/usr/bin/pulse-sidecar") {
		t.Fatalf("the daemon difference is not named under linux/arm64/v8 alone:\n%s", out)
	}
	if code, out, stderr := runCmd(t, "diff", a, arm); code != 0 || strings.Contains(out, "linux/amd64") {
		t.Fatalf("index vs its arm64 image: exit %d\n%s%s", code, out, stderr)
	}
	code, out, _ = runCmd(t, "diff", b, arm)
	if code != 1 || !strings.Contains(out, "== linux/arm64/v8") {
		t.Fatalf("index vs another arm64 image: exit %d\n%s", code, out)
	}
	// verify --against names the platform too.
	code, out, _ = runCmd(t, "verify", "--spec", repoSpec, "--lock", lockPath, "--debs", debs, "--daemon-binary", daemon, "--revision", "test", "--against", b)
	if code != 1 || !strings.Contains(out, "linux/arm64/v8: layer") || !strings.Contains(out, "index: ") || strings.Contains(out, "linux/amd64: ") {
		t.Fatalf("verify --against an index differing in arm64: exit %d\n%s", code, out)
	}
}

func tarFiles(t *testing.T, r io.Reader) map[string]string {
	t.Helper()
	out := map[string]string{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			b, _ := io.ReadAll(tr)
			out[strings.TrimPrefix(h.Name, "./")] = string(b)
		}
	}
}
