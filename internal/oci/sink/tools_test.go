package sink_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/validate"

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
