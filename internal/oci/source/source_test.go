package source

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/pulse-sidecar/pulse-sidecar/internal/oci/ocitest"
	"github.com/pulse-sidecar/pulse-sidecar/internal/oci/sink"
)

// incompressible is content whose gzip is longer than a small tar's, so a
// tampered layer can be padded to the same size.
func incompressible() string {
	var b strings.Builder
	for i := range 16 {
		s := sha256.Sum256([]byte{byte(i)})
		b.WriteString(hex.EncodeToString(s[:]))
	}
	return b.String()
}

// outputs writes img as a layout, an OCI archive and a docker archive.
func outputs(t *testing.T, img v1.Image) (lay, ociFile, dockerFile string) {
	t.Helper()
	dir := t.TempDir()
	lay, ociFile, dockerFile = filepath.Join(dir, "layout"), filepath.Join(dir, "img.oci.tar"), filepath.Join(dir, "img.docker.tar")
	if err := sink.WriteLayout(lay, img, "pulse-sidecar:test"); err != nil {
		t.Fatal(err)
	}
	if err := sink.WriteOCIArchive(ociFile, img, "pulse-sidecar:test"); err != nil {
		t.Fatal(err)
	}
	if err := sink.WriteDockerArchive(dockerFile, img, "pulse-sidecar:test"); err != nil {
		t.Fatal(err)
	}
	return lay, ociFile, dockerFile
}

func TestLoadRoundTrip(t *testing.T) {
	img := ocitest.Image(t, "x")
	want := ocitest.Digest(t, img)
	lay, ociFile, dockerFile := outputs(t, img)
	for _, p := range []string{lay, ociFile} {
		got, err := Load(p)
		if err != nil {
			t.Fatal(err)
		}
		if d := ocitest.Digest(t, got); d != want {
			t.Fatalf("%s: loaded digest %s, built %s", p, d, want)
		}
		if err := readAll(got); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
	}
	got, err := Load(dockerFile)
	if err != nil {
		t.Fatal(err)
	}
	// A docker archive keeps layers and config, not the manifest bytes.
	a, _ := got.ConfigName()
	b, _ := img.ConfigName()
	if a != b {
		t.Fatalf("docker archive config %s, built %s", a, b)
	}
	wl, _ := img.Layers()
	gl, err := got.Layers()
	if err != nil || len(gl) != len(wl) {
		t.Fatalf("docker archive layers %d (%v), built %d", len(gl), err, len(wl))
	}
	for i := range wl {
		x, _ := wl[i].Digest()
		y, _ := gl[i].Digest()
		if x != y {
			t.Errorf("docker archive layer %d is %s, built %s", i, y, x)
		}
	}
	if err := readAll(got); err != nil {
		t.Fatal(err)
	}
}

