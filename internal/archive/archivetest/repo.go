// Package archivetest builds signed Debian repositories for tests: a key,
// Packages indexes, a Release with their hashes, a clearsigned InRelease
// and .deb pool files, served by an httptest server on 127.0.0.1.
//
// It depends on nothing in package debian, so that package's own tests can
// use it without an import cycle, and so a bug in the reader cannot hide
// itself by also being in the writer.
package archivetest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/klauspost/compress/gzip"
	"github.com/ulikunitz/xz"
)

// pgpConfig dates test keys and signatures far enough in the past that any
// reference time a test picks sees a valid key and a signature that is not
// from the future.
func pgpConfig() *packet.Config {
	return &packet.Config{
		Algorithm: packet.PubKeyAlgoEdDSA,
		Time:      func() time.Time { return time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC) },
	}
}

// NewKey generates an Ed25519 signing key; Ed25519 keeps key generation
// fast enough to do in every test.
func NewKey(t testing.TB, name string) *openpgp.Entity {
	t.Helper()
	cfg := pgpConfig()
	e, err := openpgp.NewEntity(name, "test", "archive@example.invalid", cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// ArmoredPublicKey renders the public half of e as an .asc file.
func ArmoredPublicKey(t testing.TB, e *openpgp.Entity) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Serialize(w); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Pkg is one binary package of a test suite. Empty fields are left out of
// the paragraph, except that a missing body gets a small made-up one.
type Pkg struct {
	Name, Version, Arch string
	MultiArch           string
	Essential           bool
	Priority            string
	Source              string
	Depends, PreDepends string
	Provides            string
	Body                []byte // the .deb's bytes
}

// Suite describes one suite of one archive.
type Suite struct {
	Archive  string // "debian" or "debian-security"
	Suite    string
	Codename string
	Date     time.Time
	// ValidUntil is written when non-zero.
	ValidUntil time.Time
	Archs      []string
	Packages   []Pkg
	Signer     *openpgp.Entity
	// Compression is "xz", "gz" or "" (plain) for the published index.
	Compression string
	// CorruptIndex serves an index whose bytes differ from the Release
	// entry, as a tampering mirror would.
	CorruptIndex bool
	// AcquireByHash publishes indexes under by-hash/SHA256/ too and says so.
	AcquireByHash bool
}

// Serve starts a server on 127.0.0.1 holding the suites; the base URL of
// archive a is srv.URL+"/"+a. It is closed when the test ends.
func Serve(t testing.TB, suites ...Suite) *httptest.Server {
	t.Helper()
	files := map[string][]byte{}
	for _, s := range suites {
		for k, v := range Build(t, s) {
			files[k] = v
		}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := files[strings.TrimPrefix(r.URL.Path, "/")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// Build renders a suite into files keyed by their path below the server
// root ("<archive>/dists/<suite>/InRelease", "<archive>/pool/...").
func Build(t testing.TB, s Suite) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	dists := s.Archive + "/dists/" + s.Suite + "/"
	type sum struct {
		path string
		data []byte
	}
	var sums []sum
	for _, arch := range s.Archs {
		var idx bytes.Buffer
		for _, p := range s.Packages {
			if p.Arch != arch && p.Arch != "all" {
				continue
			}
			body := p.Body
			if body == nil {
				body = []byte(fmt.Sprintf("!<arch>\n%s %s %s\n", p.Name, p.Version, p.Arch))
			}
			pool := fmt.Sprintf("pool/main/%c/%s/%s_%s_%s.deb", p.Name[0], p.Name, p.Name, strings.ReplaceAll(p.Version, ":", "%3a"), p.Arch)
			files[s.Archive+"/"+pool] = body
			writeParagraph(&idx, p, pool, body)
		}
		dir := "main/binary-" + arch + "/"
		plain := idx.Bytes()
		sums = append(sums, sum{dir + "Packages", plain})
		var name string
		var published []byte
		switch s.Compression {
		case "xz":
			name, published = dir+"Packages.xz", compressXZ(t, plain)
		case "gz":
			name, published = dir+"Packages.gz", compressGZ(t, plain)
		default:
			name, published = dir+"Packages", plain
		}
		if name != dir+"Packages" {
			sums = append(sums, sum{name, published})
		}
		served := published
		if s.CorruptIndex {
			// Same size, different bytes: only the digest can catch it.
			served = append([]byte(nil), published...)
			served[len(served)-1] ^= 0xff
		}
		files[dists+name] = served
		if s.AcquireByHash {
			h := sha256.Sum256(published)
			files[dists+dir+"by-hash/SHA256/"+hex.EncodeToString(h[:])] = served
		}
	}
	var rel bytes.Buffer
	fmt.Fprintf(&rel, "Origin: Debian\nLabel: Debian\nSuite: %s\nCodename: %s\n", s.Suite, s.Codename)
	fmt.Fprintf(&rel, "Date: %s\n", s.Date.UTC().Format(time.RFC1123))
	if !s.ValidUntil.IsZero() {
		fmt.Fprintf(&rel, "Valid-Until: %s\n", s.ValidUntil.UTC().Format(time.RFC1123))
	}
	if s.AcquireByHash {
		rel.WriteString("Acquire-By-Hash: yes\n")
	}
	fmt.Fprintf(&rel, "Architectures: %s\nComponents: main\nDescription: test suite\nSHA256:\n", strings.Join(s.Archs, " "))
	sort.Slice(sums, func(i, j int) bool { return sums[i].path < sums[j].path })
	for _, f := range sums {
		h := sha256.Sum256(f.data)
		fmt.Fprintf(&rel, " %x %16d %s\n", h, len(f.data), f.path)
	}
	files[dists+"Release"] = rel.Bytes()
	files[dists+"InRelease"] = ClearSign(t, s.Signer, rel.Bytes())
	return files
}

// ClearSign wraps text in a clearsigned message by signer.
func ClearSign(t testing.TB, signer *openpgp.Entity, text []byte) []byte {
	t.Helper()
	return ClearSignAt(t, signer, text, pgpConfig().Now())
}

// ClearSignAt is ClearSign with the signature dated at, which may lie
// outside the key's lifetime: tests of expiry need such signatures.
func ClearSignAt(t testing.TB, signer *openpgp.Entity, text []byte, at time.Time) []byte {
	t.Helper()
	cfg := pgpConfig()
	cfg.Time = func() time.Time { return at }
	var out bytes.Buffer
	w, err := clearsign.Encode(&out, signer.PrivateKey, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(text); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// NewExpiringKey generates a signing key created at created that expires
// lifetime later, like an archive key of a past release.
func NewExpiringKey(t testing.TB, name string, created time.Time, lifetime time.Duration) *openpgp.Entity {
	t.Helper()
	cfg := pgpConfig()
	cfg.Time = func() time.Time { return created }
	cfg.KeyLifetimeSecs = uint32(lifetime / time.Second)
	e, err := openpgp.NewEntity(name, "test", "archive@example.invalid", cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func writeParagraph(w *bytes.Buffer, p Pkg, pool string, body []byte) {
	field := func(name, value string) {
		if value != "" {
			fmt.Fprintf(w, "%s: %s\n", name, value)
		}
	}
	field("Package", p.Name)
	field("Source", p.Source)
	field("Version", p.Version)
	field("Architecture", p.Arch)
	if p.Essential {
		field("Essential", "yes")
	}
	field("Multi-Arch", p.MultiArch)
	field("Priority", p.Priority)
	field("Pre-Depends", p.PreDepends)
	field("Depends", p.Depends)
	field("Provides", p.Provides)
	field("Description", "test package "+p.Name)
	field("Filename", pool)
	field("Size", fmt.Sprint(len(body)))
	h := sha256.Sum256(body)
	field("SHA256", hex.EncodeToString(h[:]))
	w.WriteString("\n")
}

func compressXZ(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := xz.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func compressGZ(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
