// Package fetch downloads pinned files into a content-addressed cache.
//
// Every file is named by its sha256 and enters the cache only after its size
// and hash have been checked while streaming, via a temp file and a rename:
// a rerun after a failure downloads only what is missing. A cache hit is
// matched by name and size only (hashing the whole cache on every run would
// cost more than the build); the build hashes every .deb in full before it
// parses it (internal/build's readPinned), so a cache file changed behind our back
// fails the build rather than entering the image.
//
// Client is the one HTTP source of imagectl: the .debs here and the
// archive indexes of package archive share its timeouts and retries.
package fetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// Item is one file to fetch, pinned by content.
type Item struct {
	// Name is what errors and progress call the file, e.g. "ffmpeg 7:5.1.6-0+deb12u1".
	Name   string
	SHA256 string
	Size   int64
	// URLs are tried in order: the mirror first, then fallbacks.
	URLs []string
	// FileName is the file's name in the archive (the pool basename), by
	// which a prepared directory may hold it.
	FileName string
	// Gone is shown when the first URL answers 404 and no other URL
	// delivers: it tells the user where the file may still be found.
	Gone string
}

// Cache is a directory of files named by their sha256.
type Cache struct {
	Dir string
}

// DefaultCacheDir is $IMAGECTL_CACHE, else $XDG_CACHE_HOME/pulse-sidecar/debs,
// else ~/.cache/pulse-sidecar/debs: outside the repository, so CI reruns and
// fresh clones share it.
func DefaultCacheDir() (string, error) {
	if d := os.Getenv("IMAGECTL_CACHE"); d != "" {
		return d, nil
	}
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("no cache directory: set IMAGECTL_CACHE or XDG_CACHE_HOME: %w", err)
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "pulse-sidecar", "debs"), nil
}

// Path is where a file with this sha256 lives in the cache.
func (c Cache) Path(sha string) string {
	return filepath.Join(c.Dir, strings.ToLower(sha))
}

// lookup reports whether the cache holds the item. The size check catches a
// truncated or hand-edited file cheaply; the content is hashed by the build.
func (c Cache) lookup(it Item) (string, bool) {
	p := c.Path(it.SHA256)
	fi, err := os.Stat(p)
	return p, err == nil && fi.Mode().IsRegular() && fi.Size() == it.Size
}

// Fetcher downloads Items into a Cache.
type Fetcher struct {
	Cache Cache
	// Client is the HTTP source, with its timeouts and retries; nil means
	// a zero Client (its defaults).
	Client *Client
	// Parallel downloads at once; 6 when zero.
	Parallel int
	// Progress receives events; nil means silent.
	Progress Progress
}

// Progress is told about downloads as they happen. Implementations must be
// safe for concurrent use.
type Progress interface {
	Start(total int, bytes int64)
	Add(bytes int64)
	Done(it Item, cached bool, err error)
	Finish()
}

// Fetch makes every item available in the cache and returns the path of each
// by sha256. It fetches all it can before reporting failures, so one run
// names every package that is gone or broken.
func (f *Fetcher) Fetch(ctx context.Context, items []Item) (map[string]string, error) {
	for _, it := range items {
		if len(it.SHA256) != 64 {
			return nil, fmt.Errorf("%s: sha256 %q is not 64 hex digits", it.Name, it.SHA256)
		}
		if _, err := hex.DecodeString(it.SHA256); err != nil {
			return nil, fmt.Errorf("%s: sha256 %q: %w", it.Name, it.SHA256, err)
		}
	}
	if err := os.MkdirAll(f.Cache.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	progress := f.Progress
	if progress == nil {
		progress = nopProgress{}
	}
	// One client for the whole run, so downloads share its connections.
	client := f.Client
	if client == nil {
		client = &Client{}
	}
	var total int64
	for _, it := range items {
		total += it.Size
	}
	progress.Start(len(items), total)
	defer progress.Finish()

	paths := make(map[string]string, len(items))
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
		work = make(chan Item)
	)
	for range max(1, f.parallel()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range work {
				p, cached, err := f.one(ctx, client, it, progress)
				progress.Done(it, cached, err)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					paths[it.SHA256] = p
				}
				mu.Unlock()
			}
		}()
	}
