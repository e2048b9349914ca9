package debian

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"

	"github.com/pulse-sidecar/pulse-sidecar/internal/archive/archivetest"
)

// signaturePackets returns the binary signature packets of a clearsigned message.
func signaturePackets(t *testing.T, msg []byte) []byte {
	t.Helper()
	b, _ := clearsign.Decode(msg)
	if b == nil {
		t.Fatal("not clearsigned")
	}
	sig, err := io.ReadAll(b.ArmoredSignature.Body)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// withSignatures replaces the signature block of a clearsigned message.
func withSignatures(t *testing.T, msg, packets []byte) []byte {
	t.Helper()
	i := bytes.Index(msg, []byte("-----BEGIN PGP SIGNATURE-----"))
	if i < 0 {
		t.Fatal("no signature block")
	}
	var buf bytes.Buffer
	buf.Write(msg[:i])
	w, err := armor.Encode(&buf, "PGP SIGNATURE", nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(packets)
	w.Close()
	buf.WriteString("\n")
	return buf.Bytes()
}

// TestVerifyInReleaseTriesEverySignature: an InRelease whose first
// signature by a pinned key does not verify (here, made over other text)
// and whose second does is accepted, as apt accepts it. go-crypto alone
// looks at the first signature by a known key only.
func TestVerifyInReleaseTriesEverySignature(t *testing.T) {
	retired := archivetest.NewKey(t, "retired archive key")
	current := archivetest.NewKey(t, "current archive key")
	ring := openpgp.EntityList{retired, current}
	text := testRelease(time.Time{})
	good := archivetest.ClearSign(t, current, text)
	bad := signaturePackets(t, archivetest.ClearSign(t, retired, []byte("Origin: someone else\n")))
	msg := withSignatures(t, good, append(bad, signaturePackets(t, good)...))
	now := testDate.Add(time.Hour)
	if _, err := VerifyInRelease("bookworm", msg, ring, VerifyOptions{Now: now}); err != nil {
		t.Fatalf("a good second signature was not enough: %v", err)
	}
	// With only the bad one, the error says it is bad (not "unknown key").
	msg = withSignatures(t, good, bad)
	if _, err := VerifyInRelease("bookworm", msg, ring, VerifyOptions{Now: now}); err == nil || !strings.Contains(err.Error(), "bad InRelease signature") {
		t.Fatalf("bad signature only: %v", err)
	}
	// Garbage framing is refused, not skipped.
	msg = withSignatures(t, good, []byte{0x7f, 1, 2})
	if _, err := VerifyInRelease("bookworm", msg, ring, VerifyOptions{Now: now}); err == nil || !strings.Contains(err.Error(), "signature block") {
		t.Fatalf("garbage: %v", err)
	}
}

func TestCheckReleaseDate(t *testing.T) {
	ref := SuiteRef{Archive: "debian", Suite: "bookworm"}
	locked := time.Date(2026, 7, 11, 10, 16, 37, 0, time.UTC)
	prev := &Lock{Suites: []LockSuite{{Archive: "debian", Suite: "bookworm", Date: locked.Format(time.RFC3339)}}}
	now := locked.Add(30 * 24 * time.Hour)
	cases := []struct {
		name string
		date time.Time
		prev *Lock
		want string
	}{
		{"same Release", locked, prev, ""},
		{"newer", locked.Add(time.Hour), prev, ""},
		{"older: a replay", locked.Add(-time.Second), prev, "older than"},
		{"no previous lock", locked.Add(-time.Hour), nil, ""},
		{"hours ahead of the clock", now.Add(3 * time.Hour), prev, ""},
		{"two days ahead", now.Add(48 * time.Hour), nil, "more than a day after now"},
	}
	for _, c := range cases {
		err := CheckReleaseDate(ref, &Release{Date: c.date}, c.prev, now)
		var de *DowngradeError
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (!errors.As(err, &de) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "--allow-downgrade bookworm")):
			t.Errorf("%s: err = %v, want %q", c.name, err, c.want)
		}
	}
	// Another suite's record is no reference.
	if err := CheckReleaseDate(SuiteRef{Archive: "debian", Suite: "bookworm-updates"}, &Release{Date: locked.Add(-time.Hour)}, prev, now); err != nil {
		t.Errorf("other suite: %v", err)
	}
}

func TestInputsDigest(t *testing.T) {
	suites := DefaultSuites()
	d := InputsDigest([]string{"b", "a"}, []string{"y", "x"}, suites)
	if d != InputsDigest([]string{"a", "b"}, []string{"x", "y"}, suites) {
		t.Error("order of packages or excludes changed the digest")
	}
	for name, other := range map[string]string{
		"package added":    InputsDigest([]string{"a", "b", "c"}, []string{"x", "y"}, suites),
		"exclude moved":    InputsDigest([]string{"a", "b", "x"}, []string{"y"}, suites),
		"suites reordered": InputsDigest([]string{"a", "b"}, []string{"x", "y"}, []SuiteRef{suites[2], suites[0], suites[1]}),
		"suite dropped":    InputsDigest([]string{"a", "b"}, []string{"x", "y"}, suites[:2]),
	} {
		if other == d {
			t.Errorf("%s: same digest", name)
		}
	}
}
