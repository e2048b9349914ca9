package sink

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Referrer is an OCI 1.1 artifact about an image (its SBOM): a manifest
// whose subject is the image, and the blobs that manifest names.
type Referrer struct {
	Manifest []byte
	Blobs    [][]byte
}

// Push uploads img to repo by digest, attaches each referrer to it, then
// points each tag at it, with the credentials docker and podman use
// (authn.DefaultKeychain). Referrers go before the tags, so whoever pulls a
// tag finds the SBOM already there. It returns the digest reference, whose
// digest is the local manifest digest by construction: the registry stores
// the manifest bytes we send.
func Push(ctx context.Context, img v1.Image, repo string, tags []string, referrers []Referrer, opts ...remote.Option) (name.Digest, error) {
	r, err := name.NewRepository(repo)
	if err != nil {
		return name.Digest{}, fmt.Errorf("repository %q: %w", repo, err)
	}
	// Check every tag before uploading anything, so a typo fails fast.
	refs := make([]name.Tag, 0, len(tags))
	for _, t := range tags {
		tag, err := name.NewTag(r.String() + ":" + t)
		if err != nil {
			return name.Digest{}, fmt.Errorf("tag %q: %w", t, err)
		}
		refs = append(refs, tag)
	}
	d, err := img.Digest()
	if err != nil {
		return name.Digest{}, err
	}
	ref := r.Digest(d.String())
	opts = append([]remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}, opts...)
	if err := remote.Write(ref, img, opts...); err != nil {
		return name.Digest{}, fmt.Errorf("push %s: %w", ref, err)
	}
	for _, a := range referrers {
		if err := attach(ref, a, opts); err != nil {
			return name.Digest{}, err
		}
	}
	for _, tag := range refs {
		if err := remote.Tag(tag, img, opts...); err != nil {
			return name.Digest{}, fmt.Errorf("tag %s: %w", tag, err)
		}
	}
	return ref, nil
}

// artifactHead is what attach reads from a referrer's manifest.
type artifactHead struct {
	MediaType    types.MediaType `json:"mediaType"`
	ArtifactType string          `json:"artifactType"`
	Subject      *v1.Descriptor  `json:"subject"`
}

// attach uploads a referrer of subject. A registry with the referrers API
// indexes it itself; for one without, ggcr's remote.Put maintains the tag
// fallback (an index tagged sha256-<hex> of the subject), but records the
// config's media type as the artifact type. attach corrects that entry to
// the manifest's artifactType, as the distribution spec asks, so a client
// filtering referrers by artifact type finds the SBOM either way.
func attach(subject name.Digest, a Referrer, opts []remote.Option) error {
	var head artifactHead
	if err := json.Unmarshal(a.Manifest, &head); err != nil {
		return fmt.Errorf("referrer of %s: %w", subject, err)
	}
	if head.Subject == nil || head.Subject.Digest.String() != subject.DigestStr() {
		return fmt.Errorf("referrer of %s: its subject is %v", subject, head.Subject)
	}
	repo := subject.Context()
	for _, b := range a.Blobs {
		if err := remote.WriteLayer(repo, static.NewLayer(b, "application/octet-stream"), opts...); err != nil {
			return fmt.Errorf("referrer of %s: blob: %w", subject, err)
		}
	}
	h, size, err := v1.SHA256(bytes.NewReader(a.Manifest))
	if err != nil {
		return err
	}
	ref := repo.Digest(h.String())
	if err := remote.Put(ref, rawManifest{a.Manifest, head.MediaType}, opts...); err != nil {
		return fmt.Errorf("referrer %s of %s: %w", ref, subject, err)
	}
	if err := fixFallback(subject, v1.Descriptor{MediaType: head.MediaType, Digest: h, Size: size, ArtifactType: head.ArtifactType}, opts); err != nil {
		return fmt.Errorf("referrer %s of %s: tag fallback: %w", ref, subject, err)
	}
	return nil
}

// fixFallback sets the artifact type of want's entry in subject's fallback
// index, where one exists.
func fixFallback(subject name.Digest, want v1.Descriptor, opts []remote.Option) error {
	tag := subject.Context().Tag(fallbackTagName(subject))
	idx, err := remote.Index(tag, opts...)
	var terr *transport.Error
	if errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound {
		return nil // the registry keeps the referrers itself
	}
	if err != nil {
		return err
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	m = m.DeepCopy()
	changed := false
	for i, d := range m.Manifests {
		if d.Digest == want.Digest && d.ArtifactType != want.ArtifactType {
			m.Manifests[i].ArtifactType = want.ArtifactType
			changed = true
		}
	}
	if !changed {
		return nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return remote.Put(tag, rawManifest{b, types.OCIImageIndex}, opts...)
}

// fallbackTagName is the distribution spec's referrers tag schema:
// <algorithm>-<hex> of the subject's digest.
func fallbackTagName(d name.Digest) string {
	h, _ := v1.NewHash(d.DigestStr())
	return h.Algorithm + "-" + h.Hex
}

// rawManifest is a manifest to upload as the bytes it is.
type rawManifest struct {
	b  []byte
	mt types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.b, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mt, nil }
