package sbom

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
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

// Artifact is an SBOM as an OCI 1.1 artifact referring to an image: the
// manifest, and the blobs it names (the empty config and the document).
// It is what `imagectl push` attaches to the image in a registry; a layout
// holds no copy (its index.json lists the image alone, so every tool reads
// it unnamed): the document is the file beside the layout.
type Artifact struct {
	Manifest []byte
	Blobs    [][]byte
}

// NewArtifact renders the artifact for doc about image. The same inputs
// give the same bytes, so pushing twice attaches one referrer.
func NewArtifact(image v1.Descriptor, doc []byte) (Artifact, error) {
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
			Size:        int64(len(doc)),
			Digest:      digestOf(doc),
			Annotations: map[string]string{"org.opencontainers.image.title": "sbom.spdx.json"},
		}},
		Subject: &subject,
	}
	b, err := json.Marshal(m)
	if err != nil {
		return Artifact{}, fmt.Errorf("sbom artifact: %w", err)
	}
	return Artifact{Manifest: b, Blobs: [][]byte{[]byte(emptyConfig), doc}}, nil
}

// Describes returns the image digest doc was generated for: an SBOM beside
// a layout that was rebuilt since must not be attached to the new image.
func Describes(doc []byte) (v1.Hash, error) {
	var d struct {
		Packages []struct {
			SPDXID                string `json:"SPDXID"`
			VersionInfo           string `json:"versionInfo"`
			PrimaryPackagePurpose string `json:"primaryPackagePurpose"`
		} `json:"packages"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		return v1.Hash{}, fmt.Errorf("not an SPDX JSON document: %w", err)
	}
	for _, p := range d.Packages {
		if p.SPDXID == "SPDXRef-"+string(imageID) {
			return v1.NewHash(p.VersionInfo)
		}
	}
	return v1.Hash{}, fmt.Errorf("the document describes no image (no %s package)", "SPDXRef-"+string(imageID))
}

func digestOf(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}
