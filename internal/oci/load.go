package oci

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

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
	if len(m.Manifests) != 1 {
		return nil, fmt.Errorf("%s: holds %d manifests, want exactly one image", where, len(m.Manifests))
	}
	if !m.Manifests[0].MediaType.IsImage() {
		return nil, fmt.Errorf("%s: %s is a %s, not an image", where, m.Manifests[0].Digest, m.Manifests[0].MediaType)
	}
	return idx.Image(m.Manifests[0].Digest)
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
	if len(idx.Manifests) != 1 || !idx.Manifests[0].MediaType.IsImage() {
		return nil, fmt.Errorf("%s: index.json lists %d manifests, want exactly one image", path, len(idx.Manifests))
	}
	desc := idx.Manifests[0]
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
