package source

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// BlobError says that a blob is not what its parent names: the source it
// came from, how the source names it, and the digest and size it must have.
type BlobError struct {
	Source string  // the layout, archive or reference
	Blob   string  // how the source names the blob: its digest, or a file in a docker archive
	Want   v1.Hash // the digest the blob must have
	Size   int64   // the size it must have; -1 when its parent does not say
	// Problem is what was found instead: a size, or a digest.
	Problem string
}

func (e *BlobError) Error() string {
	// A blob named by its digest is named by the digest it must have.
	if e.Blob == e.Want.String() {
		return fmt.Sprintf("%s: blob %s: %s", e.Source, e.Blob, e.Problem)
	}
	return fmt.Sprintf("%s: blob %s, expected %s: %s", e.Source, e.Blob, e.Want, e.Problem)
}

// maxMetadata bounds the index, manifest and config read into memory: they
// are small, and the bound keeps a hostile file from exhausting memory.
const maxMetadata = 16 << 20

// verifier passes a blob through and, at its end, fails instead of
// returning io.EOF when the bytes read are not the ones want names. A
// reader that stops early learns nothing from it, which is why every loader
// first reads each blob to its end (checkBlob).
type verifier struct {
	r      io.Reader
	source string
	blob   string
	want   v1.Hash
	size   int64 // -1: any
	h      hash.Hash
	n      int64
}

func newVerifier(r io.Reader, source, blob string, want v1.Hash, size int64) (*verifier, error) {
	if want.Algorithm != "sha256" {
		return nil, &BlobError{Source: source, Blob: blob, Want: want, Size: size, Problem: "only sha256 digests are supported"}
	}
	return &verifier{r: r, source: source, blob: blob, want: want, size: size, h: sha256.New()}, nil
}

func (v *verifier) fail(format string, args ...any) error {
	return &BlobError{Source: v.source, Blob: v.blob, Want: v.want, Size: v.size, Problem: fmt.Sprintf(format, args...)}
}

func (v *verifier) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if v.size >= 0 && v.n > v.size {
		return n, v.fail("longer than its %d bytes", v.size)
	}
	if errors.Is(err, io.EOF) {
		if v.size >= 0 && v.n != v.size {
			return n, v.fail("%d bytes, want %d", v.n, v.size)
		}
		if got := hex.EncodeToString(v.h.Sum(nil)); got != v.want.Hex {
			return n, v.fail("content hashes to sha256:%s", got)
		}
		return n, io.EOF
	}
	if err != nil {
		return n, fmt.Errorf("%s: blob %s: %w", v.source, v.blob, err)
	}
	return n, nil
}

// blobOpener opens a blob of a layout, archive or spool by digest, unchecked.
type blobOpener func(v1.Hash) (io.ReadCloser, error)

// readSmall reads a manifest or config whole and checks it against d.
func readSmall(source string, open blobOpener, d v1.Descriptor) ([]byte, error) {
	if d.Size > maxMetadata {
		return nil, &BlobError{Source: source, Blob: d.Digest.String(), Want: d.Digest, Size: d.Size,
			Problem: fmt.Sprintf("%d bytes is too large for a manifest or config", d.Size)}
	}
	rc, err := open(d.Digest)
	if err != nil {
		return nil, fmt.Errorf("%s: blob %s: %w", source, d.Digest, err)
	}
	defer rc.Close()
	v, err := newVerifier(rc, source, d.Digest.String(), d.Digest, d.Size)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(v)
}

// checkBlob reads a blob to its end and checks it against d.
func checkBlob(source string, open blobOpener, d v1.Descriptor) error {
	rc, err := open(d.Digest)
	if err != nil {
		return fmt.Errorf("%s: blob %s: %w", source, d.Digest, err)
	}
	defer rc.Close()
	v, err := newVerifier(rc, source, d.Digest.String(), d.Digest, d.Size)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, v)
	return err
}

// verifiedImage serves the image desc names from a layout, archive or spool,
// having read every blob to its end and checked it against the digest and
// size its parent gives: neither a layout on disk, nor an archive, nor a
// registry vouches for its contents.
func verifiedImage(source string, desc v1.Descriptor, open blobOpener) (*Image, error) {
	if !desc.MediaType.IsImage() {
		return nil, fmt.Errorf("%s: %s is a %s, not an image manifest", source, desc.Digest, desc.MediaType)
	}
	manifest, err := readSmall(source, open, desc)
	if err != nil {
		return nil, err
	}
	m, err := v1.ParseManifest(bytes.NewReader(manifest))
	if err != nil {
		return nil, fmt.Errorf("%s: manifest %s: %w", source, desc.Digest, err)
	}
	config, err := readSmall(source, open, m.Config)
	if err != nil {
		return nil, err
	}
	layers := make(map[v1.Hash]v1.Descriptor, len(m.Layers))
	for _, l := range m.Layers {
		if err := checkBlob(source, open, l); err != nil {
			return nil, err
		}
		layers[l.Digest] = l
	}
	img, err := partial.CompressedToImage(&verifiedCore{source: source, mt: desc.MediaType, manifest: manifest, config: config, layers: layers, open: open})
	if err != nil {
		return nil, err
	}
	return &Image{Image: img}, nil
}

type verifiedCore struct {
	source           string
	mt               types.MediaType
	manifest, config []byte
	layers           map[v1.Hash]v1.Descriptor
	open             blobOpener
}

var (
	_ partial.CompressedImageCore = (*verifiedCore)(nil)
	_ partial.CompressedLayer     = (*verifiedLayer)(nil)
)

func (c *verifiedCore) RawManifest() ([]byte, error)        { return c.manifest, nil }
func (c *verifiedCore) RawConfigFile() ([]byte, error)      { return c.config, nil }
func (c *verifiedCore) MediaType() (types.MediaType, error) { return c.mt, nil }
func (c *verifiedCore) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	d, ok := c.layers[h]
	if !ok {
		return nil, fmt.Errorf("%s: manifest has no layer %s", c.source, h)
	}
	return &verifiedLayer{c: c, desc: d}, nil
}

// verifiedLayer streams a layer checked once already, and checks it again
// at its end: the file may have changed since.
type verifiedLayer struct {
	c    *verifiedCore
	desc v1.Descriptor
}

func (l *verifiedLayer) Digest() (v1.Hash, error)            { return l.desc.Digest, nil }
func (l *verifiedLayer) Size() (int64, error)                { return l.desc.Size, nil }
func (l *verifiedLayer) MediaType() (types.MediaType, error) { return l.desc.MediaType, nil }
func (l *verifiedLayer) Compressed() (io.ReadCloser, error) {
	rc, err := l.c.open(l.desc.Digest)
	if err != nil {
		return nil, fmt.Errorf("%s: blob %s: %w", l.c.source, l.desc.Digest, err)
	}
	v, err := newVerifier(rc, l.c.source, l.desc.Digest.String(), l.desc.Digest, l.desc.Size)
	if err != nil {
		rc.Close()
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{v, rc}, nil
}
