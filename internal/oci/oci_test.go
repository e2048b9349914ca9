package oci_test

import (
	"bytes"
	"io"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/pulse-sidecar/pulse-sidecar/internal/oci"
	"github.com/pulse-sidecar/pulse-sidecar/internal/oci/ocitest"
)

func TestAssembleIsDeterministic(t *testing.T) {
	a, b := ocitest.Digest(t, ocitest.Image(t, "x")), ocitest.Digest(t, ocitest.Image(t, "x"))
	if a != b {
		t.Fatalf("same inputs, digests %s and %s", a, b)
	}
	if c := ocitest.Digest(t, ocitest.Image(t, "y")); c == a {
		t.Fatal("different content, same digest")
	}
}

// TestValidate runs ggcr's validate over our hand-built layer type and an
// assembled image: it recomputes every digest, diffID and size from the
// bytes, and checks the manifest and config agree with them.
func TestValidate(t *testing.T) {
	l, err := oci.NewLayerFromTar(ocitest.Tar(t, "etc/a", "one", "etc/b", strings.Repeat("two", 1000)))
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Layer(l); err != nil {
		t.Fatalf("layer: %v", err)
	}
	if err := validate.Image(ocitest.Image(t, "x")); err != nil {
		t.Fatalf("image: %v", err)
	}
	// The same check fails a layer that lies about its bytes.
	if err := validate.Layer(lying{l}); err == nil {
		t.Fatal("validate accepted a layer whose digest is not its content's")
	}
}

type lying struct{ v1.Layer }

func (lying) Digest() (v1.Hash, error) {
	return v1.NewHash("sha256:" + strings.Repeat("0", 64))
}

func TestLayerRoundTrip(t *testing.T) {
	const data = "not really a tar, but bytes are bytes\n"
	l, err := oci.NewLayerFromTar([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	diff, _ := l.DiffID()
	if want, _, _ := v1.SHA256(strings.NewReader(data)); diff != want {
		t.Fatalf("diffID %s is not the sha256 of the uncompressed bytes (%s)", diff, want)
	}
	rc, _ := l.Uncompressed()
	got, _ := io.ReadAll(rc)
	if string(got) != data {
		t.Fatalf("round trip = %q", got)
	}
}

func TestImageShape(t *testing.T) {
	img := ocitest.Image(t, "x")
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON {
		t.Fatalf("media types %s / %s", m.MediaType, m.Config.MediaType)
	}
	for _, l := range m.Layers {
		if l.MediaType != types.OCILayer {
			t.Fatalf("layer media type %s", l.MediaType)
		}
	}
	if m.Annotations["org.opencontainers.image.title"] != "t" {
		t.Fatalf("annotations %v", m.Annotations)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !cf.Created.Time.Equal(ocitest.Epoch) || cf.Config.User != "102:104" || cf.OS != "linux" || cf.Architecture != "amd64" {
		t.Fatalf("config %+v", cf)
	}
	if len(cf.History) != 2 || cf.History[1].CreatedBy != "daemon" || !cf.History[0].Created.Time.Equal(ocitest.Epoch) {
		t.Fatalf("history %+v", cf.History)
	}
	if len(cf.RootFS.DiffIDs) != 2 {
		t.Fatalf("rootfs %+v", cf.RootFS)
	}
	if _, err := oci.Assemble(oci.Image{Created: ocitest.Epoch, OS: "linux"}); err == nil {
		t.Fatal("no architecture accepted")
	}
}

func BenchmarkNewLayer(b *testing.B) {
	data := bytes.Repeat([]byte("pulse-sidecar layer bytes 0123456789\n"), 1<<15)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := oci.NewLayerFromTar(data); err != nil {
			b.Fatal(err)
		}
	}
}
