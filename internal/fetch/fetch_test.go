package fetch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pulse-sidecar/pulse-sidecar/internal/debian"
)

func content(name string) []byte {
	return bytes.Repeat([]byte(name+"\n"), 1000)
}

func itemFor(name string, urls ...string) Item {
	b := content(name)
	sum := sha256.Sum256(b)
	return Item{Name: name + " 1.0", SHA256: hex.EncodeToString(sum[:]), Size: int64(len(b)), URLs: urls, FileName: name + "_1.0_amd64.deb"}
}

func newFetcher(t *testing.T) *Fetcher {
	t.Helper()
	return &Fetcher{Cache: Cache{Dir: t.TempDir()}, Client: &Client{Attempts: 3, Backoff: time.Millisecond}}
}

// cacheNames lists the cache directory, partial files included: a failed
// fetch must leave it exactly as it was.
func cacheNames(t *testing.T, c Cache) []string {
	t.Helper()
	ents, err := os.ReadDir(c.Dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func serve(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func TestFetchGoodThenCached(t *testing.T) {
	var hits atomic.Int32
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write(content(strings.TrimPrefix(r.URL.Path, "/")))
	})
	f := newFetcher(t)
	items := []Item{itemFor("a", srv.URL+"/a"), itemFor("b", srv.URL+"/b")}
	paths, err := f.Fetch(context.Background(), items)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		b, err := os.ReadFile(paths[it.SHA256])
		if err != nil || paths[it.SHA256] != f.Cache.Path(it.SHA256) {
			t.Fatalf("%s: %s, %v", it.Name, paths[it.SHA256], err)
		}
		if !bytes.Equal(b, content(strings.Fields(it.Name)[0])) {
			t.Fatalf("%s: wrong content in cache", it.Name)
		}
	}
	if _, err := f.Fetch(context.Background(), items); err != nil {
		t.Fatal(err)
	}
	if got := hits.Load(); got != 2 {
		t.Fatalf("%d requests, want 2: the second fetch must come from the cache", got)
	}
}

func TestFetchWrongSHA256(t *testing.T) {
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		b := content("a")
		b[0] = 'X'
		w.Write(b)
	})
	f := newFetcher(t)
	_, err := f.Fetch(context.Background(), []Item{itemFor("a", srv.URL+"/a")})
	if err == nil || !strings.Contains(err.Error(), "a 1.0") || !strings.Contains(err.Error(), "sha256 mismatch") {
		t.Fatalf("error %v does not name the package and the mismatch", err)
	}
	if n := cacheNames(t, f.Cache); len(n) != 0 {
		t.Fatalf("cache holds %v after a mismatch", n)
	}
}

func TestFetchTruncated(t *testing.T) {
	var hits atomic.Int32
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		b := content("a")
		w.Header().Set("Content-Length", fmt.Sprint(len(b)))
		w.Write(b[:len(b)/2])
	})
	f := newFetcher(t)
	_, err := f.Fetch(context.Background(), []Item{itemFor("a", srv.URL+"/a")})
	if err == nil || !strings.Contains(err.Error(), "a 1.0") {
		t.Fatalf("error %v does not name the package", err)
	}
	if got := hits.Load(); got != 3 {
		t.Fatalf("%d attempts, want 3 (truncation is retried)", got)
	}
	if n := cacheNames(t, f.Cache); len(n) != 0 {
		t.Fatalf("cache holds %v after a truncated download", n)
	}
}

func TestFetchShortBodyWithoutLength(t *testing.T) {
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write(content("a")[:10])
	})
	f := newFetcher(t)
	_, err := f.Fetch(context.Background(), []Item{itemFor("a", srv.URL+"/a")})
	if err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("error %v, want truncated", err)
	}
}

