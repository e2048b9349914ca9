package arm64test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// entry is one tar header of a test layer; a regular file's content is body.
type entry struct {
	name, link, body string
	typ              byte
	mode             int64
}

func file(name, body string) entry {
	return entry{name: name, body: body, typ: tar.TypeReg, mode: 0o644}
}
func dir(name string, mode int64) entry {
	return entry{name: name, typ: tar.TypeDir, mode: mode}
}
func symlink(name, target string) entry { return entry{name: name, link: target, typ: tar.TypeSymlink} }
func hardlink(name, target string) entry {
	return entry{name: name, link: target, typ: tar.TypeLink}
}

func layer(t *testing.T, entries ...entry) v1.Layer {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: e.mode, Size: int64(len(e.body))}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b.Bytes())), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// image is an OCI image of layers for platform.
func image(t *testing.T, p v1.Platform, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layers...)
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture, cfg.Variant = p.OS, p.Architecture, p.Variant
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func extract(t *testing.T, img v1.Image) string {
	t.Helper()
	root := t.TempDir()
	if err := Extract(img, root); err != nil {
		t.Fatal(err)
	}
	return root
}

func read(t *testing.T, root, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestExtractAppliesLayersInOrder(t *testing.T) {
	img := image(t, arm64,
		layer(t,
			dir("etc/", 0o755), file("etc/a", "old a"), file("etc/b", "b"),
			hardlink("etc/hard", "etc/a"),
			dir("d/", 0o755), file("d/x", "x"), file("d/y", "y"),
			dir("e/", 0o755), file("e/inner", "inner"),
			file("f", "a file that becomes a directory"),
			dir("ro/", 0o555), file("ro/file", "in a read-only directory"),
		),
		layer(t,
			file("etc/a", "new a"),
			file("etc/.wh.b", ""),
			// Written before the opaque marker of its own directory: the
			// marker hides only the earlier layers' entries.
			file("d/z", "z"),
			file("d/.wh..wh..opq", ""),
			file("e", "a directory replaced by a file"),
			dir("f/", 0o755), file("f/g", "g"),
			// No entry for its parent directories.
			file("implicit/parent/file", "p"),
		),
	)
	root := extract(t, img)

	for name, want := range map[string]string{
		"etc/a": "new a", "etc/hard": "old a", "d/z": "z", "e": "a directory replaced by a file",
		"f/g": "g", "implicit/parent/file": "p", "ro/file": "in a read-only directory",
	} {
		if got := read(t, root, name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	for _, gone := range []string{"etc/b", "d/x", "d/y", "etc/.wh.b", "d/.wh..wh..opq"} {
		if _, err := os.Lstat(filepath.Join(root, gone)); !os.IsNotExist(err) {
			t.Errorf("%s: %v, want it deleted", gone, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(root, "ro")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("ro: %v, %v; want a 0755 directory (owner rwx added to 0555)", fi, err)
	}
}

func TestExtractKeepsLinksInsideTheRoot(t *testing.T) {
	img := image(t, arm64, layer(t,
		dir("usr/lib/", 0o755), file("usr/lib/target", "t"),
		dir("lib/", 0o755),
		symlink("lib/abs", "/usr/lib/target"),
		symlink("lib/rel", "../usr/lib/target"),
		symlink("lib/climb", "../../../../../usr/lib/target"),
		symlink("lib/root", "/"),
		symlink("lib/same", "target-in-same-dir"),
		symlink("etc", "/nonexistent-outside"),
	))
	root := extract(t, img)
	for link, want := range map[string]string{
		"lib/abs":   "../usr/lib/target",
		"lib/rel":   "../usr/lib/target", // inside already: as written
		"lib/climb": "../usr/lib/target",
		"lib/root":  "..",
		"lib/same":  "target-in-same-dir",
		"etc":       "nonexistent-outside",
	} {
		got, err := os.Readlink(filepath.Join(root, link))
		if err != nil || got != want {
			t.Errorf("%s -> %q, %v; want -> %q", link, got, err, want)
		}
	}
	// The host kernel follows them inside the root.
	for _, link := range []string{"lib/abs", "lib/rel", "lib/climb"} {
		if got := read(t, root, link); got != "t" {
			t.Errorf("%s reads %q, want the root's usr/lib/target", link, got)
		}
	}
}

func TestExtractRefusesToLeaveTheRoot(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "outside")
	if err := os.Mkdir(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, l := range map[string]v1.Layer{
		"dot-dot name":   layer(t, file("../../../../../../.."+outside+"/escaped", "x")),
		"through a link": layer(t, symlink("out", "../../../../../../.."+outside), file("out/escaped", "x")),
		"hard link":      layer(t, hardlink("h", "../../../../../../.."+outside+"/x")),
	} {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			err := Extract(image(t, arm64, l), root)
			if _, serr := os.Lstat(filepath.Join(outside, "escaped")); serr == nil {
				t.Fatalf("a file was written outside the root (Extract: %v)", err)
			}
			t.Logf("Extract: %v", err)
		})
	}
}

func TestExtractChecksLayerDigests(t *testing.T) {
	img := image(t, arm64, layer(t, file("etc/a", strings.Repeat("a", 1000))))
	dir := t.TempDir()
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	ls, _ := img.Layers()
	d, _ := ls[0].Digest()
	blob := filepath.Join(dir, "blobs", d.Algorithm, d.Hex)
	b, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	// The same tar compressed otherwise is a valid layer blob with every
	// file intact; only the digest tells it from the one the manifest names.
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	var other bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&other, gzip.NoCompression)
	if _, err := io.Copy(zw, zr); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	if err := os.WriteFile(blob, other.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	loaded, err := Load(dir, arm64, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	err = Extract(loaded, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), d.String()) || !strings.Contains(err.Error(), "content has digest") {
		t.Errorf("Extract of a replaced layer: %v, want an error naming %s", err, d)
	}
}

func TestMissingAlternatives(t *testing.T) {
	root := t.TempDir()
	lib := filepath.Join(root, "usr/lib", triplet)
	for _, f := range []string{"blas/libblas.so.3", "blas/libblas.so.3.11.0", "lapack/liblapack.so.3", "lapack/liblapack.so.3.11.0"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(lib, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(lib, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("blas/libblas.so.3", filepath.Join(lib, "libblas.so.3")); err != nil {
		t.Fatal(err)
	}
	// A link that does not resolve counts as missing.
	if err := os.Symlink("lapack/nothing", filepath.Join(lib, "liblapack.so.3")); err != nil {
		t.Fatal(err)
	}
	got, err := MissingAlternatives(root, triplet)
	want := []string{"/usr/lib/aarch64-linux-gnu/liblapack.so.3 (-> lapack/liblapack.so.3)"}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("MissingAlternatives = %q, %v; want %q", got, err, want)
	}
	if err := os.Remove(filepath.Join(lib, "liblapack.so.3")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("lapack/liblapack.so.3", filepath.Join(lib, "liblapack.so.3")); err != nil {
		t.Fatal(err)
	}
	if got, err := MissingAlternatives(root, triplet); err != nil || len(got) != 0 {
		t.Errorf("MissingAlternatives with both links = %q, %v; want none", got, err)
	}
	if got, err := MissingAlternatives(t.TempDir(), triplet); err != nil || len(got) != 0 {
		t.Errorf("MissingAlternatives without BLAS at all = %q, %v; want none", got, err)
	}
}
