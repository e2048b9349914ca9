package debian

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/pulse-sidecar/pulse-sidecar/internal/archive/archivetest"
)

var testDate = time.Date(2026, 11, 21, 0, 53, 2, 0, time.UTC)

func testRelease(validUntil time.Time) []byte {
	s := "Origin: Debian\nSuite: stable-security\nCodename: bookworm-security\n" +
		"Date: " + testDate.Format(time.RFC1123) + "\n"
	if !validUntil.IsZero() {
		s += "Valid-Until: " + validUntil.Format(time.RFC1123) + "\n"
	}
	s += "Architectures: amd64 arm64\nComponents: updates/main updates/contrib\nSHA256:\n" +
		" " + strings.Repeat("ab", 32) + "   123 main/binary-amd64/Packages.xz\n" +
		" " + strings.Repeat("cd", 32) + " 45678 main/binary-amd64/Packages\n"
	return []byte(s)
}

func TestVerifyInRelease(t *testing.T) {
	key := archivetest.NewKey(t, "archive")
	ring := openpgp.EntityList{key}
	signed := archivetest.ClearSign(t, key, testRelease(testDate.Add(7*24*time.Hour)))
	rel, err := VerifyInRelease("bookworm-security", signed, ring, VerifyOptions{Now: testDate.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if rel.Suite != "stable-security" || rel.Codename != "bookworm-security" || !rel.Date.Equal(testDate) {
		t.Errorf("release: %+v", rel)
	}
	if !rel.ValidUntil.Equal(testDate.Add(7 * 24 * time.Hour)) {
		t.Errorf("Valid-Until = %v", rel.ValidUntil)
	}
	if strings.Join(rel.Architectures, " ") != "amd64 arm64" || len(rel.Components) != 2 {
		t.Errorf("lists: %v %v", rel.Architectures, rel.Components)
	}
	want := IndexFile{Path: "main/binary-amd64/Packages.xz", SHA256: strings.Repeat("ab", 32), Size: 123}
	if rel.SHA256[want.Path] != want || rel.SHA256["main/binary-amd64/Packages"].Size != 45678 {
		t.Errorf("SHA256 list: %v", rel.SHA256)
	}
}

func TestVerifyInReleaseRefuses(t *testing.T) {
	key := archivetest.NewKey(t, "archive")
	other := archivetest.NewKey(t, "attacker")
	ring := openpgp.EntityList{key}
	now := testDate.Add(time.Hour)
	good := archivetest.ClearSign(t, key, testRelease(testDate.Add(24*time.Hour)))
	cases := map[string]struct {
		data []byte
		opts VerifyOptions
		want string
	}{
		"unknown key": {
			data: archivetest.ClearSign(t, other, testRelease(time.Time{})),
			opts: VerifyOptions{Now: now},
			want: "not signed by a pinned key",
		},
		"tampered text": {
			data: bytes.Replace(good, []byte("Packages.xz"), []byte("Packages.gz"), 1),
			opts: VerifyOptions{Now: now},
			want: "bad InRelease signature",
		},
		"unsigned": {
			data: testRelease(time.Time{}),
			opts: VerifyOptions{Now: now},
			want: "not a clearsigned message",
		},
		"expired": {
			data: good,
			opts: VerifyOptions{Now: testDate.Add(48 * time.Hour)},
			want: "expired",
		},
	}
	for name, c := range cases {
		_, err := VerifyInRelease("bookworm-security", c.data, ring, c.opts)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "bookworm-security") {
			t.Errorf("%s: error %q should say %q and name the suite", name, err, c.want)
		}
	}
	// An old snapshot is past Valid-Until by design.
	if _, err := VerifyInRelease("bookworm-security", good, ring, VerifyOptions{Now: testDate.Add(48 * time.Hour), AllowExpired: true}); err != nil {
		t.Errorf("AllowExpired: %v", err)
	}
}

// TestVerifyInReleaseTextOutsideSignature makes sure only signed bytes are
// parsed: a field appended after the signature block must not appear.
func TestVerifyInReleaseTextOutsideSignature(t *testing.T) {
	key := archivetest.NewKey(t, "archive")
	signed := archivetest.ClearSign(t, key, testRelease(time.Time{}))
	signed = append(signed, []byte("\nSuite: evil\n")...)
	rel, err := VerifyInRelease("s", signed, openpgp.EntityList{key}, VerifyOptions{Now: testDate})
	if err != nil {
		t.Fatal(err)
	}
	if rel.Suite != "stable-security" {
		t.Errorf("suite %q leaked from outside the signature", rel.Suite)
	}
}

func TestParseReleaseErrors(t *testing.T) {
	for name, doc := range map[string]string{
		"no date":      "Suite: a\nSHA256:\n",
		"bad date":     "Suite: a\nDate: yesterday\nSHA256:\n",
		"no sums":      "Suite: a\nDate: Sat, 21 Nov 2026 00:53:02 UTC\n",
		"bad sum line": "Suite: a\nDate: Sat, 21 Nov 2026 00:53:02 UTC\nSHA256:\n abc 12 x\n",
		"bad size":     "Suite: a\nDate: Sat, 21 Nov 2026 00:53:02 UTC\nSHA256:\n " + strings.Repeat("a", 64) + " -1 x\n",
		"path as sum":  "Suite: a\nDate: Sat, 21 Nov 2026 00:53:02 UTC\nSHA256:\n " + strings.Repeat("../", 21) + "x 12 x\n",
	} {
		if _, err := ParseRelease("r", []byte(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestPinnedKeys checks the committed keys load, are the Debian 12 ones
// the README names, and each is bound to the archive it signs.
func TestPinnedKeys(t *testing.T) {
	keys, err := LoadKeys("../../image/keys")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"debian":          "B8B80B5B623EAB6AD8775C45B7C5D7D6350947F8",
		"debian-security": "05AB90340C0C5E797F44A8C8254CF3B5AEC0A8F0",
	}
	if len(keys) != len(want) {
		t.Errorf("archives %v, want %v", keys, want)
	}
	for archive, fp := range want {
		ring, err := keys.For(archive)
		if err != nil {
			t.Fatal(err)
		}
		if len(ring) != 1 || strings.ToUpper(hex.EncodeToString(ring[0].PrimaryKey.Fingerprint)) != fp {
			t.Errorf("%s: keys %d, want only %s", archive, len(ring), fp)
		}
	}
}

func TestLoadKeysBinding(t *testing.T) {
	dir := t.TempDir()
	key := archivetest.NewKey(t, "archive")
	os.MkdirAll(filepath.Join(dir, "debian"), 0o755)
	os.WriteFile(filepath.Join(dir, "debian", "k.asc"), archivetest.ArmoredPublicKey(t, key), 0o644)
	keys, err := LoadKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keys.For("debian-security"); err == nil || !strings.Contains(err.Error(), "debian-security") {
		t.Errorf("unbound archive: %v", err)
	}
	// A key beside the archive directories would be trusted for nothing
	// in particular: refused.
	os.WriteFile(filepath.Join(dir, "loose.asc"), archivetest.ArmoredPublicKey(t, key), 0o644)
	if _, err := LoadKeys(dir); err == nil || !strings.Contains(err.Error(), "loose.asc") {
		t.Errorf("loose key: %v", err)
	}
}

func TestLoadKeyringErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadKeyring(dir); err == nil {
		t.Error("empty directory accepted")
	}
	os.WriteFile(filepath.Join(dir, "junk.asc"), []byte("not a key"), 0o644)
	if _, err := LoadKeyring(dir); err == nil || !strings.Contains(err.Error(), "junk.asc") {
		t.Errorf("junk key: %v", err)
	}
}

// TestVerifyInReleaseExpiredKey: AllowExpired accepts a signature made
// while the key was valid, but never one the key made after it expired.
func TestVerifyInReleaseExpiredKey(t *testing.T) {
	created := testDate.Add(-365 * 24 * time.Hour)
	key := archivetest.NewExpiringKey(t, "retired archive", created, 30*24*time.Hour)
	ring := openpgp.EntityList{key}
	expiry := created.Add(30 * 24 * time.Hour)
	now := testDate.Add(time.Hour)

	before := archivetest.ClearSignAt(t, key, testRelease(time.Time{}), expiry.Add(-24*time.Hour))
	if _, err := VerifyInRelease("bookworm", before, ring, VerifyOptions{Now: now}); err == nil {
		t.Error("signature by a key expired since accepted without AllowExpired")
	}
	if _, err := VerifyInRelease("bookworm", before, ring, VerifyOptions{Now: now, AllowExpired: true}); err != nil {
		t.Errorf("signature made while the key was valid, AllowExpired: %v", err)
	}

	after := archivetest.ClearSignAt(t, key, testRelease(time.Time{}), expiry.Add(24*time.Hour))
	for _, allow := range []bool{false, true} {
		_, err := VerifyInRelease("bookworm", after, ring, VerifyOptions{Now: now, AllowExpired: allow})
		if err == nil || !strings.Contains(err.Error(), "bad InRelease signature") || !strings.Contains(err.Error(), "bookworm") {
			t.Errorf("signature made after the key expired, AllowExpired=%v: err = %v", allow, err)
		}
	}
}
