package sink_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/pulse-sidecar/pulse-sidecar/internal/oci"
	"github.com/pulse-sidecar/pulse-sidecar/internal/oci/ocitest"
	"github.com/pulse-sidecar/pulse-sidecar/internal/oci/sink"
	"github.com/pulse-sidecar/pulse-sidecar/internal/oci/source"
	"github.com/pulse-sidecar/pulse-sidecar/internal/sbom"
	"github.com/pulse-sidecar/pulse-sidecar/internal/testenv"
)

func TestOutputsRoundTrip(t *testing.T) {
	img := ocitest.Image(t, "x")
	want := ocitest.Digest(t, img)
	dir := t.TempDir()
	layoutDir := filepath.Join(dir, "out")
	ociFile := filepath.Join(dir, "img.oci.tar")
	dockerFile := filepath.Join(dir, "img.docker.tar")
	if err := sink.WriteLayout(layoutDir, img, "pulse-sidecar:test"); err != nil {
		t.Fatal(err)
	}
	// A second write replaces the first in place.
	if err := sink.WriteLayout(layoutDir, img, "pulse-sidecar:test"); err != nil {
		t.Fatal(err)
	}
	if err := sink.WriteOCIArchive(ociFile, img, "pulse-sidecar:test"); err != nil {
		t.Fatal(err)
	}
	if err := sink.WriteDockerArchive(dockerFile, img, "pulse-sidecar:test"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{layoutDir, ociFile} {
		got, err := source.Load(p)
		if err != nil {
			t.Fatal(err)
		}
		if d := ocitest.Digest(t, got); d != want {
			t.Fatalf("%s: loaded digest %s, built %s", p, d, want)
		}
	}
	// index.json lists exactly one entry, the image, named: what skopeo
	// and podman need to read the layout without being told which image.
	p, err := layout.FromPath(layoutDir)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Digest != want || im.Manifests[0].Annotations[sink.RefNameAnnotation] != "pulse-sidecar:test" {
		t.Fatalf("index.json: %+v", im.Manifests)
	}
	if _, err := source.Load(dockerFile); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 3 {
		t.Fatalf("leftovers in the output directory: %v", ents)
	}
	// Two archives of the same image are byte-identical.
	again := filepath.Join(t.TempDir(), "again.tar")
	if err := sink.WriteOCIArchive(again, img, "pulse-sidecar:test"); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(ociFile)
	b, _ := os.ReadFile(again)
	if !bytes.Equal(a, b) {
		t.Fatal("OCI archive bytes differ between two writes")
	}
}

type brokenLayer struct{ v1.Layer }

func (brokenLayer) Compressed() (io.ReadCloser, error) { return nil, errors.New("disk on fire") }

func TestFailedWriteLeavesNothing(t *testing.T) {
	good := ocitest.Image(t, "x")
	l, _ := oci.NewLayerFromTar(ocitest.Tar(t, "etc/a", "z"))
	bad, err := oci.Assemble(oci.Image{Created: ocitest.Epoch, OS: "linux", Architecture: "amd64", Layers: []oci.Layer{{Layer: brokenLayer{l}, CreatedBy: "broken"}}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := sink.WriteLayout(filepath.Join(dir, "out"), bad, ""); err == nil {
		t.Fatal("no error from a failing layer")
	}
	if err := sink.WriteOCIArchive(filepath.Join(dir, "a.tar"), bad, ""); err == nil {
		t.Fatal("no error from a failing layer")
	}
	if err := sink.WriteDockerArchive(filepath.Join(dir, "d.tar"), bad, "x:y"); err == nil {
		t.Fatal("no error from a failing layer")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("a failed write left %v", ents)
	}
	// A failed rewrite keeps the previous complete layout.
	out := filepath.Join(dir, "out")
	if err := sink.WriteLayout(out, good, ""); err != nil {
		t.Fatal(err)
	}
	if err := sink.WriteLayout(out, bad, ""); err == nil {
		t.Fatal("no error")
	}
	if img, err := source.Load(out); err != nil || ocitest.Digest(t, img) != ocitest.Digest(t, good) {
		t.Fatalf("previous layout lost: %v", err)
	}
}

func inProcess(t *testing.T, opts ...registry.Option) string {
	srv := httptest.NewServer(registry.New(append([]registry.Option{registry.Logger(log.New(io.Discard, "", 0))}, opts...)...))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// TestPushAttachesTheSBOM pushes an image with its SBOM to a registry that
// has the referrers API (ggcr's, with it enabled), and to two that do not
// (ggcr's by default, and the distribution registry Debian ships), where
// the tag fallback is used. In all three remote.Referrers finds the SBOM.
func TestPushAttachesTheSBOM(t *testing.T) {
	for _, r := range []struct {
		name      string
		host      func(t *testing.T) string
		referrers bool // the registry has the referrers API
	}{
		{"ggcr-referrers-api", func(t *testing.T) string { return inProcess(t, registry.WithReferrersSupport(true)) }, true},
		{"ggcr-tag-fallback", func(t *testing.T) string { return inProcess(t) }, false},
		{"docker-registry", func(t *testing.T) string { return testenv.DockerRegistry(t) }, false},
	} {
		t.Run(r.name, func(t *testing.T) {
			pushAndPull(t, r.host(t), r.referrers)
		})
	}
}

func pushAndPull(t *testing.T, host string, referrersAPI bool) {
	t.Helper()
	img := ocitest.Image(t, "x")
	desc, err := partial.Descriptor(img)
	if err != nil {
		t.Fatal(err)
	}
	doc := []byte(`{"spdxVersion":"SPDX-2.3","name":"test"}`)
	a, err := sbom.NewArtifact(*desc, doc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	repo := host + "/pulse-sidecar"
	var ref name.Digest
	for range 2 { // pushing twice attaches one referrer
		ref, err = sink.Push(ctx, img, repo, []string{"v1", "latest"}, []sink.Referrer{{Manifest: a.Manifest, Blobs: a.Blobs}})
		if err != nil {
			t.Fatal(err)
		}
	}
	want := desc.Digest
	if ref.DigestStr() != want.String() || !strings.HasPrefix(ref.String(), repo+"@sha256:") {
		t.Fatalf("pushed %s, built %s", ref, want)
	}
	for _, r := range []string{ref.String(), repo + ":v1", repo + ":latest"} {
		pr, err := name.ParseReference(r)
		if err != nil {
			t.Fatal(err)
		}
		d, err := remote.Get(pr, remote.WithContext(ctx))
		if err != nil {
			t.Fatal(err)
		}
		if d.Digest != want {
			t.Fatalf("%s: registry digest %s, built %s", r, d.Digest, want)
		}
	}

	idx, err := remote.Referrers(ref, remote.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	artifact, _, _ := v1.SHA256(bytes.NewReader(a.Manifest))
	if len(im.Manifests) != 1 || im.Manifests[0].Digest != artifact {
		t.Fatalf("referrers of %s: %+v, want the SBOM artifact %s", ref, im.Manifests, artifact)
	}
	if !referrersAPI && im.Manifests[0].ArtifactType != sbom.MediaType {
		// ggcr's registry reports the config's media type through its
		// API; the fallback index is ours to get right.
		t.Errorf("fallback index entry artifactType %q, want %q", im.Manifests[0].ArtifactType, sbom.MediaType)
	}
	_, fallbackErr := remote.Head(ref.Context().Tag("sha256-"+want.Hex), remote.WithContext(ctx))
	if referrersAPI != (fallbackErr != nil) {
		t.Errorf("referrers API %v, but the fallback tag lookup says %v", referrersAPI, fallbackErr)
	}
	got, err := remote.Get(ref.Context().Digest(artifact.String()), remote.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		ArtifactType string
		Layers       []v1.Descriptor
	}
	if err := json.Unmarshal(got.Manifest, &m); err != nil || m.ArtifactType != sbom.MediaType || len(m.Layers) != 1 {
		t.Fatalf("artifact manifest %s (%v)", got.Manifest, err)
	}
	l, err := remote.Layer(ref.Context().Digest(m.Layers[0].Digest.String()), remote.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(b, doc) {
		t.Fatalf("registry holds SBOM %q", b)
	}

	if _, err := sink.Push(ctx, img, repo, []string{"bad tag"}, nil); err == nil {
		t.Fatal("bad tag accepted")
	}
	other := ocitest.Image(t, "y")
	if _, err := sink.Push(ctx, other, repo, nil, []sink.Referrer{{Manifest: a.Manifest, Blobs: a.Blobs}}); err == nil || !strings.Contains(err.Error(), "subject") {
		t.Fatalf("an SBOM about another image attached: %v", err)
	}
}
