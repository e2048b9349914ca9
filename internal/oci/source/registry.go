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
func fromRegistry(src string, ref name.Reference, opts []remote.Option) (_ *Image, err error) {
	desc, err := remote.Get(ref, opts...)
	if err != nil {
		// Perhaps a mistyped path: say both.
		return nil, fmt.Errorf("%s: no such file or directory; as a registry reference: %w", src, err)
	}
	if desc.MediaType.IsIndex() {
		return nil, fmt.Errorf("%s is an image index (%s); name one platform's manifest by digest", ref, desc.Digest)
	}
	if !desc.MediaType.IsImage() {
		return nil, fmt.Errorf("%s is a %s, not an image", ref, desc.MediaType)
	}
	img, err := desc.Image()
	if err != nil {
		return nil, err
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
	m, err := v1.ParseManifest(bytes.NewReader(desc.Manifest))
	if err != nil {
		return nil, fmt.Errorf("%s: manifest %s: %w", where, desc.Digest, err)
	}
	if err := spool(dir, desc.Digest, io.NopCloser(bytes.NewReader(desc.Manifest))); err != nil {
		return nil, err
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return nil, fmt.Errorf("%s: blob %s: %w", where, m.Config.Digest, err)
	}
	if err := spool(dir, m.Config.Digest, io.NopCloser(bytes.NewReader(cfg))); err != nil {
		return nil, err
	}
	for _, l := range m.Layers {
		layer, err := img.LayerByDigest(l.Digest)
		if err != nil {
			return nil, fmt.Errorf("%s: blob %s: %w", where, l.Digest, err)
		}
		rc, err := layer.Compressed()
		if err != nil {
			return nil, fmt.Errorf("%s: blob %s: %w", where, l.Digest, err)
		}
		if err := spool(dir, l.Digest, rc); err != nil {
			return nil, fmt.Errorf("%s: blob %s: %w", where, l.Digest, err)
		}
	}
	mt := desc.MediaType
	if mt == "" {
		mt = types.OCIManifestSchema1
	}
	out, err := verifiedImage(where, v1.Descriptor{MediaType: mt, Digest: desc.Digest, Size: desc.Size}, layoutBlobs(dir))
	if err != nil {
		return nil, err
	}
	out.close = func() error { return os.RemoveAll(dir) }
	return out, nil
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
