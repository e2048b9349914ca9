package source

import (
	"bytes"
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/pulse-sidecar/pulse-sidecar/internal/oci"
)

// Artifact is what a source holds: one image, or an image index of one
// image per platform (what `imagectl build` writes by default). Every blob
// of every platform has been checked, as for Image.
type Artifact struct {
	// Index is the image index; nil when the source holds one image.
	Index v1.ImageIndex
	// Platforms lists the images: the index's, in its order, or the one
	// image, its platform read from its config.
	Platforms []PlatformImage
	close     func() error
}

// PlatformImage is one platform's image.
type PlatformImage struct {
	Platform v1.Platform
	Image    v1.Image
}

// Name is how files and messages name the platform: os/arch[/variant].
func (p PlatformImage) Name() string { return oci.PlatformString(p.Platform) }

// Close releases what backs the artifact.
func (a *Artifact) Close() error {
	if a.close == nil {
		return nil
	}
	return a.close()
}

// Value is the index, or the one image: what a sink writes or pushes.
func (a *Artifact) Value() interface {
	MediaType() (types.MediaType, error)
	Digest() (v1.Hash, error)
	RawManifest() ([]byte, error)
} {
	if a.Index != nil {
		return a.Index
	}
	return a.Platforms[0].Image
}

// Digest is the index's digest, or the image's.
func (a *Artifact) Digest() (v1.Hash, error) { return a.Value().Digest() }

// Select returns the image for platform, given as os/arch[/variant] (a
// missing variant matches any). One image matches its own platform only.
func (a *Artifact) Select(platform string) (v1.Image, error) {
	want, err := v1.ParsePlatform(platform)
	if err != nil {
		return nil, err
	}
	var have []string
	for _, p := range a.Platforms {
		if p.Platform.OS == want.OS && p.Platform.Architecture == want.Architecture &&
			(want.Variant == "" || want.Variant == p.Platform.Variant) {
			return p.Image, nil
		}
		have = append(have, p.Name())
	}
	return nil, fmt.Errorf("no image for %s (platforms: %s)", platform, strings.Join(have, ", "))
}

// single is the one image of a, or an error naming the index's platforms.
func (a *Artifact) single(where string) (*Image, error) {
	if a.Index == nil {
		return &Image{Image: a.Platforms[0].Image, close: a.close}, nil
	}
	d, _ := a.Index.Digest()
	var names []string
	for _, p := range a.Platforms {
		names = append(names, p.Name())
	}
	a.Close()
	return nil, fmt.Errorf("%s holds an image index %s (%s), not one image", where, d, strings.Join(names, ", "))
}

func imageArtifact(img *Image) (*Artifact, error) {
	p, err := oci.Platform(img)
	if err != nil {
		img.Close()
		return nil, err
	}
	return &Artifact{Platforms: []PlatformImage{{Platform: p, Image: img.Image}}, close: img.close}, nil
}

// verifiedArtifact is verifiedImage for a descriptor that may name an index:
// then the index and every image it lists are read and checked, and each
// entry's platform must be the one its image's config states, or a runtime
// picking by the index would start another architecture's image.
func verifiedArtifact(source string, desc v1.Descriptor, open blobOpener) (*Artifact, error) {
	if !desc.MediaType.IsIndex() {
		img, err := verifiedImage(source, desc, open)
		if err != nil {
			return nil, err
		}
		return imageArtifact(img)
	}
	raw, err := readSmall(source, open, desc)
	if err != nil {
		return nil, err
	}
	m, err := v1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("%s: index %s: %w", source, desc.Digest, err)
	}
	idx := &verifiedIndex{raw: raw, mt: desc.MediaType, m: m, images: map[v1.Hash]v1.Image{}}
	out := &Artifact{Index: idx}
	seen := map[string]bool{}
	for _, d := range m.Manifests {
		if !d.MediaType.IsImage() || d.ArtifactType != "" {
			return nil, fmt.Errorf("%s: index %s lists %s (%s%s): only platform images are read", source, desc.Digest, d.Digest, d.MediaType, d.ArtifactType)
		}
		img, err := verifiedImage(source, d, open)
		if err != nil {
			return nil, err
		}
		p, err := oci.Platform(img)
		if err != nil {
			return nil, fmt.Errorf("%s: manifest %s: %w", source, d.Digest, err)
		}
		if d.Platform == nil || d.Platform.OS != p.OS || d.Platform.Architecture != p.Architecture || d.Platform.Variant != p.Variant {
			return nil, fmt.Errorf("%s: index %s says manifest %s is for %v, its config says %s", source, desc.Digest, d.Digest, platformOrNone(d.Platform), oci.PlatformString(p))
		}
		if seen[oci.PlatformString(p)] {
			return nil, fmt.Errorf("%s: index %s lists two images for %s", source, desc.Digest, oci.PlatformString(p))
		}
		seen[oci.PlatformString(p)] = true
		idx.images[d.Digest] = img.Image
		out.Platforms = append(out.Platforms, PlatformImage{Platform: p, Image: img.Image})
	}
	if len(out.Platforms) == 0 {
		return nil, fmt.Errorf("%s: index %s lists no images", source, desc.Digest)
	}
	return out, nil
}

func platformOrNone(p *v1.Platform) string {
	if p == nil {
		return "no platform"
	}
	return oci.PlatformString(*p)
}

// verifiedIndex serves an index whose bytes and images have been checked.
type verifiedIndex struct {
	raw    []byte
	mt     types.MediaType
	m      *v1.IndexManifest
	images map[v1.Hash]v1.Image
}

var _ v1.ImageIndex = (*verifiedIndex)(nil)

func (i *verifiedIndex) MediaType() (types.MediaType, error) { return i.mt, nil }
func (i *verifiedIndex) Digest() (v1.Hash, error)            { return partial.Digest(i) }
func (i *verifiedIndex) Size() (int64, error)                { return partial.Size(i) }
func (i *verifiedIndex) RawManifest() ([]byte, error)        { return i.raw, nil }
func (i *verifiedIndex) IndexManifest() (*v1.IndexManifest, error) {
	return i.m.DeepCopy(), nil
}
func (i *verifiedIndex) Image(h v1.Hash) (v1.Image, error) {
	img, ok := i.images[h]
	if !ok {
		return nil, fmt.Errorf("index lists no image %s", h)
	}
	return img, nil
}
func (i *verifiedIndex) ImageIndex(h v1.Hash) (v1.ImageIndex, error) {
	return nil, fmt.Errorf("index lists no nested index %s", h)
}
