package oci

import (
	"fmt"
	"maps"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Layer is one layer of an image with the history entry that explains it.
type Layer struct {
	Layer     v1.Layer
	CreatedBy string
	Comment   string
}

// Image is everything an image is assembled from. It is pure data: Assemble
// reads nothing but this, so the same value always gives the same digest.
type Image struct {
	Created      time.Time
	OS           string // "linux"
	Architecture string // GOARCH spelling: "amd64", "arm64"
	Variant      string
	Config       v1.Config
	Layers       []Layer
	// Annotations go on the manifest; labels belong in Config.Labels.
	Annotations map[string]string
}

// Assemble builds the image: OCI media types throughout, one history entry
// per layer, every timestamp set to Created.
func Assemble(in Image) (v1.Image, error) {
	if in.OS == "" || in.Architecture == "" {
		return nil, fmt.Errorf("image: os and architecture are required")
	}
	created := v1.Time{Time: in.Created.UTC()}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	adds := make([]mutate.Addendum, 0, len(in.Layers))
	for i, l := range in.Layers {
		if l.Layer == nil {
			return nil, fmt.Errorf("image: layer %d (%s) is nil", i, l.CreatedBy)
		}
		adds = append(adds, mutate.Addendum{
			Layer:     l.Layer,
			MediaType: types.OCILayer,
			History:   v1.History{Created: created, CreatedBy: l.CreatedBy, Comment: l.Comment},
		})
	}
	img, err := mutate.Append(img, adds...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Created = created
	cf.OS = in.OS
	cf.Architecture = in.Architecture
	cf.Variant = in.Variant
	cf.Config = in.Config
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, err
	}
	if len(in.Annotations) > 0 {
		img = mutate.Annotations(img, maps.Clone(in.Annotations)).(v1.Image)
	}
	return img, nil
}
