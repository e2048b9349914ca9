package oci

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Open is Load for a path that exists and a registry reference otherwise,
// read with the credentials docker and podman use. It is how diff, policy
// and verify --against accept an image from anywhere: a local build, a Nix
// or Bazel result, or what a registry serves.
func Open(ctx context.Context, src string, opts ...remote.Option) (v1.Image, error) {
	_, statErr := os.Stat(src)
	if statErr == nil {
		return Load(src)
	}
	if !errors.Is(statErr, fs.ErrNotExist) {
		return nil, statErr
	}
	ref, err := name.ParseReference(src)
	if err != nil {
		// Most likely a mistyped path: say so first.
		return nil, fmt.Errorf("%s: no such file or directory, and not an image reference: %w", src, err)
	}
	opts = append([]remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}, opts...)
	img, err := remote.Image(ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("%s: no such file or directory; as a registry reference: %w", src, err)
	}
	return img, nil
}

// Load opens an image from an OCI layout directory, an OCI archive or a
// docker archive, whichever path is. Verify, diff and policy read images
// only through this, so they work on any build's output.
func Load(path string) (v1.Image, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return loadLayout(path)
	}
	kind, err := archiveKind(path)
	if err != nil {
		return nil, err
	}
	switch kind {
	case "oci":
		return loadOCIArchive(path)
	case "docker":
		img, err := tarball.ImageFromPath(path, nil)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return img, nil
	}
	return nil, fmt.Errorf("%s: neither an OCI layout, an OCI archive nor a docker archive", path)
}

func loadLayout(path string) (v1.Image, error) {
	p, err := layout.FromPath(path)
	if err != nil {
		return nil, fmt.Errorf("%s: not an OCI layout: %w", path, err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("%s: not an OCI layout: %w", path, err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	desc, err := theImage(path, m)
	if err != nil {
		return nil, err
	}
	return verifiedImage(path, desc, p.Blob)
}

// theImage picks the one image an index lists. Artifacts stored beside it
// (an SBOM referring to the image) are not candidates: they carry an
// artifactType, or a media type that is no image manifest, and a layout that
// holds an image with its SBOM is still a layout of one image.
func theImage(where string, m *v1.IndexManifest) (v1.Descriptor, error) {
	var images []v1.Descriptor
	var other []string
	for _, d := range m.Manifests {
		if d.ArtifactType != "" || !d.MediaType.IsImage() {
			other = append(other, fmt.Sprintf("%s (%s%s)", d.Digest, d.MediaType, d.ArtifactType))
			continue
		}
		images = append(images, d)
	}
	switch len(images) {
	case 1:
		return images[0], nil
	case 0:
		return v1.Descriptor{}, fmt.Errorf("%s: lists no image manifest, only %v", where, other)
	}
	return v1.Descriptor{}, fmt.Errorf("%s: lists %d image manifests, want exactly one", where, len(images))
}

// archiveKind tells the two archive formats apart by their marker files.
func archiveKind(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return "", nil
		}
		if err != nil {
			return "", fmt.Errorf("%s: not a tar archive: %w", path, err)
		}
		switch filepath.Clean(h.Name) {
		case "oci-layout":
			return "oci", nil
		case "manifest.json":
			return "docker", nil
		}
	}
}

// ociArchive reads blobs straight out of the tar, rescanning it per blob:
// there is no temp directory to clean up, and layers are read sequentially
// anyway.
type ociArchive struct {
	path string
}

func loadOCIArchive(path string) (v1.Image, error) {
	a := ociArchive{path: path}
	rc, err := a.open("index.json")
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	idx, err := v1.ParseIndexManifest(io.LimitReader(rc, maxMetadata))
	if err != nil {
		return nil, fmt.Errorf("%s: index.json: %w", path, err)
	}
	desc, err := theImage(path+": index.json", idx)
	if err != nil {
		return nil, err
	}
	return verifiedImage(path, desc, func(h v1.Hash) (io.ReadCloser, error) { return a.open(blobPath(h)) })
}

func blobPath(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

// open returns a reader positioned at the named entry.
func (a ociArchive) open(name string) (io.ReadCloser, error) {
	f, err := os.Open(a.path)
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			f.Close()
			if errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("%s: no %s in the archive", a.path, name)
			}
			return nil, fmt.Errorf("%s: %w", a.path, err)
		}
		if filepath.ToSlash(filepath.Clean(h.Name)) == name {
			return struct {
				io.Reader
				io.Closer
			}{tr, f}, nil
		}
	}
}

// maxMetadata bounds the index, manifest and config read into memory: they
// are small, and the bound keeps a hostile file from exhausting memory.
const maxMetadata = 16 << 20

