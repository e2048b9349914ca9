// Package imgtest builds small images in memory for tests of code that reads
// images, so each test states exactly the entries and config it needs.
package imgtest

import (
	"archive/tar"
	"bytes"
	"io"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Epoch is the timestamp every helper uses unless a test overrides it.
func Epoch() time.Time { return time.Unix(1700000000, 0).UTC() }

// Entry is one tar entry. Zero fields get defaults: mode 0644 (0755 for
// directories), owner 0:0, ModTime Epoch().
type Entry struct {
	Path     string
	Type     byte // tar.TypeReg when zero
	Mode     int64
	UID, GID int
	Content  string
	Link     string
	ModTime  time.Time
	Major    int64
	Minor    int64
}

// File is a regular file entry.
func File(path, content string, mode int64) Entry {
	return Entry{Path: path, Content: content, Mode: mode}
}

// Dir is a directory entry.
func Dir(path string, mode int64) Entry {
	return Entry{Path: path, Type: tar.TypeDir, Mode: mode}
}

// Tar renders entries in the given order.
func Tar(t testing.TB, entries ...Entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{
			Name:     e.Path,
			Typeflag: e.Type,
			Mode:     e.Mode,
			Uid:      e.UID,
			Gid:      e.GID,
			Linkname: e.Link,
			ModTime:  e.ModTime,
			Devmajor: e.Major,
			Devminor: e.Minor,
			Format:   tar.FormatPAX,
		}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if h.ModTime.IsZero() {
			h.ModTime = Epoch()
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.Content))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("tar header %s: %v", e.Path, err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := io.WriteString(tw, e.Content); err != nil {
				t.Fatalf("tar content %s: %v", e.Path, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Layer is an uncompressed-tar layer holding entries.
func Layer(t testing.TB, entries ...Entry) v1.Layer {
	t.Helper()
	b := Tar(t, entries...)
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// Image stacks layers over an empty image and sets cfg. Created defaults to
// Epoch and the platform to linux/amd64 so images differ only where a test
// says.
func Image(t testing.TB, cfg v1.ConfigFile, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	base, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg.RootFS = base.RootFS
	if cfg.Created.IsZero() {
		cfg.Created = v1.Time{Time: Epoch()}
	}
	if cfg.Architecture == "" {
		cfg.Architecture = "amd64"
	}
	if cfg.OS == "" {
		cfg.OS = "linux"
	}
	if cfg.History == nil {
		for range layers {
			cfg.History = append(cfg.History, v1.History{Created: cfg.Created, CreatedBy: "imgtest"})
		}
	}
	img, err = mutate.ConfigFile(img, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	return img
}
