package oci

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
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
		idx, err := layout.ImageIndexFromPath(path)
		if err != nil {
			return nil, fmt.Errorf("%s: not an OCI layout: %w", path, err)
		}
		return onlyImage(path, idx)
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

func onlyImage(where string, idx v1.ImageIndex) (v1.Image, error) {
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	desc, err := theImage(where, m)
	if err != nil {
		return nil, err
	}
	return idx.Image(desc.Digest)
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
	path     string
	manifest []byte
	mt       types.MediaType
	config   []byte
}

func loadOCIArchive(path string) (v1.Image, error) {
	a := &ociArchive{path: path}
	indexBytes, err := a.blob("index.json")
	if err != nil {
		return nil, err
	}
	idx, err := v1.ParseIndexManifest(bytes.NewReader(indexBytes))
	if err != nil {
		return nil, fmt.Errorf("%s: index.json: %w", path, err)
	}
	desc, err := theImage(path+": index.json", idx)
	if err != nil {
		return nil, err
	}
	if a.manifest, err = a.blob(blobPath(desc.Digest)); err != nil {
		return nil, err
	}
	if got, _, err := v1.SHA256(bytes.NewReader(a.manifest)); err != nil || got != desc.Digest {
		return nil, fmt.Errorf("%s: manifest digest %s does not match index.json's %s", path, got, desc.Digest)
	}
	a.mt = desc.MediaType
	m, err := v1.ParseManifest(bytes.NewReader(a.manifest))
	if err != nil {
		return nil, fmt.Errorf("%s: manifest: %w", path, err)
	}
	if a.config, err = a.blob(blobPath(m.Config.Digest)); err != nil {
		return nil, err
	}
	return partial.CompressedToImage(a)
}

func blobPath(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

// open returns a reader positioned at the named entry.
func (a *ociArchive) open(name string) (io.ReadCloser, error) {
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

func (a *ociArchive) blob(name string) ([]byte, error) {
	rc, err := a.open(name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	// Index, manifest and config are small; a bound keeps a hostile archive
	// from making us read a huge entry into memory.
	b, err := io.ReadAll(io.LimitReader(rc, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", a.path, name, err)
	}
	return b, nil
}

func (a *ociArchive) RawManifest() ([]byte, error)        { return a.manifest, nil }
func (a *ociArchive) RawConfigFile() ([]byte, error)      { return a.config, nil }
func (a *ociArchive) MediaType() (types.MediaType, error) { return a.mt, nil }
func (a *ociArchive) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	m, err := v1.ParseManifest(bytes.NewReader(a.manifest))
	if err != nil {
		return nil, err
	}
	for _, d := range m.Layers {
		if d.Digest == h {
			return &archiveLayer{a: a, desc: d}, nil
		}
	}
	return nil, fmt.Errorf("%s: manifest has no layer %s", a.path, h)
}

type archiveLayer struct {
	a    *ociArchive
	desc v1.Descriptor
}

func (l *archiveLayer) Digest() (v1.Hash, error)            { return l.desc.Digest, nil }
func (l *archiveLayer) Size() (int64, error)                { return l.desc.Size, nil }
func (l *archiveLayer) MediaType() (types.MediaType, error) { return l.desc.MediaType, nil }
func (l *archiveLayer) Compressed() (io.ReadCloser, error)  { return l.a.open(blobPath(l.desc.Digest)) }