func TestFetch404ThenFallback(t *testing.T) {
	mirror := serve(t, http.NotFound)
	snapshot := serve(t, func(w http.ResponseWriter, r *http.Request) { w.Write(content("a")) })
	f := newFetcher(t)
	it := itemFor("a", mirror.URL+"/a", snapshot.URL+"/archive/a")
	paths, err := f.Fetch(context.Background(), []Item{it})
	if err != nil {
		t.Fatal(err)
	}
	if paths[it.SHA256] == "" {
		t.Fatal("no path")
	}
}

func TestFetchGoneNamesPackagesAndFallback(t *testing.T) {
	mirror := serve(t, http.NotFound)
	f := newFetcher(t)
	a := itemFor("a", mirror.URL+"/a")
	a.Gone = "<snapshot base>/archive/debian/20250520T000000Z/pool/main/a/a.deb"
	b := itemFor("b", mirror.URL+"/b")
	_, err := f.Fetch(context.Background(), []Item{b, a})
	var gone *GoneError
	if !errors.As(err, &gone) {
		t.Fatalf("error %v is not a GoneError", err)
	}
	if len(gone.Items) != 2 || gone.Items[0].Name != "a 1.0" {
		t.Fatalf("gone items = %+v", gone.Items)
	}
	msg := err.Error()
	for _, want := range []string{"a 1.0", "b 1.0", "imagectl lock", a.Gone} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
}

func TestFetch500ThenRetrySucceeds(t *testing.T) {
	var hits atomic.Int32
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) <= 2 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		w.Write(content("a"))
	})
	f := newFetcher(t)
	if _, err := f.Fetch(context.Background(), []Item{itemFor("a", srv.URL+"/a")}); err != nil {
		t.Fatal(err)
	}
	if got := hits.Load(); got != 3 {
		t.Fatalf("%d requests, want 3", got)
	}
}

func TestFetch403IsNotRetried(t *testing.T) {
	var hits atomic.Int32
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Error(w, "no", http.StatusForbidden)
	})
	f := newFetcher(t)
	if _, err := f.Fetch(context.Background(), []Item{itemFor("a", srv.URL+"/a")}); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("error %v, want 403", err)
	}
	if hits.Load() != 1 {
		t.Fatalf("%d requests for a permanent error", hits.Load())
	}
}

func TestFetchConcurrencyIsBounded(t *testing.T) {
	const parallel = 3
	var (
		mu       sync.Mutex
		inflight int
		peak     int
		full     = make(chan struct{})
		once     sync.Once
	)
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		inflight++
		peak = max(peak, inflight)
		if inflight == parallel {
			once.Do(func() { close(full) })
		}
		mu.Unlock()
		// Hold every request until the pool is full once, so the peak is
		// observed without relying on timing; the deadline keeps a broken
		// fetcher from hanging the test.
		select {
		case <-full:
		case <-time.After(20 * time.Second):
		}
		w.Write(content(strings.TrimPrefix(r.URL.Path, "/")))
		mu.Lock()
		inflight--
		mu.Unlock()
	})
	f := newFetcher(t)
	f.Parallel = parallel
	var items []Item
	for i := range 10 {
		n := fmt.Sprintf("p%d", i)
		items = append(items, itemFor(n, srv.URL+"/"+n))
	}
	paths, err := f.Fetch(context.Background(), items)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != len(items) {
		t.Fatalf("%d paths", len(paths))
	}
	select {
	case <-full:
	default:
		t.Fatal("never had all workers busy at once")
	}
	if peak != parallel {
		t.Fatalf("peak %d concurrent downloads, want %d", peak, parallel)
	}
}

