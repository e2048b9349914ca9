package debian

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// Release is the parsed content of a (verified) Release file.
type Release struct {
	Suite         string
	Codename      string
	Date          time.Time
	ValidUntil    time.Time // zero when the Release has no Valid-Until
	Architectures []string
	Components    []string
	// AcquireByHash says index files are also served under
	// by-hash/SHA256/<digest>, which avoids racing a mirror update.
	AcquireByHash bool
	// SHA256 maps an index path relative to dists/<suite>/ to its digest
	// and size.
	SHA256 map[string]IndexFile
}

// IndexFile is one line of the Release's SHA256 list.
type IndexFile struct {
	Path   string
	SHA256 string
	Size   int64
}

// releaseDateLayouts are the forms of Date and Valid-Until in real archives:
// RFC 2822 with a "UTC" or numeric zone, sometimes with a single-digit day.
var releaseDateLayouts = []string{
	time.RFC1123,
	time.RFC1123Z,
	"Mon, 2 Jan 2006 15:04:05 MST",
	"Mon, 2 Jan 2006 15:04:05 -0700",
}

func parseReleaseDate(s string) (time.Time, error) {
	for _, layout := range releaseDateLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("unrecognised date %q", s)
}

// ParseRelease parses the text of a Release file. where names it in errors.
func ParseRelease(where string, text []byte) (*Release, error) {
	para, err := ParseControl(where, string(text))
	if err != nil {
		return nil, err
	}
	r := &Release{
		Suite:         para.Value("Suite"),
		Codename:      para.Value("Codename"),
		Architectures: strings.Fields(para.Value("Architectures")),
		Components:    strings.Fields(para.Value("Components")),
		AcquireByHash: para.Value("Acquire-By-Hash") == "yes",
		SHA256:        map[string]IndexFile{},
	}
	date, ok := para.Get("Date")
	if !ok {
		return nil, fmt.Errorf("%s: no Date field", where)
	}
	if r.Date, err = parseReleaseDate(date); err != nil {
		return nil, fmt.Errorf("%s: Date: %w", where, err)
	}
	if v, ok := para.Get("Valid-Until"); ok {
		if r.ValidUntil, err = parseReleaseDate(v); err != nil {
			return nil, fmt.Errorf("%s: Valid-Until: %w", where, err)
		}
	}
	sums, ok := para.Get("SHA256")
	if !ok {
		return nil, fmt.Errorf("%s: no SHA256 field", where)
	}
	for _, line := range strings.Split(sums, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 || !validSHA256(strings.ToLower(f[0])) {
			return nil, fmt.Errorf("%s: malformed SHA256 line %q", where, strings.TrimSpace(line))
		}
		size, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil || size < 0 {
			return nil, fmt.Errorf("%s: bad size in SHA256 line %q", where, strings.TrimSpace(line))
		}
		r.SHA256[f[2]] = IndexFile{Path: f[2], SHA256: strings.ToLower(f[0]), Size: size}
	}
	return r, nil
}

// VerifyOptions controls what VerifyInRelease accepts.
type VerifyOptions struct {
	// Now is the time Valid-Until and key expiry are checked against.
	Now time.Time
	// AllowExpired accepts a Release past its Valid-Until, which every
	// Release of an old snapshot is.
	AllowExpired bool
}