// TestLoadDockerSave reads the format `docker save` and `podman save`
// write: uncompressed layers under <id>/layer.tar, the config as <hex>.json.
func TestLoadDockerSave(t *testing.T) {
	img := ocitest.Image(t, "x")
	cfg, _ := img.RawConfigFile()
	cfgName, _ := img.ConfigName()
	ls, _ := img.Layers()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, b []byte) {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b))})
		tw.Write(b)
	}
	var files []string
	for i, l := range ls {
		rc, _ := l.Uncompressed()
		b, _ := io.ReadAll(rc)
		f := fmt.Sprintf("layer%d/layer.tar", i)
		add(f, b)
		files = append(files, f)
	}
	add(cfgName.Hex+".json", cfg)
	m := fmt.Sprintf(`[{"Config":%q,"RepoTags":["x:y"],"Layers":[%q,%q]}]`, cfgName.Hex+".json", files[0], files[1])
	add("manifest.json", []byte(m))
	tw.Close()
	file := filepath.Join(t.TempDir(), "saved.tar")
	os.WriteFile(file, buf.Bytes(), 0o644)
	got, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := got.ConfigName(); c != cfgName {
		t.Fatalf("config %s, want %s", c, cfgName)
	}
	if err := readAll(got); err != nil {
		t.Fatal(err)
	}

	// A changed byte in a plain layer is caught by the config's diffID.
	e := mustIndex(t, file).entries[files[1]]
	corrupt(t, file, e.offset+e.size-600)
	_, err = Load(file)
	if want, _ := img.ConfigFile(); !isBlobError(err, files[1], want.RootFS.DiffIDs[1].String()) {
		t.Fatalf("changed plain layer: %v", err)
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

// TestLoadSkipsArtifacts: a layout holding the image and an SBOM referring
// to it (what imagectl build --out wrote before index.json held one entry)
// still loads as that image.
func TestLoadSkipsArtifacts(t *testing.T) {
	img := ocitest.Image(t, "x")
	lay := filepath.Join(t.TempDir(), "layout")
	if err := sink.WriteLayout(lay, img, "pulse-sidecar:test"); err != nil {
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
	got, err := Load(lay)
	if err != nil {
		t.Fatal(err)
	}
	if ocitest.Digest(t, got) != ocitest.Digest(t, img) {
		t.Fatalf("loaded %s, want the image %s", ocitest.Digest(t, got), ocitest.Digest(t, img))
	}
	// Two images are ambiguous, artifacts or not.
	if err := p.AppendImage(ocitest.Image(t, "y")); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(lay); err == nil || !strings.Contains(err.Error(), "2 image manifests") {
		t.Fatalf("two images: %v", err)
	}
}

func TestOpenRegistryAndPath(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	img := ocitest.Image(t, "x")
	ctx := context.Background()
	ref, err := sink.Push(ctx, img, strings.TrimPrefix(srv.URL, "http://")+"/open", []string{"t"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{ref.String(), ref.Context().Tag("t").String()} {
		got, err := Open(ctx, src)
		if err != nil {
			t.Fatal(err)
		}
		if ocitest.Digest(t, got) != ocitest.Digest(t, img) {
			t.Fatal("registry image differs")
		}
		if err := readAll(got); err != nil {
			t.Fatal(err)
		}
		if err := got.Close(); err != nil {
			t.Fatal(err)
		}
	}
	lay := filepath.Join(t.TempDir(), "l")
	if err := sink.WriteLayout(lay, img, ""); err != nil {
		t.Fatal(err)
	}
	if got, err := Open(ctx, lay); err != nil || ocitest.Digest(t, got) != ocitest.Digest(t, img) {
		t.Fatalf("layout: %v", err)
	}
	if _, err := Open(ctx, "./no such dir"); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("missing path: %v", err)
	}
}

// TestTamperedBlobOfTheSameSize is the case: a layer replaced by a
// different gzip of exactly the same size, which a reader stopping at the
// tar's end marker takes for the real one. Every source refuses it before
// handing out the image, naming the blob and the digest it must have.
func TestTamperedBlobOfTheSameSize(t *testing.T) {
	img := ocitest.Image(t, incompressible())
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	target := m.Layers[1]
	l, _ := img.LayerByDigest(target.Digest)
	rc, _ := l.Compressed()
	original, _ := io.ReadAll(rc)
	evil := ocitest.SameSizeGzip(t, original, ocitest.Tar(t, "usr/bin/b", "evil"))

	t.Run("layout", func(t *testing.T) {
		lay, _, _ := outputs(t, img)
		os.WriteFile(filepath.Join(lay, "blobs", "sha256", target.Digest.Hex), evil, 0o644)
		_, err := Load(lay)
		if !isBlobError(err, target.Digest.String(), target.Digest.String()) || !strings.Contains(err.Error(), lay) {
			t.Fatalf("tampered layout: %v", err)
		}
		t.Log(err)
	})
	t.Run("oci-archive", func(t *testing.T) {
		_, ociFile, _ := outputs(t, img)
		overwrite(t, ociFile, "blobs/sha256/"+target.Digest.Hex, evil)
		_, err := Load(ociFile)
		if !isBlobError(err, target.Digest.String(), target.Digest.String()) || !strings.Contains(err.Error(), ociFile) {
			t.Fatalf("tampered OCI archive: %v", err)
		}
		t.Log(err)
	})
	t.Run("docker-archive", func(t *testing.T) {
		_, _, dockerFile := outputs(t, img)
		file := target.Digest.Hex + ".tar.gz" // ggcr names layers by digest
		overwrite(t, dockerFile, file, evil)
		_, err := Load(dockerFile)
		if !isBlobError(err, file, target.Digest.String()) {
			t.Fatalf("tampered docker archive: %v", err)
		}
		t.Log(err)
	})
	t.Run("registry", func(t *testing.T) {
		store := t.TempDir()
		srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0)), registry.WithBlobHandler(registry.NewDiskBlobHandler(store))))
		t.Cleanup(srv.Close)
		ref, err := sink.Push(context.Background(), img, strings.TrimPrefix(srv.URL, "http://")+"/tampered", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(store, "sha256", target.Digest.Hex), evil, 0o644); err != nil {
			t.Fatal(err)
		}
		tmp := t.TempDir()
		t.Setenv("TMPDIR", tmp) // where the pull spools
		_, err = Open(context.Background(), ref.String())
		if err == nil || !strings.Contains(err.Error(), target.Digest.String()) || !strings.Contains(err.Error(), ref.String()) {
			t.Fatalf("tampered registry blob: %v", err)
		}
		t.Log(err)
		if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
			t.Errorf("a refused pull left %v", ents)
		}
	})
}

