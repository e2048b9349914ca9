package archive

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/pulse-sidecar/pulse-sidecar/internal/archive/archivetest"
	"github.com/pulse-sidecar/pulse-sidecar/internal/debian"
	"github.com/pulse-sidecar/pulse-sidecar/internal/fetch"
)

var (
	lockNow     = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	bookwormDay = time.Date(2026, 7, 11, 10, 16, 37, 0, time.UTC)
	securityDay = time.Date(2026, 11, 21, 0, 53, 2, 0, time.UTC)
)

// testArchive is a small Debian 12 look-alike: three suites in two
// archives, both architectures, exercising every resolver rule once.
func testArchive(signer *openpgp.Entity) []archivetest.Suite {
	main := []archivetest.Pkg{
		{Name: "player", Version: "1.0-1", Arch: "amd64", Depends: "libc6 (>= 2.36), libcodec (>= 2.0) | libcodec-old, audio-daemon, player-data (= 1.0-1), helper:any, libx86only [amd64]"},
		{Name: "player", Version: "1.0-1", Arch: "arm64", Depends: "libc6 (>= 2.36), libcodec (>= 2.0) | libcodec-old, audio-daemon, player-data (= 1.0-1), helper:any"},
		{Name: "player-data", Version: "1.0-1", Arch: "all", MultiArch: "foreign", Source: "player"},
		{Name: "libc6", Version: "2.36-9+deb12u1", Arch: "amd64", MultiArch: "same", Priority: "required"},
		{Name: "libc6", Version: "2.36-9+deb12u1", Arch: "arm64", MultiArch: "same", Priority: "required"},
		{Name: "libcodec", Version: "2.1-1", Arch: "amd64", MultiArch: "same", Source: "codec (2.1-1)", PreDepends: "libc6"},
		{Name: "libcodec", Version: "2.1-1", Arch: "arm64", MultiArch: "same", Source: "codec (2.1-1)", PreDepends: "libc6"},
		{Name: "libcodec-old", Version: "1.0-1", Arch: "amd64"},
		{Name: "pulse", Version: "16.1+dfsg1-2", Arch: "amd64", Provides: "audio-daemon", Depends: "adduser"},
		{Name: "pulse", Version: "16.1+dfsg1-2", Arch: "arm64", Provides: "audio-daemon", Depends: "adduser"},
		{Name: "adduser", Version: "3.134", Arch: "all", Depends: "passwd"},
		{Name: "passwd", Version: "1:4.13", Arch: "amd64"},
		{Name: "passwd", Version: "1:4.13", Arch: "arm64"},
		{Name: "helper", Version: "1", Arch: "amd64", MultiArch: "allowed"},
		{Name: "helper", Version: "1", Arch: "arm64", MultiArch: "allowed"},
		{Name: "libx86only", Version: "1", Arch: "amd64"},
	}
	updates := []archivetest.Pkg{
		{Name: "libcodec", Version: "2.1-1+deb12u1", Arch: "amd64", MultiArch: "same", Source: "codec", PreDepends: "libc6"},
		{Name: "libcodec", Version: "2.1-1+deb12u1", Arch: "arm64", MultiArch: "same", Source: "codec", PreDepends: "libc6"},
	}
	security := []archivetest.Pkg{
		{Name: "libc6", Version: "2.36-9+deb12u10", Arch: "amd64", MultiArch: "same", Source: "glibc"},
		{Name: "libc6", Version: "2.36-9+deb12u10", Arch: "arm64", MultiArch: "same", Source: "glibc"},
		// Older than updates' version: updates must win.
		{Name: "libcodec", Version: "2.1-1", Arch: "amd64", MultiArch: "same", Source: "codec"},
	}
	archs := []string{"amd64", "arm64"}
	return []archivetest.Suite{
		{Archive: "debian", Suite: "bookworm", Codename: "bookworm", Date: bookwormDay, Archs: archs, Packages: main, Signer: signer, Compression: "xz"},
		{Archive: "debian", Suite: "bookworm-updates", Codename: "bookworm-updates", Date: bookwormDay.Add(24 * time.Hour), ValidUntil: lockNow.Add(7 * 24 * time.Hour), Archs: archs, Packages: updates, Signer: signer, Compression: "gz"},
		{Archive: "debian-security", Suite: "bookworm-security", Codename: "bookworm-security", Date: securityDay, ValidUntil: lockNow.Add(7 * 24 * time.Hour), Archs: archs, Packages: security, Signer: signer, AcquireByHash: true},
	}
}