// VerifyInRelease checks a clearsigned InRelease against keyring (the keys
// bound to the suite's archive) and parses the signed text. Only the signed
// bytes are parsed: anything around the signature block is ignored, since an
// attacker could put anything there. suite names the suite in errors.
//
// Archive InRelease files carry several signatures (the current and next
// release's keys). Like apt, every signature is tried and one good
// signature by a pinned key suffices; signatures by other keys, and bad
// ones, are ignored as long as one verifies.
func VerifyInRelease(suite string, inRelease []byte, keyring openpgp.KeyRing, opts VerifyOptions) (*Release, error) {
	block, _ := clearsign.Decode(inRelease)
	if block == nil {
		return nil, fmt.Errorf("suite %s: InRelease is not a clearsigned message", suite)
	}
	sig, err := io.ReadAll(block.ArmoredSignature.Body)
	if err != nil {
		return nil, fmt.Errorf("suite %s: InRelease signature block: %w", suite, err)
	}
	now := opts.Now
	if now.IsZero() {
		return nil, fmt.Errorf("suite %s: verification needs a reference time", suite)
	}
	sigs, err := splitPackets(sig)
	if err != nil {
		return nil, fmt.Errorf("suite %s: InRelease signature block: %w", suite, err)
	}
	var failures []string
	verified := false
	for _, one := range sigs {
		err := verifyOne(block.Bytes, one, keyring, now, opts.AllowExpired)
		if err == nil {
			verified = true
			break
		}
		if !errors.Is(err, pgperrors.ErrUnknownIssuer) {
			failures = append(failures, err.Error())
		}
	}
	switch {
	case verified:
	case len(failures) == 0:
		return nil, fmt.Errorf("suite %s: InRelease is not signed by a pinned key (signed by %s)", suite, strings.Join(signatureIssuers(sig), ", "))
	default:
		return nil, fmt.Errorf("suite %s: bad InRelease signature: %s", suite, strings.Join(failures, "; "))
	}
	rel, err := ParseRelease("suite "+suite+" Release", block.Plaintext)
	if err != nil {
		return nil, err
	}
	if !rel.ValidUntil.IsZero() && now.After(rel.ValidUntil) && !opts.AllowExpired {
		return nil, fmt.Errorf("suite %s: Release expired at %s (Valid-Until); refusing possibly stale metadata", suite, rel.ValidUntil.Format(time.RFC3339))
	}
	return rel, nil
}

// verifyOne checks a single signature packet over signed.
func verifyOne(signed, sig []byte, keyring openpgp.KeyRing, now time.Time, allowExpired bool) error {
	cfg := &packet.Config{Time: func() time.Time { return now }}
	signature, _, err := openpgp.VerifyDetachedSignature(keyring, bytes.NewReader(signed), bytes.NewReader(sig), cfg)
	if errors.Is(err, pgperrors.ErrKeyExpired) && allowExpired {
		// An old snapshot may be signed by a key that has expired since,
		// but not by one that had already expired when it signed:
		// go-crypto reports key expiry before looking at the signature's
		// date, so whoever holds a retired key could otherwise sign fresh
		// metadata with it.
		return verifiedWhenSigned(signed, sig, keyring, signature, now)
	}
	return err
}

// maxSignatures bounds the work an InRelease can ask for; Debian's carry
// two or three.
const maxSignatures = 16

// splitPackets cuts a binary OpenPGP signature block into its packets.
// go-crypto verifies only the first signature whose issuer is in the
// keyring, so a block whose first pinned-key signature is bad (an expired
// or revoked key beside a good one, or a bogus packet a mirror prepended)
// would be refused although a later signature is good: each packet is
// therefore verified on its own. Signature packets always have a definite
// length; anything else is refused.
func splitPackets(b []byte) ([][]byte, error) {
	var out [][]byte
	for len(b) > 0 {
		if len(out) == maxSignatures {
			return nil, fmt.Errorf("more than %d packets", maxSignatures)
		}
		tag := b[0]
		if tag&0x80 == 0 {
			return nil, fmt.Errorf("packet %d: bad tag byte %#x", len(out)+1, tag)
		}
		var hdr, n int
		if tag&0x40 != 0 { // new format
			if len(b) < 2 {
				return nil, fmt.Errorf("packet %d: truncated header", len(out)+1)
			}
			switch l := int(b[1]); {
			case l < 192:
				hdr, n = 2, l
			case l < 224:
				if len(b) < 3 {
					return nil, fmt.Errorf("packet %d: truncated header", len(out)+1)
				}
				hdr, n = 3, (l-192)<<8+int(b[2])+192
			case l == 255:
				if len(b) < 6 {
					return nil, fmt.Errorf("packet %d: truncated header", len(out)+1)
				}
				hdr, n = 6, int(uint32(b[2])<<24|uint32(b[3])<<16|uint32(b[4])<<8|uint32(b[5]))
			default:
				return nil, fmt.Errorf("packet %d: partial body length", len(out)+1)
			}
		} else { // old format
			switch tag & 3 {
			case 0:
				hdr = 2
			case 1:
				hdr = 3
			case 2:
				hdr = 5
			default:
				return nil, fmt.Errorf("packet %d: indeterminate length", len(out)+1)
			}
			if len(b) < hdr {
				return nil, fmt.Errorf("packet %d: truncated header", len(out)+1)
			}
			for _, c := range b[1:hdr] {
				n = n<<8 | int(c)
			}
		}
		if n < 0 || n > len(b)-hdr {
			return nil, fmt.Errorf("packet %d: length %d runs past the block", len(out)+1, n)
		}
		out = append(out, b[:hdr+n])
		b = b[hdr+n:]
	}
	if len(out) == 0 {
		return nil, errors.New("no signature packets")
	}
	return out, nil
}

