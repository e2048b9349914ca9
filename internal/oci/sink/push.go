package sink

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/pulse-sidecar/pulse-sidecar/internal/fetch"
)

// Referrer is an OCI 1.1 artifact about an image (its SBOM): a manifest
// whose subject is the image, and the blobs that manifest names.
type Referrer struct {
	Manifest []byte
	Blobs    [][]byte
}

// Push uploads img (an image or an image index) to repo by digest, attaches
// each referrer to its subject (the image, or one platform's image of the
// index: an SBOM describes one architecture), then points each tag at it,
// with the credentials docker and podman use (authn.DefaultKeychain).
// Referrers go before the tags, so whoever pulls a tag finds the SBOM
// already there. Every wait on the registry is bounded by fetch.Timeouts'
// defaults unless opts give another transport. It returns the digest
// reference, whose digest is the local manifest digest by construction: the
// registry stores the manifest bytes we send.
func Push(ctx context.Context, img Artifact, repo string, tags []string, referrers []Referrer, opts ...remote.Option) (name.Digest, error) {
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
	opts = append([]remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain), remote.WithTransport(fetch.Timeouts{}.Transport())}, opts...)
	p, err := remote.NewPusher(opts...)
	if err != nil {
		return name.Digest{}, err
	}
	opts = append(opts, remote.Reuse(p))
	subjects := map[string]bool{ref.DigestStr(): true}
	var images []v1.Image
	switch a := img.(type) {
	case v1.Image:
		images = append(images, a)
	case v1.ImageIndex:
		m, err := a.IndexManifest()
		if err != nil {
			return name.Digest{}, err
		}
		for _, d := range m.Manifests {
			subjects[d.Digest.String()] = true
			if !d.MediaType.IsImage() {
				continue // p.Push walks what this does not
			}
			child, err := a.Image(d.Digest)
			if err != nil {
				return name.Digest{}, fmt.Errorf("push %s: manifest %s: %w", ref, d.Digest, err)
			}
			images = append(images, child)
		}
	default:
		return name.Digest{}, fmt.Errorf("%T is neither an image nor an image index", img)
	}
	if err := uploadBlobs(ctx, p, r, images); err != nil {
		return name.Digest{}, fmt.Errorf("push %s: %w", ref, err)
	}
	// For an index, the platforms' manifests go first, the index last: a
	// registry refuses an index naming manifests it does not hold.
	if err := p.Push(ctx, ref, img); err != nil {
		return name.Digest{}, fmt.Errorf("push %s: %w", ref, err)
	}
	for _, a := range referrers {
		if err := attach(r, subjects, a, opts); err != nil {
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

// uploadBlobs sends every layer and config of images before any manifest,
// so a failure names its blob: go-containerregistry's errors name only the
// upload session. The manifests' push then finds them sent (the Pusher
// remembers), as the distribution spec has it: blobs first.
func uploadBlobs(ctx context.Context, p *remote.Pusher, repo name.Repository, images []v1.Image) error {
	seen := map[v1.Hash]bool{}
	var blobs []v1.Layer
	for _, img := range images {
		ls, err := img.Layers()
		if err != nil {
			return err
		}
		cl, err := partial.ConfigLayer(img)
		if err != nil {
			return err
		}
		for _, l := range append(ls, cl) {
			d, err := l.Digest()
			if err != nil {
				return err
			}
			if !seen[d] {
				seen[d] = true
				blobs = append(blobs, l)
			}
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
		slots = make(chan struct{}, uploadJobs)
	)
	for _, l := range blobs {
		wg.Go(func() {
			slots <- struct{}{}
			defer func() { <-slots }()
			if ctx.Err() != nil {
				return
			}
			if err := p.Upload(ctx, repo, l); err != nil {
				d, _ := l.Digest()
				once.Do(func() { first = fmt.Errorf("blob %s: %w", d, err); cancel() })
			}
		})
	}
	wg.Wait()
	return first
}

// uploadJobs is how many blobs go up at once, go-containerregistry's default.
const uploadJobs = 4

// artifactHead is what attach reads from a referrer's manifest.
type artifactHead struct {
	MediaType    types.MediaType `json:"mediaType"`
	ArtifactType string          `json:"artifactType"`
	Subject      *v1.Descriptor  `json:"subject"`
}

// attach uploads a referrer of its subject, which must be among what was
// pushed. A registry with the referrers API
// indexes it itself; for one without, ggcr's remote.Put maintains the tag
// fallback (an index tagged sha256-<hex> of the subject), but records the
// config's media type as the artifact type. attach corrects that entry to
// the manifest's artifactType, as the distribution spec asks, so a client
// filtering referrers by artifact type finds the SBOM either way.
func attach(repo name.Repository, pushed map[string]bool, a Referrer, opts []remote.Option) error {
	var head artifactHead
	if err := json.Unmarshal(a.Manifest, &head); err != nil {
		return fmt.Errorf("referrer in %s: %w", repo, err)
	}
	if head.Subject == nil || !pushed[head.Subject.Digest.String()] {
		return fmt.Errorf("referrer in %s: its subject is %v, not the pushed image or one of its platforms", repo, head.Subject)
	}
	subject := repo.Digest(head.Subject.Digest.String())
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
