package oci

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Push uploads img to repo by digest, then points each tag at it, with the
// credentials docker and podman use (authn.DefaultKeychain). It returns the
// digest reference, whose digest is the local manifest digest by
// construction: the registry stores the manifest bytes we send.
func Push(ctx context.Context, img v1.Image, repo string, tags []string, opts ...remote.Option) (name.Digest, error) {
	r, err := name.NewRepository(repo)
	if err != nil {
		return name.Digest{}, fmt.Errorf("repository %q: %w", repo, err)
	}
	// Check every tag before uploading anything, so a typo fails fast.
	refs := make([]name.Tag, 0, len(tags))
	for _, t := range tags {
		tag, err := name.NewTag(r.String() + ":" + t)
		if err != nil {
			return name.Digest{}, fmt.Errorf("tag %q: %w", t, err)
		}
		refs = append(refs, tag)
	}
	d, err := img.Digest()
	if err != nil {
		return name.Digest{}, err
	}
	ref := r.Digest(d.String())
	opts = append([]remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}, opts...)
	if err := remote.Write(ref, img, opts...); err != nil {
		return name.Digest{}, fmt.Errorf("push %s: %w", ref, err)
	}
	for _, tag := range refs {
		if err := remote.Tag(tag, img, opts...); err != nil {
			return name.Digest{}, fmt.Errorf("tag %s: %w", tag, err)
		}
	}
	return ref, nil
}