// verifiedWhenSigned checks a signature whose key has expired by now: it
// must verify with the clock set to its own creation time (the key was
// valid then), and that time must not be in the future.
func verifiedWhenSigned(signed, sig []byte, keyring openpgp.KeyRing, signature *packet.Signature, now time.Time) error {
	if signature == nil {
		return pgperrors.ErrKeyExpired
	}
	created := signature.CreationTime
	if created.After(now) {
		return fmt.Errorf("signature made at %s, after the reference time %s", created.Format(time.RFC3339), now.Format(time.RFC3339))
	}
	cfg := &packet.Config{Time: func() time.Time { return created }}
	if _, _, err := openpgp.VerifyDetachedSignature(keyring, bytes.NewReader(signed), bytes.NewReader(sig), cfg); err != nil {
		return fmt.Errorf("signature made at %s: %w", created.Format(time.RFC3339), err)
	}
	return nil
}

// signatureIssuers lists the key IDs a signature block claims, for an error
// message that tells the user which key to look for.
func signatureIssuers(sig []byte) []string {
	var ids []string
	r := packet.NewReader(bytes.NewReader(sig))
	for i := 0; i < 64; i++ {
		p, err := r.Next()
		if err != nil {
			break
		}
		s, ok := p.(*packet.Signature)
		if !ok {
			continue
		}
		switch {
		case s.IssuerFingerprint != nil:
			ids = append(ids, fmt.Sprintf("%X", s.IssuerFingerprint))
		case s.IssuerKeyId != nil:
			ids = append(ids, fmt.Sprintf("%016X", *s.IssuerKeyId))
		}
	}
	if len(ids) == 0 {
		return []string{"no key"}
	}
	sort.Strings(ids)
	return ids
}

// maxFutureRelease is how far a Release's Date may lie ahead of the
// clock: Debian signs a few minutes before publishing, and machines'
// clocks drift, but a day ahead is either a broken clock or metadata
// crafted to outlive the next real Release.
const maxFutureRelease = 24 * time.Hour

// CheckReleaseDate refuses a Release that goes back in time: one dated
// before the Release the previous lock recorded for the same suite (a
// mirror replaying older signed metadata, which pins older, vulnerable
// versions), or one dated more than a day after now. prev may be nil (no
// previous lock, or one without the suite). Errors are *DowngradeError,
// so a caller can let a user accept one on purpose.
func CheckReleaseDate(ref SuiteRef, rel *Release, prev *Lock, now time.Time) error {
	if rel.Date.After(now.Add(maxFutureRelease)) {
		return &DowngradeError{Suite: ref, Reason: fmt.Sprintf("Release is dated %s, more than a day after now (%s)", rel.Date.Format(time.RFC3339), now.UTC().Format(time.RFC3339))}
	}
	if prev == nil {
		return nil
	}
	ls, ok := prev.Suite(ref.Archive, ref.Suite)
	if !ok {
		return nil
	}
	locked, err := time.Parse(time.RFC3339, ls.Date)
	if err != nil {
		return fmt.Errorf("suite %s: previous lock's date: %w", ref, err)
	}
	if rel.Date.Before(locked) {
		return &DowngradeError{Suite: ref, Reason: fmt.Sprintf("Release is dated %s, older than the %s the current lock was made from", rel.Date.Format(time.RFC3339), ls.Date)}
	}
	return nil
}

// DowngradeError is a Release refused by CheckReleaseDate.
type DowngradeError struct {
	Suite  SuiteRef
	Reason string
}

func (e *DowngradeError) Error() string {
	return fmt.Sprintf("suite %s: %s; a mirror may be replaying old metadata (pass --allow-downgrade %s to accept it on purpose)", e.Suite, e.Reason, e.Suite.Suite)
}
