package arm64test

import (
	"archive/tar"
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// writeArchive writes the layout in dir as an OCI archive (a tar of it).
func writeArchive(t *testing.T, dir string) string {
	t.Helper()
	archive := filepath.Join(t.TempDir(), "image.oci.tar")
	f, err := os.Create(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	if err := tw.AddFS(os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return archive
}

var (
	amd64   = v1.Platform{OS: "linux", Architecture: "amd64"}
	armv7   = v1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}
	riscv64 = v1.Platform{OS: "linux", Architecture: "riscv64"}
)

// sbom is an artifact manifest beside the images, as imagectl writes one.
func sbom(t *testing.T) v1.Image {
	t.Helper()
	a := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), "application/vnd.oci.empty.v1+json")
	a, err := mutate.Append(a, mutate.Addendum{Layer: layer(t, file("sbom.json", "{}")), MediaType: "application/spdx+json"})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestLoadSelectsThePlatform(t *testing.T) {
	imgs := map[string]v1.Image{
		"amd64": image(t, amd64, layer(t, file("arch", "amd64"))),
		"arm64": image(t, arm64, layer(t, file("arch", "arm64"))),
		"armv7": image(t, armv7, layer(t, file("arch", "armv7"))),
	}
	// The multi-platform index: platforms in the descriptors, nested
	// inside the layout's index.json, an SBOM beside it.
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range []v1.Platform{amd64, arm64, armv7} {
		key := p.Architecture
		if p.Variant != "" {
			key = "armv7"
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: imgs[key], Descriptor: v1.Descriptor{Platform: &p}})
	}
	multi := t.TempDir()
	lp, err := layout.Write(multi, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendIndex(idx); err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(sbom(t), layout.WithAnnotations(map[string]string{"kind": "sbom"})); err != nil {
		t.Fatal(err)
	}
	// A single-platform layout as imagectl writes it today: no platform in
	// the descriptor, the config says it.
	single := t.TempDir()
	if lp, err = layout.Write(single, empty.Index); err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(sbom(t)); err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(imgs["arm64"]); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		name, src string
		p         v1.Platform
		want      string // the arch file's content; "" for an error
		errHas    string
	}{
		{"index, arm64", multi, arm64, "arm64", ""},
		{"index, amd64", multi, amd64, "amd64", ""},
		{"index, arm/v7", multi, armv7, "armv7", ""},
		{"index archive, arm64", writeArchive(t, multi), arm64, "arm64", ""},
		{"index, absent platform", multi, riscv64, "", "no image for linux/riscv64 (found: linux/amd64, linux/arm64, linux/arm/v7)"},
		{"single, arm64", single, arm64, "arm64", ""},
		{"single archive, arm64", writeArchive(t, single), arm64, "arm64", ""},
		{"single, wrong platform", single, amd64, "", "no image for linux/amd64 (found: linux/arm64)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			img, err := Load(c.src, c.p, t.TempDir())
			if c.want == "" {
				if err == nil || !strings.Contains(err.Error(), c.errHas) {
					t.Fatalf("Load: %v, want an error containing %q", err, c.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := read(t, extract(t, img), "arch"); got != c.want {
				t.Errorf("loaded the %s image, want %s", got, c.want)
			}
		})
	}
}

func TestLoadChecksManifestDigests(t *testing.T) {
	img := image(t, arm64, layer(t, file("arch", "arm64")))
	dir := t.TempDir()
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	cfg, _ := img.ConfigName()
	blob := filepath.Join(dir, "blobs", cfg.Algorithm, cfg.Hex)
	b, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	// Same length, other content: the size check alone would pass it.
	b = bytes.Replace(b, []byte(`"arm64"`), []byte(`"arm65"`), 1)
	if err := os.WriteFile(blob, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir, arm64, t.TempDir()); err == nil || !strings.Contains(err.Error(), cfg.String()) {
		t.Errorf("Load with a changed config: %v, want an error naming %s", err, cfg)
	}
}

func TestLoadRefusesArchiveEntriesOutsideTheLayout(t *testing.T) {
	archive := filepath.Join(t.TempDir(), "evil.tar")
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tw.WriteHeader(&tar.Header{Name: "../evil", Typeflag: tar.TypeReg, Mode: 0o644})
	tw.Close()
	if err := os.WriteFile(archive, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	scratch := filepath.Join(t.TempDir(), "scratch")
	if err := os.Mkdir(scratch, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := Load(archive, arm64, scratch)
	if err == nil || !strings.Contains(err.Error(), "leaves the layout") {
		t.Errorf("Load: %v, want a refusal", err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(scratch), "evil")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("evil written beside the scratch directory: %v", err)
	}
}
