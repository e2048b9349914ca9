// Package source reads images back from where imagectl and other tools put
// them: an OCI layout directory, an OCI archive, a docker archive or a
// registry. Every loader reads each blob to its end and checks its digest
// and size before it hands out the image, so policy, diff, verify and push
// never report on or send bytes that are not the image they name. A reader
// that stopped at a tar's end marker would otherwise accept a layer replaced
// by a different gzip of the same size.
//
// The blobs are checked again as they stream to the caller: a file changed on
// disk between the two reads fails at its end instead of passing silently.
package source

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/pulse-sidecar/pulse-sidecar/internal/fetch"
)

// Image is an image whose every blob has been checked, with whatever backs
// it (a registry image's blobs are kept in a temp directory until Close).
type Image struct {
	v1.Image
	close func() error
}

// Close releases what backs the image; the image must not be read after.
func (i *Image) Close() error {
	if i.close == nil {
		return nil
	}
	return i.close()
}

// Open is Load for a path that exists and a registry reference otherwise,
// read with the credentials docker and podman use. It is how diff, policy
// and verify --against accept an image from anywhere: a local build, a Nix
// or Bazel result, or what a registry serves. Every wait on a registry is
// bounded by fetch.Timeouts' defaults unless opts give another transport.
func Open(ctx context.Context, src string, opts ...remote.Option) (*Image, error) {
	a, err := OpenAny(ctx, src, opts...)
	if err != nil {
		return nil, err
	}
	return a.single(src)
}

// OpenAny is Open for an image or an image index: what a multi-platform
// build writes and a registry serves under its tag.
func OpenAny(ctx context.Context, src string, opts ...remote.Option) (*Artifact, error) {
	_, statErr := os.Stat(src)
	if statErr == nil {
		return LoadAny(src)
	}
	if !errors.Is(statErr, fs.ErrNotExist) {
		return nil, statErr
	}
	ref, err := name.ParseReference(src)
	if err != nil {
		// Most likely a mistyped path: say so first.
		return nil, fmt.Errorf("%s: no such file or directory, and not an image reference: %w", src, err)
	}
	opts = append([]remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain), remote.WithTransport(fetch.Timeouts{}.Transport())}, opts...)
	return fromRegistry(src, ref, opts)
}

// Load opens an image from an OCI layout directory, an OCI archive or a
// docker archive, whichever path is. An image index is an error naming its
// platforms: LoadAny reads those.
func Load(path string) (*Image, error) {
	a, err := LoadAny(path)
	if err != nil {
		return nil, err
	}
	return a.single(path)
}

// LoadAny opens an image or an image index from an OCI layout directory, an
// OCI archive or a docker archive (which holds one image), whichever path is.
func LoadAny(path string) (*Artifact, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return fromLayout(path)
	}
	a, err := indexArchive(path)
	if err != nil {
		return nil, err
	}
	// Docker 25's `docker save` writes both layouts in one tar; the OCI
	// one carries the manifest bytes, so it wins.
	if _, ok := a.entries["oci-layout"]; ok {
		return fromOCIArchive(a)
	}
	if _, ok := a.entries["manifest.json"]; ok {
		img, err := fromDockerArchive(a)
		if err != nil {
			return nil, err
		}
		return imageArtifact(img)
	}
	return nil, fmt.Errorf("%s: neither an OCI layout, an OCI archive nor a docker archive", path)
}

// archive is a tar file indexed once: each regular entry's data is a
// section of the file, so a blob is read without rescanning the tar.
type archive struct {
	path    string
	entries map[string]entry
}

type entry struct{ offset, size int64 }

func indexArchive(file string) (*archive, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	a := &archive{path: file, entries: map[string]entry{}}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return a, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: not a tar archive: %w", file, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		n := path.Clean(h.Name)
		if _, dup := a.entries[n]; dup {
			// Which copy a tool reads is up to the tool: refuse the
			// ambiguity rather than check one copy and serve the other.
			return nil, fmt.Errorf("%s: %s appears twice", file, n)
		}
		// archive/tar reads headers block by block without buffering, so
		// the file's offset is where this entry's data begins.
		off, err := f.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		a.entries[n] = entry{offset: off, size: h.Size}
	}
}

// open returns a reader of the named entry.
func (a *archive) open(name string) (io.ReadCloser, int64, error) {
	e, ok := a.entries[name]
	if !ok {
		return nil, 0, fmt.Errorf("%s: no %s in the archive", a.path, name)
	}
	f, err := os.Open(a.path)
	if err != nil {
		return nil, 0, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.NewSectionReader(f, e.offset, e.size), f}, e.size, nil
}
