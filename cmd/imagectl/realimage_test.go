package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/pulse-sidecar/pulse-sidecar/internal/oci/sink"
	"github.com/pulse-sidecar/pulse-sidecar/internal/oci/source"
	"github.com/pulse-sidecar/pulse-sidecar/internal/testenv"
)

// imageArchiveEnv is the OCI archive CI has already built from this
// commit; when set, one fresh build is compared with it instead of
// building twice.
const imageArchiveEnv = "PULSE_SIDECAR_IMAGE_ARCHIVE"

// TestRealImage builds the real image from image/ (the .debs from the
// mirror in the apt sources, through the download cache outside the
// repository), proves two builds agree, runs it under podman as 102:104,
// pushes it to two registries and checks the policy on what they serve.
func TestRealImage(t *testing.T) {
	if !testenv.CI() && os.Getenv("IMAGECTL_NETWORK_TESTS") != "1" {
		t.Skip("set IMAGECTL_NETWORK_TESTS=1 to build the real image (network to the Debian mirror, minutes)")
	}
	testenv.Tool(t, "go") // imagectl compiles the daemon
	podman := testenv.Tool(t, "podman")
	testenv.Tool(t, "runc")
	testenv.Tool(t, "docker-registry") // checked before minutes of building, not at the push
	t.Setenv(asImagectlEnv, "1")       // verify re-executes this binary as imagectl
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()

	dir := t.TempDir()
	layout := filepath.Join(dir, "layout")
	version, revision := "dev", "realimage-test"
	args := []string{"verify", "--spec", repoSpec, "--lock", "../../image/debian.lock.json", "--out", layout}
	if archive := os.Getenv(imageArchiveEnv); archive != "" {
		// Build with what CI stamped into its image, so the two can agree.
		img, err := source.Load(archive)
		if err != nil {
			t.Fatalf("%s: %v", imageArchiveEnv, err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		version = cf.Config.Labels["org.opencontainers.image.version"]
		revision = cf.Config.Labels["org.opencontainers.image.revision"]
		t.Setenv("SOURCE_DATE_EPOCH", strconv.FormatInt(cf.Created.Unix(), 10))
		args = append(args, "--against", archive)
	}
	args = append(args, "--version", version, "--revision", revision)
	start := time.Now()
	code, stdout, stderr := runCmdCtx(ctx, t, args...)
	if code != 0 {
		t.Fatalf("imagectl %s: exit %d\n%s\n%s", strings.Join(args, " "), code, stdout, tail(stderr, 60))
	}
	digest := lastLine(stdout)
	t.Logf("verify (two builds agree) in %s: %s", time.Since(start).Round(time.Second), digest)
	logSizes(t, layout)

	// podman, with a private store so the machine's is untouched.
	archive := filepath.Join(dir, "image.tar")
	img, err := source.Load(layout)
	if err != nil {
		t.Fatal(err)
	}
	ref := "localhost/pulse-sidecar:realimage"
	if err := sink.WriteOCIArchive(archive, img, ref); err != nil {
		t.Fatal(err)
	}
	pm := podmanIn(t, podman, dir)
	pm(ctx, "load", "-i", archive)
	if got := strings.TrimSpace(pm(ctx, "image", "inspect", "--format", "{{.Digest}}", ref)); got != digest {
		t.Errorf("podman holds %s, built %s", got, digest)
	}
	out := pm(ctx, "run", "--rm", "--user", "102:104", "--read-only", ref, "version")
	if first := strings.SplitN(out, "\n", 2)[0]; first != "pulse-sidecar "+version {
		t.Errorf("podman run ... version printed %q, want %q", first, "pulse-sidecar "+version)
	}

	// Both registries serve exactly the built manifest, and it passes the policy.
	inProcess := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(inProcess.Close)
	for _, host := range []string{testenv.DockerRegistry(t), strings.TrimPrefix(inProcess.URL, "http://")} {
		repo := host + "/pulse-sidecar"
		code, stdout, stderr := runCmdCtx(ctx, t, "push", layout, "--repository", repo, "--tag", "realimage")
		if code != 0 {
			t.Fatalf("push to %s: exit %d\n%s", host, code, stderr)
		}
		if got := strings.TrimSpace(stdout); got != repo+"@"+digest {
			t.Errorf("push printed %s, want %s@%s", got, repo, digest)
		}
		tag, err := name.NewTag(repo + ":realimage")
		if err != nil {
			t.Fatal(err)
		}
		desc, err := remote.Get(tag, remote.WithContext(ctx))
		if err != nil {
			t.Fatal(err)
		}
		if desc.Digest.String() != digest {
			t.Errorf("%s serves %s, built %s", tag, desc.Digest, digest)
		}
		// The SBOM beside the layout went along as a referrer (the
		// distribution registry through the tag fallback).
		refs, err := remote.Referrers(tag.Context().Digest(digest), remote.WithContext(ctx))
		if err != nil {
			t.Fatal(err)
		}
		im, err := refs.IndexManifest()
		if err != nil || len(im.Manifests) != 1 {
			t.Errorf("%s: referrers of %s: %v (%v), want the SBOM", host, digest, im, err)
		}
	}
	code, stdout, stderr = runCmdCtx(ctx, t, "policy", strings.TrimPrefix(inProcess.URL, "http://")+"/pulse-sidecar@"+digest,
		"--spec", repoSpec, "--lock", "../../image/debian.lock.json")
	if code != 0 {
		t.Fatalf("policy on the pushed image: exit %d\n%s%s", code, stdout, stderr)
	}
}

func runCmdCtx(ctx context.Context, t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(ctx, args, &o, &e)
	return code, o.String(), e.String()
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// logSizes records the figures docs/BENCHMARKS.md quotes.
func logSizes(t *testing.T, layout string) {
	t.Helper()
	img, err := source.Load(layout)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var compressed int64
	var sizes []string
	for _, l := range layers {
		n, err := l.Size()
		if err != nil {
			t.Fatal(err)
		}
		compressed += n
		sizes = append(sizes, fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)))
	}
	t.Logf("%d layers (%s), %.1f MiB compressed", len(layers), strings.Join(sizes, ", "), float64(compressed)/(1<<20))
}

// podmanIn returns a runner of podman with CONTAINERS_CONF and a private
// storage root below dir; the images are removed when the test ends.
func podmanIn(t *testing.T, podman, dir string) func(ctx context.Context, args ...string) string {
	t.Helper()
	conf := filepath.Join(dir, "containers.conf")
	err := os.WriteFile(conf, []byte("[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=1024:1024\"]\n[engine]\nruntime = \"runc\"\n"), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	base := []string{"--root", filepath.Join(dir, "podman-root"), "--runroot", filepath.Join(dir, "podman-run")}
	pm := func(ctx context.Context, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, podman, append(base, args...)...)
		cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+conf)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			return out.String(), fmt.Errorf("podman %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
		}
		return out.String(), nil
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if _, err := pm(ctx, "rmi", "--all", "--force"); err != nil {
			t.Log(err)
		}
	})
	return func(ctx context.Context, args ...string) string {
		t.Helper()
		out, err := pm(ctx, args...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
}
