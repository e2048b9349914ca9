package sbom

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/pulse-sidecar/pulse-sidecar/internal/atomicfile"
)

// emptyConfig is the OCI 1.1 empty descriptor's content: artifacts with no
// config of their own point at "{}".
const (
	emptyConfig          = "{}"
	emptyConfigMediaType = "application/vnd.oci.empty.v1+json"
)

// artifactManifest is an OCI 1.1 image manifest used as an artifact. ggcr's
// v1.Manifest has no artifactType field, so the referrer is written by hand.
type artifactManifest struct {
	SchemaVersion int64           `json:"schemaVersion"`
	MediaType     types.MediaType `json:"mediaType"`
	ArtifactType  string          `json:"artifactType"`
	Config        v1.Descriptor   `json:"config"`
	Layers        []v1.Descriptor `json:"layers"`
	Subject       *v1.Descriptor  `json:"subject"`
}

// Attach stores sbom in the OCI layout at layoutPath as an artifact whose
// subject is image, so the SBOM travels with the image without being part
// of its digest. image must already be in the layout's index. Attaching the
// same SBOM twice is a no-op.
func Attach(layoutPath string, image v1.Descriptor, sbom []byte) error {
	p, err := layout.FromPath(layoutPath)
	if err != nil {
		return fmt.Errorf("sbom attach: %s is not an OCI layout: %w", layoutPath, err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return fmt.Errorf("sbom attach: %s: %w", layoutPath, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return fmt.Errorf("sbom attach: %s: %w", layoutPath, err)
	}
	if !hasDigest(im, image.Digest) {
		return fmt.Errorf("sbom attach: image %s is not in %s", image.Digest, layoutPath)
	}
	m, err := referrer(image, sbom)
	if err != nil {
		return err
	}
	for _, blob := range [][]byte{sbom, []byte(emptyConfig), m} {
		if err := writeBlob(layoutPath, blob); err != nil {
			return fmt.Errorf("sbom attach: %w", err)
		}
	}
	desc := v1.Descriptor{
		MediaType:    types.OCIManifestSchema1,
		Size:         int64(len(m)),
		Digest:       digestOf(m),
		ArtifactType: MediaType,
	}
	if hasDigest(im, desc.Digest) {
		return nil
	}
	if err := p.AppendDescriptor(desc); err != nil {
		return fmt.Errorf("sbom attach: %s: %w", layoutPath, err)
	}
	return nil
}

// referrer renders the artifact manifest for sbom about image.
func referrer(image v1.Descriptor, sbom []byte) ([]byte, error) {
	// The subject is the image's identity only; its annotations and
	// platform belong to the index entry, not to the reference.
	subject := v1.Descriptor{MediaType: image.MediaType, Size: image.Size, Digest: image.Digest}
	if subject.MediaType == "" {
		subject.MediaType = types.OCIManifestSchema1
	}
	m := artifactManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  MediaType,
		Config: v1.Descriptor{
			MediaType: emptyConfigMediaType,
			Size:      int64(len(emptyConfig)),
			Digest:    digestOf([]byte(emptyConfig)),
			Data:      []byte(emptyConfig),
		},
		Layers: []v1.Descriptor{{
			MediaType:   MediaType,
			Size:        int64(len(sbom)),
			Digest:      digestOf(sbom),
			Annotations: map[string]string{"org.opencontainers.image.title": "sbom.spdx.json"},
		}},
		Subject: &subject,
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("sbom attach: rendering manifest: %w", err)
	}
	return b, nil
}

func hasDigest(im *v1.IndexManifest, d v1.Hash) bool {
	for _, m := range im.Manifests {
		if m.Digest == d {
			return true
		}
	}
	return false
}

func digestOf(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

// writeBlob stores b under blobs/sha256 through a temp file and a rename:
// a blob that exists is trusted by its name, so a torn write must never
// appear under that name.
func writeBlob(layoutPath string, b []byte) error {
	d := digestOf(b)
	dir := filepath.Join(layoutPath, "blobs", d.Algorithm)
	dst := filepath.Join(dir, d.Hex)
	if existing, err := os.ReadFile(dst); err == nil && bytes.Equal(existing, b) {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return WriteFile(dst, b)
}

// WriteFile writes b to path through a temp file in the same directory and
// a rename, for the SBOM file written next to the image.
func WriteFile(path string, b []byte) error {
	return atomicfile.WriteBytes(path, b, 0o644)
}
