package oci

import (
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Platform reads the platform an image was built for from its config: an
// index entry must say what the image says, or a runtime that picks by the
// index would run an image of another architecture. It may be empty for
// someone else's image; AssembleIndex refuses that.
func Platform(img v1.Image) (v1.Platform, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return v1.Platform{}, err
	}
	return v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}, nil
}

// PlatformString is how files and messages name a platform: os/arch[/variant].
func PlatformString(p v1.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// AssembleIndex builds an OCI image index with one entry per image, in the
// order given, each entry's platform read from that image's config. The
// order is the caller's (the spec's architectures), never a map's, so the
// index digest depends on the images alone. Two images of one platform are
// an error: a runtime could not tell them apart.
func AssembleIndex(imgs []v1.Image) (v1.ImageIndex, error) {
	if len(imgs) == 0 {
		return nil, fmt.Errorf("image index: no images")
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	seen := map[string]bool{}
	adds := make([]mutate.IndexAddendum, 0, len(imgs))
	for _, img := range imgs {
		p, err := Platform(img)
		if err != nil {
			return nil, fmt.Errorf("image index: %w", err)
		}
		if p.OS == "" || p.Architecture == "" {
			return nil, fmt.Errorf("image index: an image config names no os/architecture")
		}
		if seen[PlatformString(p)] {
			return nil, fmt.Errorf("image index: two images for %s", PlatformString(p))
		}
		seen[PlatformString(p)] = true
		mt, err := img.MediaType()
		if err != nil {
			return nil, err
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{MediaType: mt, Platform: &p}})
	}
	return mutate.AppendManifests(idx, adds...), nil
}
