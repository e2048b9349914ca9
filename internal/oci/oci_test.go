package oci

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
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
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/pulse-sidecar/pulse-sidecar/internal/testenv"
)

var epoch = time.Unix(1747699200, 0)

func tarOf(t testing.TB, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range []string{"etc/a", "usr/bin/b"} {
		c, ok := files[n]
		if !ok {
			continue
		}
		tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(c)), ModTime: epoch, Format: tar.FormatPAX})
		tw.Write([]byte(c))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func testImage(t testing.TB, content string) v1.Image {
	t.Helper()
	l1, err := NewLayerFromTar(tarOf(t, map[string]string{"etc/a": "one"}))
	if err != nil {
		t.Fatal(err)
	}
	l2, err := NewLayerFromTar(tarOf(t, map[string]string{"usr/bin/b": content}))
	if err != nil {
		t.Fatal(err)
	}
	img, err := Assemble(Image{
		Created: epoch, OS: "linux", Architecture: "amd64",
		Config: v1.Config{User: "102:104", Entrypoint: []string{"/usr/bin/b"}, Labels: map[string]string{"k": "v"}},
		Layers: []Layer{
			{Layer: l1, CreatedBy: "packages"},
			{Layer: l2, CreatedBy: "daemon"},
		},
		Annotations: map[string]string{"org.opencontainers.image.title": "t"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func digest(t testing.TB, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestAssembleIsDeterministic(t *testing.T) {
	a, b := digest(t, testImage(t, "x")), digest(t, testImage(t, "x"))
	if a != b {
		t.Fatalf("same inputs, digests %s and %s", a, b)
	}
	if c := digest(t, testImage(t, "y")); c == a {
		t.Fatal("different content, same digest")
	}
}

// The pinned compressor is part of the reproducibility promise: this golden
// digest changes only when klauspost/compress or GzipLevel changes, which
// must then be a deliberate, reviewed change.
func TestLayerDigestGolden(t *testing.T) {
	l, err := NewLayerFromTar([]byte("not really a tar, but bytes are bytes\n"))
	if err != nil {
		t.Fatal(err)
	}
	d, _ := l.Digest()
	diff, _ := l.DiffID()
	t.Logf("digest %s diffID %s", d, diff)
	if diff.String() != "sha256:"+sha256hex("not really a tar, but bytes are bytes\n") {
		t.Fatalf("diffID %s is not the sha256 of the uncompressed bytes", diff)
	}
	rc, _ := l.Uncompressed()
	got, _ := io.ReadAll(rc)
	if string(got) != "not really a tar, but bytes are bytes\n" {
		t.Fatalf("round trip = %q", got)
	}
}

func TestImageShape(t *testing.T) {
	img := testImage(t, "x")
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
	if !cf.Created.Time.Equal(epoch) || cf.Config.User != "102:104" || cf.OS != "linux" || cf.Architecture != "amd64" {
		t.Fatalf("config %+v", cf)
	}
	if len(cf.History) != 2 || cf.History[1].CreatedBy != "daemon" || !cf.History[0].Created.Time.Equal(epoch) {
		t.Fatalf("history %+v", cf.History)
	}
	if len(cf.RootFS.DiffIDs) != 2 {
		t.Fatalf("rootfs %+v", cf.RootFS)
	}
}

func TestOutputsRoundTrip(t *testing.T) {
	img := testImage(t, "x")
	want := digest(t, img)
	dir := t.TempDir()
	layoutDir := filepath.Join(dir, "out")
	ociFile := filepath.Join(dir, "img.oci.tar")
	dockerFile := filepath.Join(dir, "img.docker.tar")
	if err := WriteLayout(layoutDir, img, "pulse-sidecar:test"); err != nil {
		t.Fatal(err)
	}
	// A second write replaces the first in place.
	if err := WriteLayout(layoutDir, img, "pulse-sidecar:test"); err != nil {
		t.Fatal(err)
	}
	if err := WriteOCIArchive(ociFile, img, "pulse-sidecar:test"); err != nil {
		t.Fatal(err)
	}
	if err := WriteDockerArchive(dockerFile, img, "pulse-sidecar:test"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{layoutDir, ociFile} {
		got, err := Load(p)
		if err != nil {
			t.Fatal(err)
		}
		if d := digest(t, got); d != want {
			t.Fatalf("%s: loaded digest %s, built %s", p, d, want)
		}
		if err := validateLayers(got); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
	}
	got, err := Load(dockerFile)
	if err != nil {
		t.Fatal(err)
	}
	// A docker archive keeps layers and config, not the manifest bytes.
	if a, b := configDigest(t, got), configDigest(t, img); a != b {
		t.Fatalf("docker archive config %s, built %s", a, b)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 3 {
		t.Fatalf("leftovers in the output directory: %v", ents)
	}
	// Two archives of the same image are byte-identical.
	again := filepath.Join(t.TempDir(), "again.tar")
	if err := WriteOCIArchive(again, img, "pulse-sidecar:test"); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(ociFile)
	b, _ := os.ReadFile(again)
	if !bytes.Equal(a, b) {
		t.Fatal("OCI archive bytes differ between two writes")
	}
}

func configDigest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	h, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func validateLayers(img v1.Image) error {
	ls, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range ls {
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		h, _, err := v1.SHA256(rc)
		rc.Close()
		if err != nil {
			return err
		}
		if d, _ := l.Digest(); d != h {
			return fmt.Errorf("layer %s has content %s", d, h)
		}
	}
	return nil
}

type brokenLayer struct{ v1.Layer }

func (brokenLayer) Compressed() (io.ReadCloser, error) { return nil, errors.New("disk on fire") }

func TestFailedWriteLeavesNothing(t *testing.T) {
	good := testImage(t, "x")
	l, _ := NewLayerFromTar(tarOf(t, map[string]string{"etc/a": "z"}))
	bad, err := Assemble(Image{Created: epoch, OS: "linux", Architecture: "amd64", Layers: []Layer{{Layer: brokenLayer{l}, CreatedBy: "broken"}}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := WriteLayout(filepath.Join(dir, "out"), bad, ""); err == nil {
		t.Fatal("no error from a failing layer")
	}
	if err := WriteOCIArchive(filepath.Join(dir, "a.tar"), bad, ""); err == nil {
		t.Fatal("no error from a failing layer")
	}
	if err := WriteDockerArchive(filepath.Join(dir, "d.tar"), bad, "x:y"); err == nil {
		t.Fatal("no error from a failing layer")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("a failed write left %v", ents)
	}
	// A failed rewrite keeps the previous complete layout.
	out := filepath.Join(dir, "out")
	if err := WriteLayout(out, good, ""); err != nil {
		t.Fatal(err)
	}
	if err := WriteLayout(out, bad, ""); err == nil {
		t.Fatal("no error")
	}
	if img, err := Load(out); err != nil || digest(t, img) != digest(t, good) {
		t.Fatalf("previous layout lost: %v", err)
	}
}

func TestLoadRejects(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk")
	os.WriteFile(junk, []byte("hello"), 0o644)
	if _, err := Load(junk); err == nil {
		t.Fatal("loaded junk")
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), dir) {
		t.Fatalf("empty dir: %v", err)
	}
}

func TestPushInProcessRegistry(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	pushAndPull(t, strings.TrimPrefix(srv.URL, "http://"))
}

// TestPushDockerRegistry pushes to the real distribution registry binary.
func TestPushDockerRegistry(t *testing.T) {
	pushAndPull(t, testenv.DockerRegistry(t))
}

func pushAndPull(t *testing.T, host string) {
	t.Helper()
	img := testImage(t, "x")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	repo := host + "/pulse-sidecar"
	ref, err := Push(ctx, img, repo, []string{"v1", "latest"})
	if err != nil {
		t.Fatal(err)
	}
	want := digest(t, img)
	if ref.DigestStr() != want.String() || !strings.HasPrefix(ref.String(), repo+"@sha256:") {
		t.Fatalf("pushed %s, built %s", ref, want)
	}
	for _, r := range []string{ref.String(), repo + ":v1", repo + ":latest"} {
		pr, err := name.ParseReference(r)
		if err != nil {
			t.Fatal(err)
		}
		desc, err := remote.Get(pr, remote.WithContext(ctx))
		if err != nil {
			t.Fatal(err)
		}
		if desc.Digest != want {
			t.Fatalf("%s: registry digest %s, built %s", r, desc.Digest, want)
		}
	}
	if _, err := Push(ctx, img, repo, []string{"bad tag"}); err == nil {
		t.Fatal("bad tag accepted")
	}
}

func BenchmarkNewLayer(b *testing.B) {
	data := bytes.Repeat([]byte("pulse-sidecar layer bytes 0123456789\n"), 1<<15)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewLayerFromTar(data); err != nil {
			b.Fatal(err)
		}
	}
}

func sha256hex(s string) string {
	h, _, _ := v1.SHA256(strings.NewReader(s))
	return h.Hex
}

// TestLoadSkipsArtifacts: a layout holding the image and an SBOM referring
// to it (what `imagectl build --out` writes) still loads as that image, as
// a directory and as an archive of the directory.
func TestLoadSkipsArtifacts(t *testing.T) {
	img := testImage(t, "x")
	dir := t.TempDir()
	lay := filepath.Join(dir, "layout")
	if err := WriteLayout(lay, img, "pulse-sidecar:test"); err != nil {
		t.Fatal(err)
	}
	p, err := layout.FromPath(lay)
	if err != nil {
		t.Fatal(err)
	}
	artifact := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/spdx+json"}`)
	h, _, _ := v1.SHA256(bytes.NewReader(artifact))
	if err := p.WriteBlob(h, io.NopCloser(bytes.NewReader(artifact))); err != nil {
		t.Fatal(err)
	}
	if err := p.AppendDescriptor(v1.Descriptor{
		MediaType: types.OCIManifestSchema1, Digest: h, Size: int64(len(artifact)), ArtifactType: "application/spdx+json",
	}); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(dir, "layout.tar")
	f, err := os.Create(archive)
	if err != nil {
		t.Fatal(err)
	}
	if err := tarDir(f, lay, time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	for _, src := range []string{lay, archive} {
		got, err := Load(src)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if digest(t, got) != digest(t, img) {
			t.Fatalf("%s: loaded %s, want the image %s", src, digest(t, got), digest(t, img))
		}
	}

	// Two images are still ambiguous, artifacts or not.
	if err := p.AppendImage(testImage(t, "y")); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(lay); err == nil || !strings.Contains(err.Error(), "2 image manifests") {
		t.Fatalf("two images: %v", err)
	}
}

func TestOpenRegistryAndPath(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	img := testImage(t, "x")
	ctx := context.Background()
	ref, err := Push(ctx, img, strings.TrimPrefix(srv.URL, "http://")+"/open", []string{"t"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := Open(ctx, ref.String())
	if err != nil {
		t.Fatal(err)
	}
	if digest(t, got) != digest(t, img) {
		t.Fatal("registry image differs")
	}
	lay := filepath.Join(t.TempDir(), "l")
	if err := WriteLayout(lay, img, ""); err != nil {
		t.Fatal(err)
	}
	if got, err = Open(ctx, lay); err != nil || digest(t, got) != digest(t, img) {
		t.Fatalf("layout: %v", err)
	}
	if _, err := Open(ctx, "./no such dir"); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("missing path: %v", err)
	}
}

// TestLoadChecksBlobDigests: a layout or archive on disk vouches for
// nothing, so a flipped byte in a layer or the config must fail the read,
// naming the blob, rather than be diffed or policy-checked as the image.
func TestLoadChecksBlobDigests(t *testing.T) {
	img := testImage(t, "x")
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		what string
		blob v1.Hash
	}{{"layer", m.Layers[1].Digest}, {"config", m.Config.Digest}} {
		t.Run(tc.what, func(t *testing.T) {
			dir := t.TempDir()
			lay := filepath.Join(dir, "layout")
			if err := WriteLayout(lay, img, "pulse-sidecar:test"); err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(lay, "blobs", tc.blob.Algorithm, tc.blob.Hex)
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)/2] ^= 0x01
			if err := os.WriteFile(file, b, 0o644); err != nil {
				t.Fatal(err)
			}
			archive := filepath.Join(dir, "layout.tar")
			f, err := os.Create(archive)
			if err != nil {
				t.Fatal(err)
			}
			if err := tarDir(f, lay, epoch); err != nil {
				t.Fatal(err)
			}
			f.Close()
			for _, src := range []string{lay, archive} {
				err := readAll(src)
				if err == nil || !strings.Contains(err.Error(), tc.blob.String()) || !strings.Contains(err.Error(), src) {
					t.Errorf("%s with a flipped byte in %s %s: %v", src, tc.what, tc.blob, err)
				}
			}
		})
	}

	// A truncated layer fails too, even though every byte read was right.
	dir := t.TempDir()
	lay := filepath.Join(dir, "layout")
	if err := WriteLayout(lay, img, ""); err != nil {
		t.Fatal(err)
	}
	l := m.Layers[0].Digest
	file := filepath.Join(lay, "blobs", l.Algorithm, l.Hex)
	b, _ := os.ReadFile(file)
	os.WriteFile(file, b[:len(b)-1], 0o644)
	if err := readAll(lay); err == nil || !strings.Contains(err.Error(), l.String()) {
		t.Errorf("truncated layer %s: %v", l, err)
	}
}

// readAll loads src and reads every layer to its end, as diff and policy do.
func readAll(src string) error {
	img, err := Load(src)
	if err != nil {
		return err
	}
	if _, err := img.ConfigFile(); err != nil {
		return err
	}
	ls, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range ls {
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			return err
		}
	}
	return nil
}
