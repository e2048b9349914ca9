package source

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"regexp"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
)

// A docker archive names no digest in its manifest.json: the config pins
// each layer's uncompressed digest (its diffID), and some writers name files
// by their content's digest (ggcr: "sha256:<hex>" and "<hex>.tar.gz"; docker
// save: "<hex>.json"; Docker 25: "blobs/sha256/<hex>"). Both are checked;
// "<id>/layer.tar" of older docker saves names a layer ID, not content.
var contentNamed = regexp.MustCompile(`^(?:sha256:([0-9a-f]{64})|([0-9a-f]{64})\.(?:json|tar\.gz)|blobs/sha256/([0-9a-f]{64}))$`)

func nameDigest(file string) (v1.Hash, bool) {
	m := contentNamed.FindStringSubmatch(file)
	if m == nil {
		return v1.Hash{}, false
	}
	return v1.Hash{Algorithm: "sha256", Hex: m[1] + m[2] + m[3]}, true
}

type dockerEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// dockerLayer is one layer file as checked.
type dockerLayer struct {
	file       string
	digest     v1.Hash // of the file's bytes
	size       int64
	diffID     v1.Hash
	compressed bool
}

func fromDockerArchive(a *archive) (*Image, error) {
	rc, _, err := a.open("manifest.json")
	if err != nil {
		return nil, err
	}
	var entries []dockerEntry
	err = json.NewDecoder(io.LimitReader(rc, maxMetadata)).Decode(&entries)
	rc.Close()
	if err != nil {
		return nil, fmt.Errorf("%s: manifest.json: %w", a.path, err)
	}
	if len(entries) != 1 {
		var tags []string
		for _, e := range entries {
			tags = append(tags, e.RepoTags...)
		}
		return nil, fmt.Errorf("%s: manifest.json lists %d images (%s), want exactly one", a.path, len(entries), strings.Join(tags, ", "))
	}
	e := entries[0]
	config, cfgDigest, err := a.readConfig(path.Clean(e.Config))
	if err != nil {
		return nil, err
	}
	cf, err := v1.ParseConfigFile(bytes.NewReader(config))
	if err != nil {
		return nil, fmt.Errorf("%s: config %s: %w", a.path, e.Config, err)
	}
	if len(cf.RootFS.DiffIDs) != len(e.Layers) {
		return nil, fmt.Errorf("%s: config %s lists %d layers, manifest.json %d", a.path, e.Config, len(cf.RootFS.DiffIDs), len(e.Layers))
	}
	layers := make([]dockerLayer, len(e.Layers))
	allCompressed := true
	for i, f := range e.Layers {
		l, err := a.checkLayer(path.Clean(f), cf.RootFS.DiffIDs[i])
		if err != nil {
			return nil, err
		}
		layers[i] = l
		allCompressed = allCompressed && l.compressed
	}
	files := map[v1.Hash]string{}
	for _, l := range layers {
		files[l.digest] = l.file
	}
	open := func(h v1.Hash) (io.ReadCloser, error) {
		f, ok := files[h]
		if !ok {
			return nil, fmt.Errorf("no blob %s in the archive", h)
		}
		rc, _, err := a.open(f)
		return rc, err
	}
	if !allCompressed {
		// ggcr compresses uncompressed layers on demand, as for a build.
		byDiffID := map[v1.Hash]dockerLayer{}
		for _, l := range layers {
			byDiffID[l.diffID] = l
		}
		img, err := partial.UncompressedToImage(&dockerUncompressed{source: a.path, config: config, layers: byDiffID, open: open})
		if err != nil {
			return nil, err
		}
		return &Image{Image: img}, nil
	}
	// The manifest is the one ggcr's tarball.Image makes, byte for byte.
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.DockerManifestSchema2,
		Config:        v1.Descriptor{MediaType: types.DockerConfigJSON, Size: int64(len(config)), Digest: cfgDigest},
	}
	descs := map[v1.Hash]v1.Descriptor{}
	for _, l := range layers {
		d := v1.Descriptor{MediaType: types.DockerLayer, Size: l.size, Digest: l.digest}
		m.Layers = append(m.Layers, d)
		descs[l.digest] = d
	}
	manifest, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	img, err := partial.CompressedToImage(&verifiedCore{source: a.path, mt: types.DockerManifestSchema2, manifest: manifest, config: config, layers: descs, open: open})
	if err != nil {
		return nil, err
	}
	return &Image{Image: img}, nil
}

