package auth

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// minRSABits follows NIST SP 800-57: below 2048 bits RSA is breakable by
// a well-funded attacker, and a token forged that way opens the microphone.
const minRSABits = 2048

// maxKeyFile bounds what a key file may hold: a few dozen PEM keys fit in
// far less, and a wrong path (a log, a device) must not be read whole.
const maxKeyFile = 1 << 20

// keySet is what one read of the key or secret file yields. It is never
// modified after parseKeys; a reload replaces it whole.
type keySet struct {
	// byAlg lists, for each accepted algorithm, the keys that may verify it.
	// Only keys whose type fits the algorithm are in a list: this is what
	// keeps an RS256 key from verifying an HS256 token.
	byAlg map[string]jwt.VerificationKeySet
	algs  []string // the keys of byAlg, in a stable order for the parser
	sum   [sha256.Size]byte
	desc  string // what was loaded, for the log: "2 keys: RSA-2048, Ed25519"
}

var (
	rsaAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	// hmacAlgs is ordered by hash size; a secret shorter than the hash
	// does not enable that algorithm (RFC 7518 section 3.2).
	hmacAlgs = []struct {
		alg  string
		size int
	}{{"HS256", 32}, {"HS384", 48}, {"HS512", 64}}
)

func (ks *keySet) add(alg string, key jwt.VerificationKey) {
	set, ok := ks.byAlg[alg]
	if !ok {
		ks.algs = append(ks.algs, alg)
	}
	set.Keys = append(set.Keys, key)
	ks.byAlg[alg] = set
}

// readLimited reads path, refusing files larger than maxKeyFile.
func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("%s: larger than %d bytes, not a key file", path, maxKeyFile)
	}
	return data, nil
}

// parsePublicKeys reads one or more PEM "PUBLIC KEY" blocks. Anything else
// is an error naming the file: a private key in a public key's place, a
// weak RSA key, an unsupported curve, or trailing bytes that are not a
// whole PEM block (a half-written file during a rotation).
func parsePublicKeys(path string, data []byte) (*keySet, error) {
	ks := &keySet{byAlg: map[string]jwt.VerificationKeySet{}, sum: sha256.Sum256(data)}
	rest := data
	var kinds []string
	for n := 1; ; n++ {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "PUBLIC KEY" {
			hint := ""
			if strings.Contains(block.Type, "PRIVATE") {
				hint = ": a private key does not belong here, give its public half (openssl pkey -pubout)"
			}
			return nil, fmt.Errorf("%s: PEM block %d is %q, want \"PUBLIC KEY\"%s", path, n, block.Type, hint)
		}
		pub, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: PEM block %d: %w", path, n, err)
		}
		switch k := pub.(type) {
		case *rsa.PublicKey:
			if bits := k.N.BitLen(); bits < minRSABits {
				return nil, fmt.Errorf("%s: PEM block %d: RSA key of %d bits, want at least %d", path, n, bits, minRSABits)
			}
			for _, alg := range rsaAlgs {
				ks.add(alg, k)
			}
			kinds = append(kinds, fmt.Sprintf("RSA-%d", k.N.BitLen()))
		case *ecdsa.PublicKey:
			switch k.Curve {
			case elliptic.P256():
				ks.add("ES256", k)
			case elliptic.P384():
				ks.add("ES384", k)
			default:
				return nil, fmt.Errorf("%s: PEM block %d: ECDSA curve %s, want P-256 (ES256) or P-384 (ES384)", path, n, k.Curve.Params().Name)
			}
			kinds = append(kinds, "ECDSA-"+k.Curve.Params().Name)
		case ed25519.PublicKey:
			ks.add("EdDSA", k)
			kinds = append(kinds, "Ed25519")
		default:
			return nil, fmt.Errorf("%s: PEM block %d: %T keys cannot verify JWTs here; want RSA, ECDSA P-256/P-384 or Ed25519", path, n, pub)
		}
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		if len(kinds) == 0 {
			return nil, fmt.Errorf("%s: no PEM block found, want one or more \"PUBLIC KEY\" blocks", path)
		}
		return nil, fmt.Errorf("%s: bytes after PEM block %d are not a whole PEM block", path, len(kinds))
	}
	if len(kinds) == 0 {
		return nil, fmt.Errorf("%s: no PEM block found, want one or more \"PUBLIC KEY\" blocks", path)
	}
	ks.desc = fmt.Sprintf("%d key(s): %s", len(kinds), strings.Join(kinds, ", "))
	return ks, nil
}

// parseSecret takes the file's bytes as the HMAC secret, without one
// trailing newline (what echo and most editors add).
func parseSecret(path string, data []byte) (*keySet, error) {
	ks := &keySet{byAlg: map[string]jwt.VerificationKeySet{}, sum: sha256.Sum256(data)}
	secret := bytes.TrimSuffix(data, []byte("\n"))
	if len(secret) < hmacAlgs[0].size {
		// Never the secret's content, only its length.
		return nil, fmt.Errorf("%s: secret of %d bytes, want at least %d (RFC 7518: as long as the HS256 hash)", path, len(secret), hmacAlgs[0].size)
	}
	if bytes.HasPrefix(bytes.TrimSpace(secret), []byte("-----BEGIN")) {
		return nil, fmt.Errorf("%s: holds a PEM block; a public key goes to --auth-jwt-key, not the secret file", path)
	}
	key := bytes.Clone(secret)
	for _, h := range hmacAlgs {
		if len(secret) >= h.size {
			ks.add(h.alg, key)
		}
	}
	ks.desc = fmt.Sprintf("HMAC secret of %d bytes: %s", len(secret), strings.Join(ks.algs, ", "))
	return ks, nil
}

// keyFunc hands the parser the keys of the token's algorithm. The parser
// has already refused algorithms outside ks.algs (WithValidMethods); the
// lookup by algorithm is the second guard, so a key is never tried with
// an algorithm of another key type.
func (ks *keySet) keyFunc(t *jwt.Token) (any, error) {
	set := ks.byAlg[t.Method.Alg()]
	if len(set.Keys) == 0 {
		return nil, fmt.Errorf("no key for algorithm %q", t.Method.Alg())
	}
	return set, nil
}