// TestLoadChecksEveryBlob: a flipped byte in a layer or the config, or a
// truncated layer, fails the load, naming the blob.
func TestLoadChecksEveryBlob(t *testing.T) {
	img := ocitest.Image(t, "x")
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		what string
		blob v1.Hash
	}{{"layer", m.Layers[1].Digest}, {"config", m.Config.Digest}} {
		t.Run(tc.what, func(t *testing.T) {
			lay, ociFile, _ := outputs(t, img)
			corrupt(t, filepath.Join(lay, "blobs", tc.blob.Algorithm, tc.blob.Hex), -1)
			e := mustIndex(t, ociFile).entries["blobs/sha256/"+tc.blob.Hex]
			corrupt(t, ociFile, e.offset+e.size/2)
			for _, src := range []string{lay, ociFile} {
				if _, err := Load(src); !isBlobError(err, tc.blob.String(), tc.blob.String()) {
					t.Errorf("%s with a flipped byte in %s %s: %v", src, tc.what, tc.blob, err)
				}
			}
		})
	}
	lay, _, _ := outputs(t, img)
	l := m.Layers[0].Digest
	file := filepath.Join(lay, "blobs", l.Algorithm, l.Hex)
	b, _ := os.ReadFile(file)
	os.WriteFile(file, b[:len(b)-1], 0o644)
	if _, err := Load(lay); !isBlobError(err, l.String(), l.String()) || !strings.Contains(err.Error(), "bytes, want") {
		t.Errorf("truncated layer %s: %v", l, err)
	}
}

// TestChangedAfterLoadFailsAtItsEnd: a blob changed on disk after the
// load's check still fails when it is read to its end.
func TestChangedAfterLoadFailsAtItsEnd(t *testing.T) {
	img := ocitest.Image(t, "x")
	lay, _, _ := outputs(t, img)
	got, err := Load(lay)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := img.Manifest()
	corrupt(t, filepath.Join(lay, "blobs", "sha256", m.Layers[0].Digest.Hex), -1)
	if err := readAll(got); !isBlobError(err, m.Layers[0].Digest.String(), m.Layers[0].Digest.String()) {
		t.Fatalf("blob changed after the load: %v", err)
	}
}

func TestArchiveRefusesDuplicateEntries(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for range 2 {
		tw.WriteHeader(&tar.Header{Name: "index.json", Mode: 0o644, Size: 2})
		tw.Write([]byte("{}"))
	}
	tw.Close()
	file := filepath.Join(t.TempDir(), "dup.tar")
	os.WriteFile(file, buf.Bytes(), 0o644)
	if _, err := Load(file); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("duplicate entries: %v", err)
	}
}

func isBlobError(err error, blob, want string) bool {
	var be *BlobError
	if !errors.As(err, &be) {
		return false
	}
	msg := err.Error()
	return be.Blob == blob && be.Want.String() == want && strings.Contains(msg, blob) && strings.Contains(msg, want)
}

func mustIndex(t *testing.T, file string) *archive {
	t.Helper()
	a, err := indexArchive(file)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// overwrite replaces an archive entry's bytes in place; b is its size.
func overwrite(t *testing.T, file, entry string, b []byte) {
	t.Helper()
	e, ok := mustIndex(t, file).entries[entry]
	if !ok || e.size != int64(len(b)) {
		t.Fatalf("%s: entry %s %+v, replacement %d bytes", file, entry, e, len(b))
	}
	f, err := os.OpenFile(file, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, e.offset); err != nil {
		t.Fatal(err)
	}
}

// corrupt flips one byte of file at off (-1: the middle).
func corrupt(t *testing.T, file string, off int64) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if off < 0 {
		off = int64(len(b) / 2)
	}
	b[off] ^= 0x01
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// readAll reads the config and every layer to its end, compressed and
// uncompressed.
func readAll(img v1.Image) error {
	if _, err := img.ConfigFile(); err != nil {
		return err
	}
	ls, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range ls {
		for _, open := range []func() (io.ReadCloser, error){l.Compressed, l.Uncompressed} {
			rc, err := open()
			if err != nil {
				return err
			}
			_, err = io.Copy(io.Discard, rc)
			rc.Close()
			if err != nil {
				return err
			}
		}
	}
	return nil
}