// readConfig reads the config whole; a content-named file must match its name.
func (a *archive) readConfig(file string) ([]byte, v1.Hash, error) {
	rc, size, err := a.open(file)
	if err != nil {
		return nil, v1.Hash{}, err
	}
	defer rc.Close()
	if size > maxMetadata {
		return nil, v1.Hash{}, fmt.Errorf("%s: config %s: %d bytes is too large for a config", a.path, file, size)
	}
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, v1.Hash{}, fmt.Errorf("%s: %s: %w", a.path, file, err)
	}
	sum := sha256.Sum256(b)
	got := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	if want, ok := nameDigest(file); ok && want != got {
		return nil, v1.Hash{}, &BlobError{Source: a.path, Blob: file, Want: want, Size: -1, Problem: "content hashes to " + got.String()}
	}
	return b, got, nil
}

// checkLayer reads a layer file to its end: its bytes must match a content
// name, and its uncompressed bytes the config's diffID.
func (a *archive) checkLayer(file string, diffID v1.Hash) (dockerLayer, error) {
	l := dockerLayer{file: file}
	rc, size, err := a.open(file)
	if err != nil {
		return l, err
	}
	defer rc.Close()
	l.size = size
	fileHash := sha256.New()
	br := bufio.NewReader(io.TeeReader(rc, fileHash))
	magic, _ := br.Peek(2)
	l.compressed = bytes.Equal(magic, []byte{0x1f, 0x8b})
	diffHash := sha256.New()
	var gzErr error
	if l.compressed {
		zr, err := gzip.NewReader(br)
		if err == nil {
			_, err = io.Copy(diffHash, zr)
		}
		gzErr = err
	}
	// To the file's end whatever the gzip stream said: its digest is
	// checked first, and bytes after the stream are part of the file.
	rest := io.Writer(diffHash)
	if l.compressed {
		rest = io.Discard
	}
	if _, err := io.Copy(rest, br); err != nil {
		return l, fmt.Errorf("%s: %s: %w", a.path, file, err)
	}
	l.digest = v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(fileHash.Sum(nil))}
	l.diffID = v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(diffHash.Sum(nil))}
	if want, ok := nameDigest(file); ok && want != l.digest {
		return l, &BlobError{Source: a.path, Blob: file, Want: want, Size: size, Problem: "content hashes to " + l.digest.String()}
	}
	if gzErr != nil {
		return l, &BlobError{Source: a.path, Blob: file, Want: diffID, Size: -1, Problem: "gzip: " + gzErr.Error()}
	}
	if l.diffID != diffID {
		return l, &BlobError{Source: a.path, Blob: file, Want: diffID, Size: -1, Problem: "uncompressed content hashes to " + l.diffID.String() + ", not the config's diffID"}
	}
	return l, nil
}

// dockerUncompressed serves a docker archive whose layers are plain tars.
type dockerUncompressed struct {
	source string
	config []byte
	layers map[v1.Hash]dockerLayer
	open   blobOpener
}

var (
	_ partial.UncompressedImageCore = (*dockerUncompressed)(nil)
	_ partial.UncompressedLayer     = (*dockerPlainLayer)(nil)
)

func (c *dockerUncompressed) RawConfigFile() ([]byte, error) { return c.config, nil }
func (c *dockerUncompressed) MediaType() (types.MediaType, error) {
	return types.DockerManifestSchema2, nil
}
func (c *dockerUncompressed) LayerByDiffID(h v1.Hash) (partial.UncompressedLayer, error) {
	l, ok := c.layers[h]
	if !ok {
		return nil, fmt.Errorf("%s: no layer with diffID %s", c.source, h)
	}
	return &dockerPlainLayer{c: c, l: l}, nil
}

type dockerPlainLayer struct {
	c *dockerUncompressed
	l dockerLayer
}

func (p *dockerPlainLayer) DiffID() (v1.Hash, error)            { return p.l.diffID, nil }
func (p *dockerPlainLayer) MediaType() (types.MediaType, error) { return types.DockerLayer, nil }
func (p *dockerPlainLayer) Uncompressed() (io.ReadCloser, error) {
	rc, err := p.c.open(p.l.digest)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", p.c.source, p.l.file, err)
	}
	if p.l.compressed {
		// A gzip layer in an archive that also has plain ones.
		zr, err := gzip.NewReader(rc)
		if err != nil {
			rc.Close()
			return nil, fmt.Errorf("%s: %s: %w", p.c.source, p.l.file, err)
		}
		return readCloser(p.verify(zr), rc), nil
	}
	return readCloser(p.verify(rc), rc), nil
}

// verify checks the uncompressed stream against the diffID, which the
// load has already found to be a sha256.
func (p *dockerPlainLayer) verify(r io.Reader) io.Reader {
	return &verifier{r: r, source: p.c.source, blob: p.l.file, want: p.l.diffID, size: -1, h: sha256.New()}
}

func readCloser(r io.Reader, c io.Closer) io.ReadCloser {
	return struct {
		io.Reader
		io.Closer
	}{r, c}
}
