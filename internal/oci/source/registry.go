package source

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// fromRegistry pulls every blob of ref into a temp directory, each read to
// its end and checked, and serves the image from there. The registry is
// asked once per blob: what is checked is what is used.
func fromRegistry(src string, ref name.Reference, opts []remote.Option) (_ *Artifact, err error) {
	desc, err := remote.Get(ref, opts...)
	if err != nil {
		// Perhaps a mistyped path: say both.
		return nil, fmt.Errorf("%s: no such file or directory; as a registry reference: %w", src, err)
	}
	if !desc.MediaType.IsImage() && !desc.MediaType.IsIndex() {
		return nil, fmt.Errorf("%s is a %s, not an image", ref, desc.MediaType)
	}
	dir, err := os.MkdirTemp("", "imagectl-pull-*")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	where := ref.String()
	mt := desc.MediaType
	if desc.MediaType.IsIndex() {
		// Every platform's image is spooled and checked, as one image is.
		im, err := v1.ParseIndexManifest(bytes.NewReader(desc.Manifest))
		if err != nil {
			return nil, fmt.Errorf("%s: index %s: %w", where, desc.Digest, err)
		}
		if err := spool(dir, desc.Digest, io.NopCloser(bytes.NewReader(desc.Manifest))); err != nil {
			return nil, err
		}
		for _, d := range im.Manifests {
			if !d.MediaType.IsImage() {
				continue // verifiedArtifact names what it cannot read
			}
			child, err := remote.Get(ref.Context().Digest(d.Digest.String()), opts...)
			if err != nil {
				return nil, fmt.Errorf("%s: manifest %s: %w", where, d.Digest, err)
			}
			if err := spoolImage(dir, where, child); err != nil {
				return nil, err
			}
		}
	} else if err := spoolImage(dir, where, desc); err != nil {
		return nil, err
	}
	if mt == "" {
		mt = types.OCIManifestSchema1
	}
	out, err := verifiedArtifact(where, v1.Descriptor{MediaType: mt, Digest: desc.Digest, Size: desc.Size}, layoutBlobs(dir))
	if err != nil {
		return nil, err
	}
	out.close = func() error { return os.RemoveAll(dir) }
	return out, nil
}

// spoolImage copies one image's manifest, config and layers into dir.
func spoolImage(dir, where string, desc *remote.Descriptor) error {
	img, err := desc.Image()
	if err != nil {
		return err
	}
	m, err := v1.ParseManifest(bytes.NewReader(desc.Manifest))
	if err != nil {
		return fmt.Errorf("%s: manifest %s: %w", where, desc.Digest, err)
	}
	if err := spool(dir, desc.Digest, io.NopCloser(bytes.NewReader(desc.Manifest))); err != nil {
		return err
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return fmt.Errorf("%s: blob %s: %w", where, m.Config.Digest, err)
	}
	if err := spool(dir, m.Config.Digest, io.NopCloser(bytes.NewReader(cfg))); err != nil {
		return err
	}
	for _, l := range m.Layers {
		layer, err := img.LayerByDigest(l.Digest)
		if err != nil {
			return fmt.Errorf("%s: blob %s: %w", where, l.Digest, err)
		}
		rc, err := layer.Compressed()
		if err != nil {
			return fmt.Errorf("%s: blob %s: %w", where, l.Digest, err)
		}
		if l.Size < 0 {
			rc.Close()
			return fmt.Errorf("%s: blob %s: descriptor size %d: a descriptor must give the blob's size", where, l.Digest, l.Size)
		}
		// One byte past the manifest's size is enough for the check that
		// follows to refuse it; a registry sending more fills no disk.
		if err := spool(dir, l.Digest, struct {
			io.Reader
			io.Closer
		}{io.LimitReader(rc, l.Size+1), rc}); err != nil {
			return fmt.Errorf("%s: blob %s: %w", where, l.Digest, err)
		}
	}
	return nil
}

// spool copies rc into dir's blob store under h; verifiedImage checks it.
func spool(dir string, h v1.Hash, rc io.ReadCloser) error {
	defer rc.Close()
	if err := validHash(h); err != nil {
		return err
	}
	p := filepath.Join(dir, "blobs", h.Algorithm, h.Hex)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if os.IsExist(err) {
		return nil // the same layer twice in one manifest
	}
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, rc); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