// testClient reads srvURL's archives with key bound to both.
func testClient(srvURL string, key *openpgp.Entity) *Client {
	return &Client{
		Mirrors: map[string]string{"debian": srvURL + "/debian", "debian-security": srvURL + "/debian-security/"},
		Keys:    debian.Keys{"debian": {key}, "debian-security": {key}},
		HTTP:    &fetch.Client{Attempts: 2, Backoff: time.Millisecond},
		Now:     lockNow,
	}
}

func lockOptions(archs ...string) LockOptions {
	return LockOptions{
		Suites:  debian.DefaultSuites(),
		Archs:   archs,
		Roots:   []string{"player"},
		Exclude: []string{"adduser"},
	}
}

// resolve locks "player" from the test archive at srvURL.
func resolve(srvURL string, key *openpgp.Entity, archs ...string) (*debian.Lock, error) {
	return testClient(srvURL, key).Lock(context.Background(), lockOptions(archs...))
}

func TestResolveLock(t *testing.T) {
	key := archivetest.NewKey(t, "archive")
	srv := archivetest.Serve(t, testArchive(key)...)
	l, err := resolve(srv.URL, key, "amd64", "arm64")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]debian.LockedPackage{}
	for _, p := range l.Packages {
		got[p.ForArch+"/"+p.Name] = p
	}
	want := map[string]string{ // for_arch/name -> version suite architecture
		"amd64/player":      "1.0-1 bookworm amd64",
		"amd64/player-data": "1.0-1 bookworm all",
		"amd64/libc6":       "2.36-9+deb12u10 bookworm-security amd64",
		"amd64/libcodec":    "2.1-1+deb12u1 bookworm-updates amd64",
		"amd64/pulse":       "16.1+dfsg1-2 bookworm amd64",
		"amd64/helper":      "1 bookworm amd64",
		"amd64/libx86only":  "1 bookworm amd64",
		"arm64/player":      "1.0-1 bookworm arm64",
		"arm64/player-data": "1.0-1 bookworm all",
		"arm64/libc6":       "2.36-9+deb12u10 bookworm-security arm64",
		"arm64/libcodec":    "2.1-1+deb12u1 bookworm-updates arm64",
		"arm64/pulse":       "16.1+dfsg1-2 bookworm arm64",
		"arm64/helper":      "1 bookworm arm64",
	}
	if len(got) != len(want) {
		t.Errorf("lock has %d packages, want %d: %v", len(got), len(want), l.Packages)
	}
	for key, w := range want {
		p, ok := got[key]
		if !ok {
			t.Errorf("%s missing", key)
			continue
		}
		if s := p.Version + " " + p.Suite + " " + p.Architecture; s != w {
			t.Errorf("%s = %s, want %s", key, s, w)
		}
	}
	c6 := got["amd64/libc6"]
	if c6.Archive != "debian-security" || c6.Source != "glibc" || c6.SourceVersion != "2.36-9+deb12u10" || !strings.HasPrefix(c6.Filename, "pool/main/l/libc6/") {
		t.Errorf("libc6 entry: %+v", c6)
	}
	if pd := got["amd64/player-data"]; pd.Source != "player" || pd.SourceVersion != "1.0-1" {
		t.Errorf("player-data source: %+v", pd)
	}
	if l.Suites[0].Snapshot != "20261122T120000Z" || l.Suites[0].Date != "2026-07-11T10:16:37Z" {
		t.Errorf("suites: %+v", l.Suites)
	}
	epoch, err := debian.SourceDateEpoch(l)
	if err != nil || epoch != securityDay.Unix() {
		t.Errorf("SourceDateEpoch = %d, %v; want %d", epoch, err, securityDay.Unix())
	}
	// Round trip through the lead's reader.
	path := filepath.Join(t.TempDir(), "debian.lock.json")
	if err := debian.WriteLock(path, l); err != nil {
		t.Fatal(err)
	}
	if _, err := debian.ReadLock(path); err != nil {
		t.Fatal(err)
	}
}