// blobOpener opens a blob of a layout or archive by digest, unverified.
type blobOpener func(v1.Hash) (io.ReadCloser, error)

// verifiedImage serves the image desc names from a layout or archive,
// checking every blob against the digest and size its parent gives:
// neither a layout on disk nor an archive vouches for its contents, and
// diff, policy and verify --against must not report on bytes that are not
// the image they name. The manifest and config are checked here; layers as
// they are read, since they are large and often read only once.
func verifiedImage(where string, desc v1.Descriptor, open blobOpener) (v1.Image, error) {
	manifest, err := readVerified(where, open, desc)
	if err != nil {
		return nil, err
	}
	m, err := v1.ParseManifest(bytes.NewReader(manifest))
	if err != nil {
		return nil, fmt.Errorf("%s: manifest %s: %w", where, desc.Digest, err)
	}
	config, err := readVerified(where, open, m.Config)
	if err != nil {
		return nil, err
	}
	layers := make(map[v1.Hash]v1.Descriptor, len(m.Layers))
	for _, l := range m.Layers {
		layers[l.Digest] = l
	}
	return partial.CompressedToImage(&verifiedCore{where: where, mt: desc.MediaType, manifest: manifest, config: config, layers: layers, open: open})
}

// readVerified reads a small blob whole and checks it against d.
func readVerified(where string, open blobOpener, d v1.Descriptor) ([]byte, error) {
	if d.Size > maxMetadata {
		return nil, fmt.Errorf("%s: blob %s: %d bytes is too large for a manifest or config", where, d.Digest, d.Size)
	}
	rc, err := open(d.Digest)
	if err != nil {
		return nil, fmt.Errorf("%s: blob %s: %w", where, d.Digest, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(&verifyingReader{r: rc, where: where, want: d, h: sha256.New()})
	if err != nil {
		return nil, err
	}
	return b, nil
}

type verifiedCore struct {
	where            string
	mt               types.MediaType
	manifest, config []byte
	layers           map[v1.Hash]v1.Descriptor
	open             blobOpener
}

func (c *verifiedCore) RawManifest() ([]byte, error)        { return c.manifest, nil }
func (c *verifiedCore) RawConfigFile() ([]byte, error)      { return c.config, nil }
func (c *verifiedCore) MediaType() (types.MediaType, error) { return c.mt, nil }
func (c *verifiedCore) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	d, ok := c.layers[h]
	if !ok {
		return nil, fmt.Errorf("%s: manifest has no layer %s", c.where, h)
	}
	return &verifiedLayer{c: c, desc: d}, nil
}

type verifiedLayer struct {
	c    *verifiedCore
	desc v1.Descriptor
}

func (l *verifiedLayer) Digest() (v1.Hash, error)            { return l.desc.Digest, nil }
func (l *verifiedLayer) Size() (int64, error)                { return l.desc.Size, nil }
func (l *verifiedLayer) MediaType() (types.MediaType, error) { return l.desc.MediaType, nil }
func (l *verifiedLayer) Compressed() (io.ReadCloser, error) {
	if l.desc.Digest.Algorithm != "sha256" {
		return nil, fmt.Errorf("%s: layer %s: only sha256 digests are supported", l.c.where, l.desc.Digest)
	}
	rc, err := l.c.open(l.desc.Digest)
	if err != nil {
		return nil, fmt.Errorf("%s: layer %s: %w", l.c.where, l.desc.Digest, err)
	}
	return struct {
		io.Reader
		io.Closer
	}{&verifyingReader{r: rc, where: l.c.where, want: l.desc, h: sha256.New()}, rc}, nil
}

// verifyingReader passes a blob through, and at its end fails instead of
// returning io.EOF when the bytes read are not what want names. A reader
// that stops early learns nothing, but then it also used nothing whole.
type verifyingReader struct {
	r     io.Reader
	where string
	want  v1.Descriptor
	h     hash.Hash
	n     int64
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if v.n > v.want.Size {
		return n, fmt.Errorf("%s: blob %s: longer than its %d bytes", v.where, v.want.Digest, v.want.Size)
	}
	if errors.Is(err, io.EOF) {
		if v.n != v.want.Size {
			return n, fmt.Errorf("%s: blob %s: %d bytes, want %d", v.where, v.want.Digest, v.n, v.want.Size)
		}
		if got := hex.EncodeToString(v.h.Sum(nil)); v.want.Digest.Algorithm != "sha256" || got != v.want.Digest.Hex {
			return n, fmt.Errorf("%s: blob %s: content hashes to sha256:%s", v.where, v.want.Digest, got)
		}
	}
	return n, err
}