func TestFetchCancelled(t *testing.T) {
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
	f := newFetcher(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := f.Fetch(ctx, []Item{itemFor("a", srv.URL+"/a")}); !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
}

func TestFromDir(t *testing.T) {
	dir := t.TempDir()
	a, b, c := itemFor("a"), itemFor("b"), itemFor("c")
	os.WriteFile(filepath.Join(dir, a.SHA256), content("a"), 0o644)
	os.WriteFile(filepath.Join(dir, b.FileName), content("b"), 0o644)
	paths, err := FromDir(dir, []Item{a, b})
	if err != nil {
		t.Fatal(err)
	}
	if paths[a.SHA256] != filepath.Join(dir, a.SHA256) || paths[b.SHA256] != filepath.Join(dir, b.FileName) {
		t.Fatalf("paths = %v", paths)
	}
	os.WriteFile(filepath.Join(dir, c.FileName), content("not c"), 0o644)
	_, err = FromDir(dir, []Item{a, c, itemFor("d")})
	if err == nil || !strings.Contains(err.Error(), "c 1.0") || !strings.Contains(err.Error(), "d 1.0") {
		t.Fatalf("error %v does not name c and d", err)
	}
}

func TestMirrorsItems(t *testing.T) {
	l := &debian.Lock{
		Version: debian.LockVersion, Architectures: []string{"amd64"},
		Suites: []debian.LockSuite{{Archive: "debian-security", Suite: "bookworm-security", Snapshot: "20250520T000000Z"}},
		Packages: []debian.LockedPackage{{
			Name: "libx", Version: "1", Architecture: "amd64", ForArch: "amd64",
			Archive: "debian-security", Suite: "bookworm-security",
			Filename: "pool/updates/main/libx/libx_1_amd64.deb", Size: 3, SHA256: strings.Repeat("A", 64),
		}},
	}
	m := Mirrors{Archives: map[string]string{"debian-security": "http://mirror.test/debian-security/"}, Snapshot: "http://snap.test"}
	items, err := m.Items(l, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"http://mirror.test/debian-security/pool/updates/main/libx/libx_1_amd64.deb",
		"http://snap.test/archive/debian-security/20250520T000000Z/pool/updates/main/libx/libx_1_amd64.deb",
	}
	if got := items[0].URLs; len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("URLs = %q", got)
	}
	if items[0].SHA256 != strings.Repeat("a", 64) || items[0].FileName != "libx_1_amd64.deb" {
		t.Fatalf("item = %+v", items[0])
	}
	m.Snapshot = ""
	items, _ = m.Items(l, "amd64")
	if len(items[0].URLs) != 1 || !strings.HasPrefix(items[0].Gone, "<snapshot base>/archive/debian-security/") {
		t.Fatalf("without snapshot: %+v", items[0])
	}
	if items, err := (Mirrors{}).Items(l, "amd64"); err != nil || len(items[0].URLs) != 0 {
		t.Fatalf("offline: %+v, %v", items, err)
	}
	if _, err := (Mirrors{Archives: map[string]string{"debian": "http://x"}}).Items(l, "amd64"); err == nil || !strings.Contains(err.Error(), "debian-security") {
		t.Fatalf("missing mirror: %v", err)
	}
	if _, err := m.Items(l, "arm64"); err == nil {
		t.Fatal("no error for an architecture the lock lacks")
	}
}

func TestPlainProgress(t *testing.T) {
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) { w.Write(content("a")) })
	var out bytes.Buffer
	f := newFetcher(t)
	f.Progress = NewProgress(&out, false)
	if _, err := f.Fetch(context.Background(), []Item{itemFor("a", srv.URL+"/a")}); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); !strings.Contains(s, "[1/1] a 1.0") || strings.Contains(s, "\r") {
		t.Fatalf("plain progress:\n%q", s)
	}
}

func TestDefaultCacheDir(t *testing.T) {
	t.Setenv("IMAGECTL_CACHE", "")
	t.Setenv("XDG_CACHE_HOME", "/x/cache")
	if d, _ := DefaultCacheDir(); d != "/x/cache/pulse-sidecar/debs" {
		t.Fatalf("XDG: %s", d)
	}
	t.Setenv("IMAGECTL_CACHE", "/y")
	if d, _ := DefaultCacheDir(); d != "/y" {
		t.Fatalf("override: %s", d)
	}
}
