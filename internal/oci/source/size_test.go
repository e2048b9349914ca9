package source

import (
	"errors"
	"io"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// TestNegativeSizeIsRefused: a descriptor saying -1 must not switch the size
// check off, or a manifest of any length is read into memory before its
// digest is compared. Nothing is opened.
func TestNegativeSizeIsRefused(t *testing.T) {
	h, err := v1.NewHash("sha256:" + strings.Repeat("ab", 32))
	if err != nil {
		t.Fatal(err)
	}
	opened := false
	open := func(v1.Hash) (io.ReadCloser, error) {
		opened = true
		return io.NopCloser(strings.NewReader("{}")), nil
	}
	d := v1.Descriptor{Digest: h, Size: -1}
	var be *BlobError
	if _, err := readSmall("layout x", open, d); !errors.As(err, &be) {
		t.Errorf("readSmall: %v, want a BlobError", err)
	}
	if err := checkBlob("layout x", open, d); !errors.As(err, &be) {
		t.Errorf("checkBlob: %v, want a BlobError", err)
	}
	if opened {
		t.Error("a blob was opened for a descriptor without a size")
	}
}
