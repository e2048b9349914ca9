package sink_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/pulse-sidecar/pulse-sidecar/internal/oci"
	"github.com/pulse-sidecar/pulse-sidecar/internal/oci/ocitest"
	"github.com/pulse-sidecar/pulse-sidecar/internal/oci/sink"
	"github.com/pulse-sidecar/pulse-sidecar/internal/testenv"
)

// lowerTempDir is a temp dir whose path podman accepts: its oci:
// transport derives an image name from the path and refuses upper case,
// which t.TempDir's test-named directories have.
func lowerTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "imgoci-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func runTool(ctx context.Context, t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

// TestLayoutReadUnnamed: the layout `imagectl build --out` writes is read
// by skopeo, podman and ggcr without naming the image (issue 14 item 5;
// skopeo refused the old layout, which listed the SBOM beside the image:
// "more than one image in oci, choose an image").
func TestLayoutReadUnnamed(t *testing.T) {
	skopeo := testenv.Tool(t, "skopeo")
	podman := testenv.Tool(t, "podman")
	testenv.Tool(t, "runc")
	img := ocitest.Image(t, "x")
	want := ocitest.Digest(t, img).String()
	dir := lowerTempDir(t)
	lay := filepath.Join(dir, "image")
	if err := sink.WriteLayout(lay, img, "pulse-sidecar:test"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	t.Run("ggcr", func(t *testing.T) {
		p, err := layout.FromPath(lay)
		if err != nil {
			t.Fatal(err)
		}
		idx, err := p.ImageIndex()
		if err != nil {
			t.Fatal(err)
		}
		m, err := idx.IndexManifest()
		if err != nil || len(m.Manifests) != 1 {
			t.Fatalf("index: %v, %v", m, err)
		}
		got, err := idx.Image(m.Manifests[0].Digest)
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Image(got); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("skopeo", func(t *testing.T) {
		var inspect struct{ Digest string }
		out := runTool(ctx, t, nil, skopeo, "inspect", "oci:"+lay)
		if err := json.Unmarshal([]byte(out), &inspect); err != nil || inspect.Digest != want {
			t.Fatalf("skopeo inspect oci:%s: digest %q (%v), built %s", lay, inspect.Digest, err, want)
		}
		copied := filepath.Join(dir, "copied")
		runTool(ctx, t, nil, skopeo, "--insecure-policy", "copy", "oci:"+lay, "oci:"+copied+":copied")
		out = runTool(ctx, t, nil, skopeo, "inspect", "oci:"+copied+":copied")
		if err := json.Unmarshal([]byte(out), &inspect); err != nil || inspect.Digest != want {
			t.Fatalf("skopeo copy kept digest %q (%v), built %s", inspect.Digest, err, want)
		}
	})

	t.Run("podman", func(t *testing.T) {
		conf := filepath.Join(dir, "containers.conf")
		os.WriteFile(conf, []byte("[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=1024:1024\"]\n[engine]\nruntime = \"runc\"\n"), 0o644)
		env := []string{"CONTAINERS_CONF=" + conf}
		base := []string{"--root", filepath.Join(dir, "podman-root"), "--runroot", filepath.Join(dir, "podman-run")}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			exec.CommandContext(ctx, podman, append(base, "rmi", "--all", "--force")...).Run()
		})
		out := runTool(ctx, t, env, podman, append(base, "pull", "-q", "oci:"+lay)...)
		id := strings.TrimSpace(out)
		got := strings.TrimSpace(runTool(ctx, t, env, podman, append(base, "image", "inspect", "--format", "{{.Digest}}", id)...))
		if got != want {
			t.Fatalf("podman pull oci:%s holds %s, built %s", lay, got, want)
		}
		cfg, _ := img.ConfigName()
		if !strings.HasPrefix(id, cfg.Hex) {
			t.Errorf("podman image ID %s, config %s", id, cfg)
		}
	})
}

// platformImage is an image whose entrypoint is a static Go program built for
// goarch that prints goarch: what a runtime runs tells which platform of
// an index it picked.
func platformImage(t *testing.T, goarch string) v1.Image {
	t.Helper()
	goTool := testenv.Tool(t, "go")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.test/whoami\n\ngo 1.25.0\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nimport (\n\t\"fmt\"\n\t\"runtime\"\n)\n\nfunc main() { fmt.Println(runtime.GOARCH) }\n"), 0o644)
	bin := filepath.Join(dir, "whoami")
	cmd := exec.Command(goTool, "build", "-trimpath", "-o", bin, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch, "GOWORK=off", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build for %s: %v\n%s", goarch, err, out)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "whoami", Mode: 0o755, Size: int64(len(b)), ModTime: ocitest.Epoch, Format: tar.FormatPAX})
	tw.Write(b)
	tw.Close()
	l, err := oci.NewLayerFromTar(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	variant := map[string]string{"arm64": "v8"}[goarch]
	img, err := oci.Assemble(oci.Image{Created: ocitest.Epoch, OS: "linux", Architecture: goarch, Variant: variant,
		Config: v1.Config{Entrypoint: []string{"/whoami"}}, Layers: []oci.Layer{{Layer: l, CreatedBy: "whoami"}}})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// TestIndexReadByPodmanAndSkopeo: an index of an amd64 and an arm64 image,
// written as a layout and an OCI archive, is read unnamed by skopeo and
// podman, and podman loads and runs the host's platform from it (issue 12:
// the e2e tests load the index archive and must get amd64 on this machine).
func TestIndexReadByPodmanAndSkopeo(t *testing.T) {
	skopeo := testenv.Tool(t, "skopeo")
	podman := testenv.Tool(t, "podman")
	testenv.Tool(t, "runc")
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64" {
		if testenv.CI() {
			t.Fatalf("CI runs on amd64 or arm64; this machine is %s", runtime.GOARCH)
		}
		t.Skipf("the index holds amd64 and arm64; this machine is %s", runtime.GOARCH)
	}
	amd, arm := platformImage(t, "amd64"), platformImage(t, "arm64")
	idx, err := oci.AssembleIndex([]v1.Image{amd, arm})
	if err != nil {
		t.Fatal(err)
	}
	indexDigest, _ := idx.Digest()
	host := map[string]v1.Image{"amd64": amd, "arm64": arm}[runtime.GOARCH]
	hostDigest := ocitest.Digest(t, host).String()
	dir := lowerTempDir(t)
	lay, archive := filepath.Join(dir, "image"), filepath.Join(dir, "image.oci.tar")
	if err := sink.WriteLayout(lay, idx, "localhost/whoami:test"); err != nil {
		t.Fatal(err)
	}
	if err := sink.WriteOCIArchive(archive, idx, "localhost/whoami:test"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(lay, "index.json"))
	var top struct {
		Manifests []struct{ MediaType, Digest string }
	}
	if json.Unmarshal(b, &top); len(top.Manifests) != 1 || top.Manifests[0].Digest != indexDigest.String() {
		t.Fatalf("index.json does not list the image index alone:\n%s", b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	t.Run("skopeo", func(t *testing.T) {
		raw := runTool(ctx, t, nil, skopeo, "inspect", "--raw", "oci:"+lay)
		if h, _, _ := v1.SHA256(strings.NewReader(raw)); h != indexDigest {
			t.Fatalf("skopeo inspect --raw oci:%s is %s, the index is %s", lay, h, indexDigest)
		}
		for _, p := range []struct{ arch, want string }{{"amd64", ocitest.Digest(t, amd).String()}, {"arm64", ocitest.Digest(t, arm).String()}} {
			var inspect struct{ Architecture string }
			out := runTool(ctx, t, nil, skopeo, "--override-arch", p.arch, "inspect", "oci:"+lay)
			if err := json.Unmarshal([]byte(out), &inspect); err != nil || inspect.Architecture != p.arch {
				t.Errorf("skopeo --override-arch %s inspect: architecture %q (%v)", p.arch, inspect.Architecture, err)
			}
		}
	})

	t.Run("podman", func(t *testing.T) {
		conf := filepath.Join(dir, "containers.conf")
		os.WriteFile(conf, []byte("[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=1024:1024\"]\n[engine]\nruntime = \"runc\"\n"), 0o644)
		env := []string{"CONTAINERS_CONF=" + conf}
		base := []string{"--root", filepath.Join(dir, "podman-root"), "--runroot", filepath.Join(dir, "podman-run")}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			exec.CommandContext(ctx, podman, append(base, "rmi", "--all", "--force")...).Run()
		})
		runTool(ctx, t, env, podman, append(base, "load", "-i", archive)...)
		// podman records the digest it was given (the index's, as for a
		// pull by tag); the image it stored is the host platform's config.
		cfg, _ := host.ConfigName()
		got := strings.TrimSpace(runTool(ctx, t, env, podman, append(base, "image", "inspect", "--format", "{{.Id}} {{.Architecture}} {{.Digest}}", "localhost/whoami:test")...))
		if want := cfg.Hex + " " + runtime.GOARCH + " " + indexDigest.String(); got != want {
			t.Errorf("podman load of the index holds %q, want the host's image %q (manifest %s)", got, want, hostDigest)
		}
		out := strings.TrimSpace(runTool(ctx, t, env, podman, append(base, "run", "--rm", "localhost/whoami:test")...))
		if out != runtime.GOARCH {
			t.Errorf("podman run of the loaded index printed %q, want %s", out, runtime.GOARCH)
		}
		id := strings.TrimSpace(runTool(ctx, t, env, podman, append(base, "pull", "-q", "oci:"+lay)...))
		if !strings.HasPrefix(id, cfg.Hex) {
			t.Errorf("podman pull oci:%s gave image %s, the host's config is %s", lay, id, cfg)
		}
	})
}
