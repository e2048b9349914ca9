package fetch

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/pulse-sidecar/pulse-sidecar/internal/debian"
)

// Mirrors says where the archives of a lock are served.
type Mirrors struct {
	// Archives maps an archive name ("debian", "debian-security") to the
	// base URL the pool paths are relative to. Nil means offline: items get
	// no URLs and must come from the cache or a prepared directory.
	Archives map[string]string
	// Snapshot is the base URL of a snapshot archive service; a file is at
	// <Snapshot>/archive/<archive>/<timestamp>/<pool path>. Empty when none
	// is reachable: the gone-error then shows the path to use.
	Snapshot string
}

// Items lists what to fetch for one image architecture of a lock, in lock
// order: the mirror URL first, the snapshot URL as fallback.
func (m Mirrors) Items(l *debian.Lock, arch string) ([]Item, error) {
	pkgs := l.PackagesFor(arch)
	if len(pkgs) == 0 {
		return nil, fmt.Errorf("lock has no packages for architecture %q (it has %s); run `imagectl lock --arch` with it", arch, strings.Join(l.Architectures, ", "))
	}
	items := make([]Item, 0, len(pkgs))
	for _, p := range pkgs {
		it := Item{
			Name:     fmt.Sprintf("%s %s (%s)", p.Name, p.Version, p.Architecture),
			SHA256:   strings.ToLower(p.SHA256),
			Size:     p.Size,
			FileName: path.Base(p.Filename),
		}
		if m.Archives != nil {
			base := m.Archives[p.Archive]
			if base == "" {
				return nil, fmt.Errorf("%s: no mirror configured for archive %q (use --mirror/--security-mirror or apt sources)", it.Name, p.Archive)
			}
			it.URLs = append(it.URLs, join(base, p.Filename))
		}
		if suite, ok := l.Suite(p.Archive, p.Suite); ok && suite.Snapshot != "" {
			rel := path.Join("archive", p.Archive, suite.Snapshot, p.Filename)
			if m.Snapshot != "" {
				it.Gone = join(m.Snapshot, rel)
				it.URLs = append(it.URLs, it.Gone)
			} else {
				it.Gone = "<snapshot base>/" + rel
			}
		}
		items = append(items, it)
	}
	return items, nil
}

func join(base, rel string) string {
	return strings.TrimRight(base, "/") + "/" + strings.TrimLeft(rel, "/")
}

// FromDir finds every item in a prepared directory, named either by its
// sha256 (optionally with a .deb suffix) or by its pool basename: the way
// Nix and Bazel hand in files they fetched themselves. Each file is hashed,
// since nothing vouches for a directory's contents.
func FromDir(dir string, items []Item) (map[string]string, error) {
	paths := make(map[string]string, len(items))
	var errs []error
	for _, it := range items {
		p, err := findIn(dir, it)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		paths[it.SHA256] = p
	}
	return paths, errors.Join(errs...)
}

func findIn(dir string, it Item) (string, error) {
	candidates := []string{it.SHA256, it.SHA256 + ".deb"}
	if it.FileName != "" {
		candidates = append(candidates, it.FileName)
	}
	for _, c := range candidates {
		p := filepath.Join(dir, c)
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := verifyFile(p, it); err != nil {
			return "", err
		}
		return p, nil
	}
	return "", fmt.Errorf("%s: not in %s (looked for %s)", it.Name, dir, strings.Join(candidates, ", "))
}

func verifyFile(p string, it Item) error {
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("%s: %w", it.Name, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return fmt.Errorf("%s: %s: %w", it.Name, p, err)
	}
	if n != it.Size {
		return fmt.Errorf("%s: %s has %d bytes, pinned %d", it.Name, p, n, it.Size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != it.SHA256 {
		return fmt.Errorf("%s: %s: sha256 mismatch: got %s, pinned %s", it.Name, p, got, it.SHA256)
	}
	return nil
}