func TestResolveLockRefusesForeignSignature(t *testing.T) {
	key := archivetest.NewKey(t, "archive")
	attacker := archivetest.NewKey(t, "attacker")
	suites := testArchive(key)
	suites[2].Signer = attacker
	srv := archivetest.Serve(t, suites...)
	_, err := resolve(srv.URL, key, "amd64")
	if err == nil || !strings.Contains(err.Error(), "debian-security/bookworm-security") || !strings.Contains(err.Error(), "not signed by a pinned key") {
		t.Errorf("err = %v", err)
	}
}

func TestResolveLockIndexMismatch(t *testing.T) {
	key := archivetest.NewKey(t, "archive")
	suites := testArchive(key)
	suites[1].CorruptIndex = true
	srv := archivetest.Serve(t, suites...)
	_, err := resolve(srv.URL, key, "amd64")
	if err == nil || !strings.Contains(err.Error(), "main/binary-amd64/Packages.gz") || !strings.Contains(err.Error(), "bookworm-updates") || !strings.Contains(strings.ToLower(err.Error()), "sha256 mismatch") {
		t.Errorf("err = %v", err)
	}
}

func TestResolveLockUnresolvable(t *testing.T) {
	key := archivetest.NewKey(t, "archive")
	suites := testArchive(key)
	suites[0].Packages = append(suites[0].Packages, archivetest.Pkg{Name: "broken", Version: "1", Arch: "amd64", Depends: "player, libfoo (>= 2)"})
	srv := archivetest.Serve(t, suites...)
	opts := lockOptions("amd64")
	opts.Roots = []string{"broken"}
	_, err := testClient(srv.URL, key).Lock(context.Background(), opts)
	if err == nil || !strings.Contains(err.Error(), "broken -> libfoo (>= 2): no candidate") {
		t.Errorf("err = %v", err)
	}
}

func TestResolveLockExpiredRelease(t *testing.T) {
	key := archivetest.NewKey(t, "archive")
	srv := archivetest.Serve(t, testArchive(key)...)
	c := testClient(srv.URL, key)
	c.Now = lockNow.Add(30 * 24 * time.Hour)
	if _, err := c.Lock(context.Background(), lockOptions("amd64")); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("err = %v", err)
	}
	c.AllowExpired = true
	if _, err := c.Lock(context.Background(), lockOptions("amd64")); err != nil {
		t.Errorf("AllowExpired: %v", err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestFetchPackagesFallback: an index form the Release lists but the mirror
// does not serve is skipped for the next one.
func TestFetchPackagesFallback(t *testing.T) {
	gz := archivetest.Build(t, archivetest.Suite{
		Archive: "debian", Suite: "bookworm", Codename: "bookworm", Date: bookwormDay,
		Archs: []string{"amd64"}, Compression: "gz", Signer: archivetest.NewKey(t, "k"),
		Packages: []archivetest.Pkg{{Name: "a", Version: "1", Arch: "amd64"}},
	})
	rel, err := debian.ParseRelease("test", gz["debian/dists/bookworm/Release"])
	if err != nil {
		t.Fatal(err)
	}
	// The Release now also names an .xz the server does not have.
	rel.SHA256["main/binary-amd64/Packages.xz"] = debian.IndexFile{Path: "main/binary-amd64/Packages.xz", SHA256: strings.Repeat("0", 64), Size: 1}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := gz[strings.TrimPrefix(r.URL.Path, "/")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	defer srv.Close()
	c := &Client{}
	r := &release{ref: debian.SuiteRef{Archive: "debian", Suite: "bookworm"}, base: srv.URL + "/debian", rel: rel}
	ix, err := c.fetchPackages(context.Background(), r, "main", "amd64")
	if err != nil || len(ix.Packages) != 1 || ix.Packages[0].Name != "a" || ix.File.Path != "main/binary-amd64/Packages.gz" {
		t.Fatalf("index %+v, err %v", ix, err)
	}
	if _, err := c.fetchPackages(context.Background(), r, "main", "arm64"); err == nil || !strings.Contains(err.Error(), "binary-arm64") {
		t.Errorf("missing arch: %v", err)
	}
}
