// Package ocitest builds small images through the real assembly path for
// the tests of the sinks, the sources and their callers.
package ocitest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/pulse-sidecar/pulse-sidecar/internal/oci"
)

// Epoch is every timestamp in the test images.
var Epoch = time.Unix(1747699200, 0)

// Tar is a deterministic tar of files, in the order given (path, content).
func Tar(t testing.TB, files ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i := 0; i+1 < len(files); i += 2 {
		n, c := files[i], files[i+1]
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(c)), ModTime: Epoch, Format: tar.FormatPAX}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(c))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Image is a two-layer linux/amd64 image whose second layer holds
// /usr/bin/b with content: different content, different image.
func Image(t testing.TB, content string) v1.Image {
	t.Helper()
	l1, err := oci.NewLayerFromTar(Tar(t, "etc/a", "one"))
	if err != nil {
		t.Fatal(err)
	}
	l2, err := oci.NewLayerFromTar(Tar(t, "usr/bin/b", content))
	if err != nil {
		t.Fatal(err)
	}
	img, err := oci.Assemble(oci.Image{
		Created: Epoch, OS: "linux", Architecture: "amd64",
		Config: v1.Config{User: "102:104", Entrypoint: []string{"/usr/bin/b"}, Labels: map[string]string{"k": "v"}},
		Layers: []oci.Layer{
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

// Digest is img's manifest digest.
func Digest(t testing.TB, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// SameSizeGzip is a gzip of tarball exactly as long as original: the
// tampered layer that a reader stopping at the tar's end marker cannot tell
// from the real one by its size. The gzip header's comment field pads it.
func SameSizeGzip(t testing.TB, original, tarball []byte) []byte {
	t.Helper()
	for _, level := range []int{gzip.BestCompression, gzip.DefaultCompression, gzip.BestSpeed, gzip.NoCompression} {
		plain := gz(t, tarball, level, nil)
		pad := len(original) - len(plain) - 2 // the extra field's length
		if pad < 0 {
			continue
		}
		out := gz(t, tarball, level, make([]byte, pad))
		if len(out) == len(original) && !bytes.Equal(out, original) {
			return out
		}
	}
	t.Fatalf("cannot make a gzip of %d tar bytes as long as the original %d", len(tarball), len(original))
	return nil
}

func gz(t testing.TB, b []byte, level int, extra []byte) []byte {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, level)
	if err != nil {
		t.Fatal(err)
	}
	zw.Extra = extra
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
