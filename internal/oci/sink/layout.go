package sink

import (
	"fmt"
	"os"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Artifact is what the sinks write: a v1.Image, or a v1.ImageIndex of one
// image per platform. Both satisfy it; writers tell them apart by type.
type Artifact interface {
	MediaType() (types.MediaType, error)
	Digest() (v1.Hash, error)
	RawManifest() ([]byte, error)
}

// RefNameAnnotation names an image inside an OCI layout's index.
const RefNameAnnotation = "org.opencontainers.image.ref.name"

// WriteLayout writes img (an image or an image index) as an OCI image layout
// at dir. Its index.json lists exactly one entry, the image or the index, so skopeo, podman and crane read the layout
// without being told which image to take. Nothing else is stored in it: the
// SBOM is a file beside the layout, attached to the image as a referrer when
// it is pushed. The layout is built in a sibling temp directory and renamed
// into place, so dir is never seen half-written.
func WriteLayout(dir string, img Artifact, refName string) error {
	s, err := StageLayout(dir, img, refName)
	if err != nil {
		return err
	}
	return s.Commit()
}

// StageLayout is WriteLayout up to, not including, the rename.
func StageLayout(dir string, img Artifact, refName string) (_ *Staged, err error) {
	tmp, err := tempDir(dir)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	if err := writeLayout(tmp, img, refName); err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	return &Staged{tmp: tmp, dst: dir, dir: true}, nil
}

func writeLayout(dir string, a Artifact, refName string) error {
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	var opts []layout.Option
	if refName != "" {
		opts = append(opts, layout.WithAnnotations(map[string]string{RefNameAnnotation: refName}))
	}
	switch a := a.(type) {
	case v1.Image:
		return p.AppendImage(a, opts...)
	case v1.ImageIndex:
		// The index's images go in as blobs only: index.json names the
		// index, and a runtime picks its platform from there.
		return p.AppendIndex(a, opts...)
	}
	return fmt.Errorf("%T is neither an image nor an image index", a)
}

// created is the time an artifact's files are dated with: the image's
// creation time, or that of an index's first image (they share it).
func created(a Artifact) (time.Time, error) {
	switch a := a.(type) {
	case v1.Image:
		cf, err := a.ConfigFile()
		if err != nil {
			return time.Time{}, err
		}
		return cf.Created.Time, nil
	case v1.ImageIndex:
		m, err := a.IndexManifest()
		if err != nil {
			return time.Time{}, err
		}
		if len(m.Manifests) == 0 {
			return time.Time{}, fmt.Errorf("image index lists no manifests")
		}
		img, err := a.Image(m.Manifests[0].Digest)
		if err != nil {
			return time.Time{}, err
		}
		return created(img)
	}
	return time.Time{}, fmt.Errorf("%T is neither an image nor an image index", a)
}
