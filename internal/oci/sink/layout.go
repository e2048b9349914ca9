package sink

import (
	"fmt"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// RefNameAnnotation names an image inside an OCI layout's index.
const RefNameAnnotation = "org.opencontainers.image.ref.name"

// WriteLayout writes img as an OCI image layout at dir. Its index.json lists
// exactly one entry, the image, so skopeo, podman and crane read the layout
// without being told which image to take. Nothing else is stored in it: the
// SBOM is a file beside the layout, attached to the image as a referrer when
// it is pushed. The layout is built in a sibling temp directory and renamed
// into place, so dir is never seen half-written.
func WriteLayout(dir string, img v1.Image, refName string) error {
	s, err := StageLayout(dir, img, refName)
	if err != nil {
		return err
	}
	return s.Commit()
}

// StageLayout is WriteLayout up to, not including, the rename.
func StageLayout(dir string, img v1.Image, refName string) (_ *Staged, err error) {
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

func writeLayout(dir string, img v1.Image, refName string) error {
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	var opts []layout.Option
	if refName != "" {
		opts = append(opts, layout.WithAnnotations(map[string]string{RefNameAnnotation: refName}))
	}
	return p.AppendImage(img, opts...)
}
