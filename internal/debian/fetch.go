package debian

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Size caps for what is read from a mirror. They are far above today's
// sizes (bookworm's amd64 Packages is ~45 MB uncompressed) and exist so a
// misbehaving server cannot exhaust memory.
const (
	maxInRelease    = 16 << 20
	maxIndex        = 256 << 20
	maxIndexDecoded = 1 << 30
)

// errNotFound marks a 404, the one failure where trying another
// compression of the same index makes sense.
var errNotFound = errors.New("not found")

// suiteURL is the dists/<suite>/ directory of a suite on a mirror.
func suiteURL(base, suite string) string {
	return strings.TrimSuffix(base, "/") + "/dists/" + suite + "/"
}

// get reads one URL, bounded by limit bytes.
func get(ctx context.Context, client *http.Client, url string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("GET %s: %w", url, errNotFound)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("GET %s: larger than %d bytes", url, limit)
	}
	return b, nil
}

// indexNames are the forms of a Packages index in the order they are tried:
// smallest download first, plain last since current archives no longer
// serve it.
var indexNames = []string{"Packages.xz", "Packages.gz", "Packages"}

// fetchPackages downloads the Packages index of one component and
// architecture, checks it against the signed Release and parses it.
func fetchPackages(ctx context.Context, client *http.Client, base, suite, component, arch string, rel *Release) ([]Package, error) {
	dir := component + "/binary-" + arch + "/"
	var tried []string
	for _, name := range indexNames {
		path := dir + name
		want, ok := rel.SHA256[path]
		if !ok {
			continue // not published in this form
		}
		url := suiteURL(base, suite) + path
		if rel.AcquireByHash {
			// The by-hash name is immutable, so the file cannot change
			// between reading Release and reading the index.
			url = suiteURL(base, suite) + dir + "by-hash/SHA256/" + want.SHA256
		}
		data, err := get(ctx, client, url, maxIndex)
		if errors.Is(err, errNotFound) {
			tried = append(tried, path)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("suite %s: %w", suite, err)
		}
		if err := checkIndexFile(suite, want, data); err != nil {
			return nil, err
		}
		plain, err := Decompress(path, data, maxIndexDecoded)
		if err != nil {
			return nil, fmt.Errorf("suite %s: %w", suite, err)
		}
		return ParsePackages("suite "+suite+" "+path, plain)
	}
	if len(tried) == 0 {
		return nil, fmt.Errorf("suite %s: Release lists no Packages index for %s", suite, dir)
	}
	return nil, fmt.Errorf("suite %s: no Packages index found on the mirror (tried %s)", suite, strings.Join(tried, ", "))
}

// checkIndexFile compares a downloaded index with its signed Release entry.
func checkIndexFile(suite string, want IndexFile, data []byte) error {
	if int64(len(data)) != want.Size {
		return fmt.Errorf("suite %s: %s is %d bytes, the signed Release says %d", suite, want.Path, len(data), want.Size)
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != want.SHA256 {
		return fmt.Errorf("suite %s: %s has SHA256 %s, the signed Release says %s", suite, want.Path, got, want.SHA256)
	}
	return nil
}
