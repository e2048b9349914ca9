package source

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func fromLayout(dir string) (*Artifact, error) {
	// Read index.json with the same cap as an archive's: ggcr's layout
	// package reads it whole, whatever its size.
	f, err := os.Open(filepath.Join(dir, "index.json"))
	if err != nil {
		return nil, fmt.Errorf("%s: not an OCI layout: %w", dir, err)
	}
	defer f.Close()
	m, err := v1.ParseIndexManifest(io.LimitReader(f, maxMetadata))
	if err != nil {
		return nil, fmt.Errorf("%s: index.json: %w", dir, err)
	}
	desc, err := theImage(dir, m)
	if err != nil {
		return nil, err
	}
	return verifiedArtifact(dir, desc, layoutBlobs(dir))
}

// layoutBlobs opens blobs/<algorithm>/<hex> below dir. ggcr's layout.Blob
// does the same; the digest is checked by the caller either way.
func layoutBlobs(dir string) blobOpener {
	return func(h v1.Hash) (io.ReadCloser, error) {
		if err := validHash(h); err != nil {
			return nil, err
		}
		return os.Open(filepath.Join(dir, "blobs", h.Algorithm, h.Hex))
	}
}

// validHash keeps a digest from a hostile index out of the file system:
// "sha256" and 64 lower-case hex digits are all a blob path may hold.
func validHash(h v1.Hash) error {
	if h.Algorithm != "sha256" || len(h.Hex) != 64 {
		return fmt.Errorf("digest %s: only sha256 digests are supported", h)
	}
	for _, c := range h.Hex {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return fmt.Errorf("digest %s: not hex", h)
		}
	}
	return nil
}

// theImage picks the one image or image index a layout's index.json lists.
// Artifacts stored beside it (an SBOM referring to the image, as older
// imagectl layouts held) are not candidates: they carry an artifactType, or
// a media type that is neither an image manifest nor an index. Several are
// an error, as they are for skopeo.
func theImage(where string, m *v1.IndexManifest) (v1.Descriptor, error) {
	var images []v1.Descriptor
	var other []string
	for _, d := range m.Manifests {
		if d.ArtifactType != "" || !d.MediaType.IsImage() && !d.MediaType.IsIndex() {
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

func fromOCIArchive(a *archive) (*Artifact, error) {
	rc, _, err := a.open("index.json")
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	idx, err := v1.ParseIndexManifest(io.LimitReader(rc, maxMetadata))
	if err != nil {
		return nil, fmt.Errorf("%s: index.json: %w", a.path, err)
	}
	desc, err := theImage(a.path+": index.json", idx)
	if err != nil {
		return nil, err
	}
	return verifiedArtifact(a.path, desc, func(h v1.Hash) (io.ReadCloser, error) {
		if err := validHash(h); err != nil {
			return nil, err
		}
		rc, _, err := a.open("blobs/" + h.Algorithm + "/" + h.Hex)
		return rc, err
	})
}
