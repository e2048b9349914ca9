package arm64test

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Load returns the image for platform from src, an OCI layout directory or an
// OCI archive (a tar of a layout). src may hold one image or an index of
// several, nested indexes included; artifacts beside them (an SBOM) are
// passed over. An archive is unpacked into scratch, which must be an empty
// directory that outlives the image. The manifest and config are checked
// against their digests here; Extract checks the layers as it reads them.
func Load(src string, platform v1.Platform, scratch string) (v1.Image, error) {
	fi, err := os.Stat(src)
	if err != nil {
		return nil, err
	}
	dir := src
	if !fi.IsDir() {
		if err := untarLayout(src, scratch); err != nil {
			return nil, err
		}
		dir = scratch
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("%s: not an OCI layout: %w", src, err)
	}
	var seen []string
	img, err := find(idx, platform, &seen)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	if img == nil {
		return nil, fmt.Errorf("%s: no image for %s (found: %s)", src, platform.String(), orNone(seen))
	}
	return img, nil
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// find walks idx depth first and returns the only image for platform; seen
// collects the platforms of the images it passed over, for the error.
func find(idx v1.ImageIndex, platform v1.Platform, seen *[]string) (v1.Image, error) {
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var found v1.Image
	var foundDigest v1.Hash
	for _, d := range m.Manifests {
		var img v1.Image
		switch {
		case d.MediaType.IsIndex():
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return nil, fmt.Errorf("index %s: %w", d.Digest, err)
			}
			if err := checkDigest(child.RawManifest, d, "index"); err != nil {
				return nil, err
			}
			if img, err = find(child, platform, seen); err != nil {
				return nil, err
			}
			if img == nil {
				continue
			}
		case d.MediaType.IsImage():
			if d.ArtifactType != "" {
				continue
			}
			// An index entry's platform is a claim; the config decides.
			if d.Platform != nil && !d.Platform.Satisfies(platform) {
				*seen = append(*seen, d.Platform.String())
				continue
			}
			c, err := idx.Image(d.Digest)
			if err != nil {
				return nil, fmt.Errorf("manifest %s: %w", d.Digest, err)
			}
			p, ok, err := imagePlatform(c, d)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue // an artifact that does not say so in its descriptor
			}
			if !p.Satisfies(platform) {
				*seen = append(*seen, p.String())
				continue
			}
			img = c
		default:
			continue
		}
		dg, err := img.Digest()
		if err != nil {
			return nil, err
		}
		if found != nil && dg != foundDigest {
			return nil, fmt.Errorf("two images for %s: %s and %s", platform.String(), foundDigest, dg)
		}
		found, foundDigest = img, dg
	}
	return found, nil
}

// imagePlatform checks img's manifest and config against their digests and
// returns the platform its config names; ok is false for a manifest whose
// config is not an image config (an artifact).
func imagePlatform(img v1.Image, d v1.Descriptor) (p v1.Platform, ok bool, err error) {
	if err := checkDigest(img.RawManifest, d, "manifest"); err != nil {
		return p, false, err
	}
	m, err := img.Manifest()
	if err != nil {
		return p, false, fmt.Errorf("manifest %s: %w", d.Digest, err)
	}
	if m.Config.MediaType != types.OCIConfigJSON && m.Config.MediaType != types.DockerConfigJSON {
		return p, false, nil
	}
	if err := checkDigest(img.RawConfigFile, m.Config, "config"); err != nil {
		return p, false, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return p, false, fmt.Errorf("config %s: %w", m.Config.Digest, err)
	}
	p = v1.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant, OSVersion: cfg.OSVersion}
	return p, true, nil
}

func checkDigest(raw func() ([]byte, error), d v1.Descriptor, what string) error {
	b, err := raw()
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, d.Digest, err)
	}
	got, _, err := v1.SHA256(bytes.NewReader(b))
	if err != nil {
		return err
	}
	if got != d.Digest || int64(len(b)) != d.Size {
		return fmt.Errorf("%s %s: content has digest %s and size %d, the descriptor says size %d", what, d.Digest, got, len(b), d.Size)
	}
	return nil
}

// untarLayout unpacks an OCI archive into dir. It holds regular files and
// directories only; anything else, or a name leaving dir, is an error.
func untarLayout(archive, dir string) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: %w", archive, err)
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		if name == "." {
			continue
		}
		if !filepath.IsLocal(name) {
			return fmt.Errorf("%s: entry %q leaves the layout", archive, h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o755); err != nil {
				return fmt.Errorf("%s: %w", archive, err)
			}
		case tar.TypeReg:
			if err := root.MkdirAll(path.Dir(name), 0o755); err != nil {
				return fmt.Errorf("%s: %w", archive, err)
			}
			w, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
			if err != nil {
				return fmt.Errorf("%s: %w", archive, err)
			}
			_, err = io.Copy(w, tr)
			if cerr := w.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("%s: %s: %w", archive, name, err)
			}
		default:
			return fmt.Errorf("%s: entry %q has tar type %q; an OCI archive holds files and directories", archive, h.Name, h.Typeflag)
		}
	}
	return nil
}