feed:
	for _, it := range items {
		select {
		case work <- it:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(errs) > 0 {
		return nil, combine(errs)
	}
	return paths, nil
}

func (f *Fetcher) parallel() int {
	if f.Parallel > 0 {
		return f.Parallel
	}
	return 6
}

// one fetches a single item, trying its URLs in order.
func (f *Fetcher) one(ctx context.Context, client *Client, it Item, progress Progress) (path string, cached bool, err error) {
	if p, ok := f.Cache.lookup(it); ok {
		progress.Add(it.Size)
		return p, true, nil
	}
	if len(it.URLs) == 0 {
		return "", false, fmt.Errorf("%s: not in the cache and no URL to fetch it from", it.Name)
	}
	var failures []string
	mirrorGone := false
	for i, u := range it.URLs {
		p, err := f.fromURL(ctx, client, it, u, progress)
		if err == nil {
			return p, false, nil
		}
		if ctx.Err() != nil {
			return "", false, ctx.Err()
		}
		if i == 0 && errors.Is(err, ErrNotFound) {
			mirrorGone = true
		}
		failures = append(failures, err.Error())
	}
	if mirrorGone {
		return "", false, &GoneError{Items: []Item{it}, Causes: failures}
	}
	return "", false, fmt.Errorf("%s: %s", it.Name, strings.Join(failures, "; "))
}

// fromURL downloads one URL with the client's retries.
func (f *Fetcher) fromURL(ctx context.Context, client *Client, it Item, u string, progress Progress) (string, error) {
	var path string
	err := client.retry(ctx, func() (int64, error) {
		p, n, err := f.download(ctx, client, it, u, progress)
		path = p
		return n, err
	}, func(n int64) { progress.Add(-n) })
	if err != nil {
		return "", fmt.Errorf("%s: %w", u, err)
	}
	return path, nil
}

// download streams one response into a temp file in the cache directory,
// hashing as it goes, and renames it into place only if size and sha256 match.
func (f *Fetcher) download(ctx context.Context, client *Client, it Item, u string, progress Progress) (string, int64, error) {
	tmp, err := os.CreateTemp(f.Cache.Dir, ".partial-*")
	if err != nil {
		return "", 0, fmt.Errorf("cache: %w", err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	h := sha256.New()
	counted := &counter{progress: progress}
	// One byte beyond the pinned size is enough to know the file is wrong.
	n, err := client.get(ctx, u, io.MultiWriter(markWrites{tmp}, h, counted), it.Size)
	if err == nil {
		// Synced before the rename: after a crash the cache must not hold
		// a file under its sha256 whose blocks never reached the disk.
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	switch {
	case errors.Is(err, ErrNotFound):
		return "", counted.n, err
	case err != nil:
		var te transientError
		if errors.As(err, &te) {
			return "", counted.n, transientError{fmt.Errorf("%s: download %w (of %d)", it.Name, err, it.Size)}
		}
		return "", counted.n, fmt.Errorf("%s: %w", it.Name, err)
	case n < it.Size:
		return "", counted.n, transientError{fmt.Errorf("%s: truncated: got %d of %d bytes", it.Name, n, it.Size)}
	case n > it.Size:
		return "", counted.n, fmt.Errorf("%s: larger than the pinned %d bytes", it.Name, it.Size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); !strings.EqualFold(got, it.SHA256) {
		return "", counted.n, fmt.Errorf("%s: sha256 mismatch: got %s, pinned %s", it.Name, got, it.SHA256)
	}
	dst := f.Cache.Path(it.SHA256)
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return "", counted.n, err
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return "", counted.n, fmt.Errorf("cache: %w", err)
	}
	return dst, counted.n, nil
}

type counter struct {
	progress Progress
	n        int64
}

func (c *counter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	c.progress.Add(int64(len(p)))
	return len(p), nil
}

// GoneError says which pinned files have left the mirror. Callers detect it
// with errors.As to tell "re-lock" apart from "broken network".
type GoneError struct {
	Items  []Item
	Causes []string
}

func (e *GoneError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d locked package(s) are gone from the mirror; re-lock with `imagectl lock` to pin the current versions, or fetch the pinned ones from the snapshot archive (--snapshot-mirror):", len(e.Items))
	for _, it := range e.Items {
		fmt.Fprintf(&b, "\n  %s", it.Name)
		if it.Gone != "" {
			fmt.Fprintf(&b, "\n    snapshot: %s", it.Gone)
		}
	}
	return b.String()
}

// combine merges per-item failures: gone items into one GoneError (listed
// first, since re-locking fixes them all at once), the rest joined after it.
func combine(errs []error) error {
	gone := &GoneError{}
	var other []error
	for _, err := range errs {
		var g *GoneError
		if errors.As(err, &g) {
			gone.Items = append(gone.Items, g.Items...)
			gone.Causes = append(gone.Causes, g.Causes...)
		} else {
			other = append(other, err)
		}
	}
	sort.Slice(gone.Items, func(i, j int) bool { return gone.Items[i].Name < gone.Items[j].Name })
	sort.Slice(other, func(i, j int) bool { return other[i].Error() < other[j].Error() })
	if len(gone.Items) > 0 {
		return errors.Join(append([]error{gone}, other...)...)
	}
	return errors.Join(other...)
}

type nopProgress struct{}

func (nopProgress) Start(int, int64)       {}
func (nopProgress) Add(int64)              {}
func (nopProgress) Done(Item, bool, error) {}
func (nopProgress) Finish()                {}
