package oci

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
)

// GzipLevel is fixed: the compressed bytes, and so the image digest, depend
// on it. The compressor comes from klauspost/compress, pinned in go.sum, and
// not from the Go toolchain's compress/gzip, so the digest does not change
// when imagectl is built with another Go release.
const GzipLevel = 6

// layer is a v1.Layer whose compressed form we produced ourselves. The
// compressed bytes are kept in memory because every output (layout,
// archives, push) reads them again and the largest layer of this image is
// about a hundred megabytes compressed.
type layer struct {
	compressed []byte
	digest     v1.Hash
	diffID     v1.Hash
}

var _ v1.Layer = (*layer)(nil)

// NewLayer runs write once, computing the diffID over the tar stream and
// the digest over its gzip compression in a single pass.
func NewLayer(write func(w io.Writer) error) (v1.Layer, error) {
	var buf bytes.Buffer
	compressedHash := sha256.New()
	zw, err := gzip.NewWriterLevel(io.MultiWriter(&buf, compressedHash), GzipLevel)
	if err != nil {
		return nil, err
	}
	// The zero header (no name, no mtime, OS "unknown") is what makes the
	// gzip stream independent of when and where it was written.
	diffHash := sha256.New()
	if err := write(io.MultiWriter(zw, diffHash)); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return &layer{
		compressed: buf.Bytes(),
		digest:     v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(compressedHash.Sum(nil))},
		diffID:     v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(diffHash.Sum(nil))},
	}, nil
}

// NewLayerFromTar is NewLayer for tar bytes already in memory.
func NewLayerFromTar(tarball []byte) (v1.Layer, error) {
	return NewLayer(func(w io.Writer) error {
		_, err := w.Write(tarball)
		return err
	})
}

func (l *layer) Digest() (v1.Hash, error)            { return l.digest, nil }
func (l *layer) DiffID() (v1.Hash, error)            { return l.diffID, nil }
func (l *layer) Size() (int64, error)                { return int64(len(l.compressed)), nil }
func (l *layer) MediaType() (types.MediaType, error) { return types.OCILayer, nil }
func (l *layer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.compressed)), nil
}
func (l *layer) Uncompressed() (io.ReadCloser, error) {
	zr, err := gzip.NewReader(bytes.NewReader(l.compressed))
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", l.digest, err)
	}
	return zr, nil
}
