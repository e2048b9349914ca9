package auth_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pulse-sidecar/pulse-sidecar/internal/auth"
)

// testKeys are generated once per test binary: RSA generation takes a
// noticeable time on a loaded machine, and every test needs the same kinds.
type testKeys struct {
	rsa, rsa2       *rsa.PrivateKey
	ec256, ec256b   *ecdsa.PrivateKey
	ec384, ec384b   *ecdsa.PrivateKey
	ed, ed2         ed25519.PrivateKey
	secret, secret2 []byte
}

var (
	keysOnce sync.Once
	keys     testKeys
)

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func getKeys() *testKeys {
	keysOnce.Do(func() {
		keys.rsa = must(rsa.GenerateKey(rand.Reader, 2048))
		keys.rsa2 = must(rsa.GenerateKey(rand.Reader, 2048))
		keys.ec256 = must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
		keys.ec256b = must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
		keys.ec384 = must(ecdsa.GenerateKey(elliptic.P384(), rand.Reader))
		keys.ec384b = must(ecdsa.GenerateKey(elliptic.P384(), rand.Reader))
		_, keys.ed = must2(ed25519.GenerateKey(rand.Reader))
		_, keys.ed2 = must2(ed25519.GenerateKey(rand.Reader))
		keys.secret = make([]byte, 64)
		keys.secret2 = make([]byte, 64)
		rand.Read(keys.secret)
		rand.Read(keys.secret2)
	})
	return &keys
}

func must2[A, B any](a A, b B, err error) (A, B) {
	if err != nil {
		panic(err)
	}
	return a, b
}

func pubPEM(t testing.TB, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func writeFile(t *testing.T, data ...[]byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(p, bytes.Join(data, nil), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func sign(t *testing.T, m jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func request(query, authorization string) *http.Request {
	target := "/"
	if query != "" {
		target += "?" + auth.QueryParam + "=" + url.QueryEscape(query)
	}
	r := httptest.NewRequest(http.MethodGet, target, nil)
	r.RemoteAddr = "192.0.2.7:40000"
	if authorization != "" {
		r.Header.Set("Authorization", authorization)
	}
	return r
}

func newVerifier(t *testing.T, cfg auth.Config) *auth.Verifier {
	t.Helper()
	v, err := auth.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// reasonOf returns the refusal's reason, or "" when the token was accepted.
func reasonOf(t *testing.T, err error) auth.Reason {
	t.Helper()
	if err == nil {
		return ""
	}
	var ae *auth.Error
	if !errors.As(err, &ae) {
		t.Fatalf("Check returned %T %v, want *auth.Error", err, err)
	}
	return ae.Reason
}

// kind is one way of configuring keys: the file, the algorithm and key a
// legitimate issuer signs with, and a key of the same type that must not
// verify.
type kind struct {
	name    string
	method  jwt.SigningMethod
	key     any // signs
	other   any // same type, not configured
	pub     []byte
	secret  bool
	foreign jwt.SigningMethod // an algorithm of another key type...
	fkey    any               // ...and its key
}

func kinds(t testing.TB) []kind {
	k := getKeys()
	return []kind{
		{name: "RS256", method: jwt.SigningMethodRS256, key: k.rsa, other: k.rsa2, pub: pubPEM(t, &k.rsa.PublicKey), foreign: jwt.SigningMethodEdDSA, fkey: k.ed},
		{name: "RS512", method: jwt.SigningMethodRS512, key: k.rsa, other: k.rsa2, pub: pubPEM(t, &k.rsa.PublicKey), foreign: jwt.SigningMethodES256, fkey: k.ec256},
		{name: "PS256", method: jwt.SigningMethodPS256, key: k.rsa, other: k.rsa2, pub: pubPEM(t, &k.rsa.PublicKey), foreign: jwt.SigningMethodEdDSA, fkey: k.ed},
		{name: "ES256", method: jwt.SigningMethodES256, key: k.ec256, other: k.ec256b, pub: pubPEM(t, &k.ec256.PublicKey), foreign: jwt.SigningMethodES384, fkey: k.ec384},
		{name: "ES384", method: jwt.SigningMethodES384, key: k.ec384, other: k.ec384b, pub: pubPEM(t, &k.ec384.PublicKey), foreign: jwt.SigningMethodES256, fkey: k.ec256},
		{name: "EdDSA", method: jwt.SigningMethodEdDSA, key: k.ed, other: k.ed2, pub: pubPEM(t, k.ed.Public()), foreign: jwt.SigningMethodRS256, fkey: k.rsa},
		{name: "HS256", method: jwt.SigningMethodHS256, key: k.secret, other: k.secret2, secret: true, foreign: jwt.SigningMethodRS256, fkey: k.rsa},
		{name: "HS512", method: jwt.SigningMethodHS512, key: k.secret, other: k.secret2, secret: true, foreign: jwt.SigningMethodEdDSA, fkey: k.ed},
	}
}

func (k kind) config(t *testing.T) auth.Config {
	if k.secret {
		// One trailing newline, as `echo` leaves it: stripped.
		return auth.Config{SecretFile: writeFile(t, k.key.([]byte), []byte("\n")), Leeway: auth.DefaultLeeway}
	}
	return auth.Config{KeyFile: writeFile(t, k.pub), Leeway: auth.DefaultLeeway}
}

func TestKeyTypes(t *testing.T) {
	for _, k := range kinds(t) {
		t.Run(k.name, func(t *testing.T) {
			var logBuf bytes.Buffer
			cfg := k.config(t)
			cfg.Log = slog.New(slog.NewTextHandler(&logBuf, nil))
			v := newVerifier(t, cfg)
			now := time.Now()
			future := now.Add(5 * time.Minute).Unix()
			cases := []struct {
				name  string
				token string
				want  auth.Reason
			}{
				{"valid", sign(t, k.method, k.key, jwt.MapClaims{"exp": future, "sub": "alice"}), ""},
				{"expired", sign(t, k.method, k.key, jwt.MapClaims{"exp": now.Add(-2 * time.Minute).Unix()}), auth.Expired},
				{"expired within leeway", sign(t, k.method, k.key, jwt.MapClaims{"exp": now.Add(-10 * time.Second).Unix()}), ""},
				{"missing exp", sign(t, k.method, k.key, jwt.MapClaims{"sub": "alice"}), auth.Claims},
				{"exp not a number", sign(t, k.method, k.key, jwt.MapClaims{"exp": "tomorrow"}), auth.Claims},
				{"nbf beyond leeway", sign(t, k.method, k.key, jwt.MapClaims{"exp": future, "nbf": now.Add(2 * time.Minute).Unix()}), auth.NotYetValid},
				{"nbf within leeway", sign(t, k.method, k.key, jwt.MapClaims{"exp": future, "nbf": now.Add(10 * time.Second).Unix()}), ""},
				{"iat beyond leeway", sign(t, k.method, k.key, jwt.MapClaims{"exp": future, "iat": now.Add(2 * time.Minute).Unix()}), auth.NotYetValid},
				{"iat within leeway", sign(t, k.method, k.key, jwt.MapClaims{"exp": future, "iat": now.Add(10 * time.Second).Unix()}), ""},
				{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, jwt.MapClaims{"exp": future}), auth.Signature},
				{"another key", sign(t, k.method, k.other, jwt.MapClaims{"exp": future}), auth.Signature},
				{"key of another type", sign(t, k.foreign, k.fkey, jwt.MapClaims{"exp": future}), auth.Signature},
				{"tampered payload", tamper(t, sign(t, k.method, k.key, jwt.MapClaims{"exp": future, "sub": "alice"})), auth.Signature},
				{"unknown alg", withAlg(t, sign(t, k.method, k.key, jwt.MapClaims{"exp": future}), "XS999"), auth.Signature},
				{"two segments", "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjF9", auth.Malformed},
				{"not base64", "!!!.???.###", auth.Malformed},
				{"none", "", auth.Missing},
			}
			if !k.secret {
				// The classic confusion: HS256 keyed with the public key's
				// PEM text, which any verifier that lets the header pick
				// the algorithm would accept.
				cases = append(cases, struct {
					name  string
					token string
					want  auth.Reason
				}{"HMAC keyed with the public key", sign(t, jwt.SigningMethodHS256, k.pub, jwt.MapClaims{"exp": future}), auth.Signature})
			}
			for _, c := range cases {
				err := v.Check(request(c.token, ""), "speaker")
				if got := reasonOf(t, err); got != c.want {
					t.Errorf("%s: got reason %q (%v), want %q", c.name, got, err, c.want)
				}
				if err != nil && c.token != "" {
					assertNoToken(t, c.name+": Error()", err.Error(), c.token)
				}
			}
			for _, c := range cases {
				if c.token != "" {
					assertNoToken(t, c.name+": log", logBuf.String(), c.token)
				}
			}
		})
	}
}

// assertNoToken fails when text holds the token or any of its segments
// long enough to identify it (the signature above all).
func assertNoToken(t *testing.T, what, text, token string) {
	t.Helper()
	if strings.Contains(text, token) {
		t.Errorf("%s contains the token", what)
		return
	}
	for i, seg := range strings.Split(token, ".") {
		if len(seg) >= 8 && strings.Contains(text, seg) {
			t.Errorf("%s contains segment %d of the token", what, i)
		}
	}
}

// tamper changes the payload of a signed token (sub: alice -> mallory)
// and keeps the signature.
func tamper(t *testing.T, token string) string {
	parts := strings.Split(token, ".")
	parts[1] = reencode(t, parts[1], func(m map[string]any) { m["sub"] = "mallory" })
	return strings.Join(parts, ".")
}

func withAlg(t *testing.T, token, alg string) string {
	parts := strings.Split(token, ".")
	parts[0] = reencode(t, parts[0], func(m map[string]any) { m["alg"] = alg })
	return strings.Join(parts, ".")
}

func reencode(t *testing.T, seg string, edit func(map[string]any)) string {
	t.Helper()
	raw, err := jwt.NewParser().DecodeSegment(seg)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]any{}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(out)
}

func TestTokenSources(t *testing.T) {
	k := getKeys()
	v := newVerifier(t, auth.Config{KeyFile: writeFile(t, pubPEM(t, k.ed.Public())), Leeway: auth.DefaultLeeway})
	good := sign(t, jwt.SigningMethodEdDSA, k.ed, jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix()})
	bad := sign(t, jwt.SigningMethodEdDSA, k.ed2, jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix()})
	for _, c := range []struct {
		name, query, header string
		want                auth.Reason
	}{
		{"query", good, "", ""},
		{"bearer header", "", "Bearer " + good, ""},
		{"bearer scheme in lower case", "", "bearer " + good, ""},
		{"query wins over a bad header", good, "Bearer " + bad, ""},
		{"a bad query is not rescued by a good header", bad, "Bearer " + good, auth.Signature},
		{"garbage query with a good header", "x.y", "Bearer " + good, auth.Malformed},
		{"basic auth is no token", "", "Basic YWxpY2U6c2VjcmV0", auth.Missing},
		{"bearer without a token", "", "Bearer ", auth.Missing},
		{"nothing", "", "", auth.Missing},
	} {
		if got := reasonOf(t, v.Check(request(c.query, c.header), "microphone")); got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}
	// An empty jwt_token= is absent: the header is used.
	r := httptest.NewRequest(http.MethodGet, "/?jwt_token=", nil)
	r.Header.Set("Authorization", "Bearer "+good)
	if err := v.Check(r, "speaker"); err != nil {
		t.Errorf("empty jwt_token with a good bearer header: %v", err)
	}
}

func TestAudienceIssuer(t *testing.T) {
	k := getKeys()
	v := newVerifier(t, auth.Config{
		KeyFile: writeFile(t, pubPEM(t, &k.ec256.PublicKey)), Leeway: auth.DefaultLeeway,
		Audience: "pulse-sidecar", Issuer: "https://abcdesktop.example",
	})
	exp := time.Now().Add(time.Hour).Unix()
	for _, c := range []struct {
		name   string
		claims jwt.MapClaims
		want   auth.Reason
	}{
		{"both match", jwt.MapClaims{"exp": exp, "aud": "pulse-sidecar", "iss": "https://abcdesktop.example"}, ""},
		{"audience among several", jwt.MapClaims{"exp": exp, "aud": []string{"other", "pulse-sidecar"}, "iss": "https://abcdesktop.example"}, ""},
		{"audience mismatch", jwt.MapClaims{"exp": exp, "aud": "other", "iss": "https://abcdesktop.example"}, auth.Claims},
		{"audience missing", jwt.MapClaims{"exp": exp, "iss": "https://abcdesktop.example"}, auth.Claims},
		{"issuer mismatch", jwt.MapClaims{"exp": exp, "aud": "pulse-sidecar", "iss": "https://evil.example"}, auth.Claims},
		{"issuer missing", jwt.MapClaims{"exp": exp, "aud": "pulse-sidecar"}, auth.Claims},
	} {
		tok := sign(t, jwt.SigningMethodES256, k.ec256, c.claims)
		if got := reasonOf(t, v.Check(request(tok, ""), "speaker")); got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}
}

func TestRequiredClaims(t *testing.T) {
	k := getKeys()
	v := newVerifier(t, auth.Config{
		KeyFile: writeFile(t, pubPEM(t, &k.rsa.PublicKey)), Leeway: auth.DefaultLeeway,
		RequireClaims: map[string]string{"userid": "alice", "uid": "1000", "desktop": "true"},
	})
	exp := time.Now().Add(time.Hour).Unix()
	base := func(edit func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{"exp": exp, "userid": "alice", "uid": 1000, "desktop": true}
		edit(c)
		return c
	}
	for _, c := range []struct {
		name   string
		claims jwt.MapClaims
		want   auth.Reason
	}{
		{"all match", base(func(jwt.MapClaims) {}), ""},
		{"number as a string matches", base(func(c jwt.MapClaims) { c["uid"] = "1000" }), ""},
		{"boolean as a string matches", base(func(c jwt.MapClaims) { c["desktop"] = "true" }), ""},
		{"another user", base(func(c jwt.MapClaims) { c["userid"] = "bob" }), auth.Claims},
		{"case differs", base(func(c jwt.MapClaims) { c["userid"] = "Alice" }), auth.Claims},
		{"missing", base(func(c jwt.MapClaims) { delete(c, "userid") }), auth.Claims},
		{"array holding the value", base(func(c jwt.MapClaims) { c["userid"] = []string{"alice"} }), auth.Claims},
		{"null", base(func(c jwt.MapClaims) { c["userid"] = nil }), auth.Claims},
		{"number written otherwise", base(func(c jwt.MapClaims) { c["uid"] = json.Number("1e3") }), auth.Claims},
		{"number with a fraction", base(func(c jwt.MapClaims) { c["uid"] = 1000.5 }), auth.Claims},
		{"boolean false", base(func(c jwt.MapClaims) { c["desktop"] = false }), auth.Claims},
	} {
		tok := sign(t, jwt.SigningMethodRS256, k.rsa, c.claims)
		err := v.Check(request(tok, ""), "microphone")
		if got := reasonOf(t, err); got != c.want {
			t.Errorf("%s: got %q (%v), want %q", c.name, got, err, c.want)
		}
		if err != nil && (strings.Contains(err.Error(), "bob") || strings.Contains(err.Error(), "alice")) {
			t.Errorf("%s: error text %q carries a claim value", c.name, err)
		}
	}
}

func TestRotationFileHoldsSeveralKeys(t *testing.T) {
	k := getKeys()
	v := newVerifier(t, auth.Config{
		KeyFile: writeFile(t, pubPEM(t, &k.rsa.PublicKey), []byte("\n"), pubPEM(t, k.ed.Public()), pubPEM(t, &k.rsa2.PublicKey)),
	})
	exp := jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix()}
	for _, c := range []struct {
		name string
		tok  string
	}{
		{"first RSA key", sign(t, jwt.SigningMethodRS256, k.rsa, exp)},
		{"second RSA key", sign(t, jwt.SigningMethodPS384, k.rsa2, exp)},
		{"Ed25519 key", sign(t, jwt.SigningMethodEdDSA, k.ed, exp)},
	} {
		if err := v.Check(request(c.tok, ""), "speaker"); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	if got := reasonOf(t, v.Check(request(sign(t, jwt.SigningMethodEdDSA, k.ed2, exp), ""), "speaker")); got != auth.Signature {
		t.Errorf("unlisted key: got %q, want signature", got)
	}
}

func TestBadFilesFailNew(t *testing.T) {
	k := getKeys()
	weak := must(rsa.GenerateKey(rand.Reader, 1024))
	p521 := must(ecdsa.GenerateKey(elliptic.P521(), rand.Reader))
	x25519 := must(ecdh.X25519().GenerateKey(rand.Reader))
	pkcs8 := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: must(x509.MarshalPKCS8PrivateKey(k.ed))})
	pkcs1Pub := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&k.rsa.PublicKey)})
	good := pubPEM(t, k.ed.Public())
	for _, c := range []struct {
		name   string
		data   []byte
		secret bool
		want   string // besides the path
	}{
		{"no PEM", []byte("this is not a key\n"), false, "no PEM block"},
		{"empty", nil, false, "no PEM block"},
		{"private key", pkcs8, false, "private key"},
		{"private key after a good one", append(bytes.Clone(good), pkcs8...), false, "PEM block 2"},
		{"PKCS#1 RSA public key", pkcs1Pub, false, `want "PUBLIC KEY"`},
		{"RSA 1024", pubPEM(t, &weak.PublicKey), false, "1024 bits"},
		{"P-521", pubPEM(t, &p521.PublicKey), false, "P-521"},
		{"X25519", pubPEM(t, x25519.PublicKey()), false, "cannot verify"},
		{"truncated second block", append(bytes.Clone(good), good[:40]...), false, "not a whole PEM block"},
		{"short secret", []byte("hunter2\n"), true, "7 bytes"},
		{"empty secret", []byte("\n"), true, "0 bytes"},
		{"public key as secret", append(bytes.Clone(good), bytes.Repeat([]byte("x"), 64)...), true, "PEM"},
	} {
		p := writeFile(t, c.data)
		cfg := auth.Config{KeyFile: p}
		if c.secret {
			cfg = auth.Config{SecretFile: p}
		}
		v, err := auth.New(cfg)
		if err == nil {
			t.Errorf("%s: New accepted it (%v)", c.name, v)
			continue
		}
		if !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q, want the path and %q", c.name, err, c.want)
		}
		if c.secret && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: error %q shows the secret", c.name, err)
		}
	}
	missing := filepath.Join(t.TempDir(), "absent.pem")
	if _, err := auth.New(auth.Config{KeyFile: missing}); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := auth.New(auth.Config{KeyFile: writeFile(t, good), SecretFile: writeFile(t, k.secret)}); err == nil {
		t.Error("both files: accepted")
	}
	if _, err := auth.New(auth.Config{}); err == nil {
		t.Error("no file: accepted")
	}
	if _, err := auth.New(auth.Config{KeyFile: writeFile(t, good), Leeway: -time.Second}); err == nil {
		t.Error("negative leeway: accepted")
	}
}

// A 32-byte secret enables HS256 only: HS384 and HS512 need a secret as
// long as their hash.
func TestSecretLengthChoosesAlgorithms(t *testing.T) {
	secret := bytes.Repeat([]byte("k"), 32)
	v := newVerifier(t, auth.Config{SecretFile: writeFile(t, secret)})
	exp := jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix()}
	if err := v.Check(request(sign(t, jwt.SigningMethodHS256, secret, exp), ""), "speaker"); err != nil {
		t.Errorf("HS256: %v", err)
	}
	if got := reasonOf(t, v.Check(request(sign(t, jwt.SigningMethodHS512, secret, exp), ""), "speaker")); got != auth.Signature {
		t.Errorf("HS512 with a 32-byte secret: got %q, want signature", got)
	}
}

func TestMetricCountsPerServiceAndReason(t *testing.T) {
	k := getKeys()
	reg := prometheus.NewRegistry()
	v := newVerifier(t, auth.Config{KeyFile: writeFile(t, pubPEM(t, k.ed.Public())), Registerer: reg})
	expired := sign(t, jwt.SigningMethodEdDSA, k.ed, jwt.MapClaims{"exp": time.Now().Add(-time.Hour).Unix()})
	good := sign(t, jwt.SigningMethodEdDSA, k.ed, jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix()})
	v.Check(request("", ""), "speaker")
	v.Check(request("", ""), "speaker")
	v.Check(request(expired, ""), "microphone")
	v.Check(request("a.b", ""), "speaker")
	v.Check(request(good, ""), "speaker")
	want := `
# HELP pulse_sidecar_auth_refused_total Websocket requests refused for their token, by service and reason.
# TYPE pulse_sidecar_auth_refused_total counter
pulse_sidecar_auth_refused_total{reason="expired",service="microphone"} 1
pulse_sidecar_auth_refused_total{reason="malformed",service="speaker"} 1
pulse_sidecar_auth_refused_total{reason="missing",service="speaker"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "pulse_sidecar_auth_refused_total"); err != nil {
		t.Error(err)
	}
	if _, err := auth.New(auth.Config{KeyFile: writeFile(t, pubPEM(t, k.ed.Public())), Registerer: reg}); err == nil {
		t.Error("registering the counter twice in one registry: accepted")
	}
}

func TestRefuseOverHTTP(t *testing.T) {
	k := getKeys()
	v := newVerifier(t, auth.Config{KeyFile: writeFile(t, pubPEM(t, k.ed.Public()))})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := v.Check(r, "speaker"); err != nil {
			auth.Refuse(w)
			return
		}
		io.WriteString(w, "welcome")
	}))
	defer srv.Close()
	client := &http.Client{Timeout: 10 * time.Second}

	expired := sign(t, jwt.SigningMethodEdDSA, k.ed, jwt.MapClaims{"exp": time.Now().Add(-time.Hour).Unix()})
	resp, err := client.Get(srv.URL + "/?jwt_token=" + expired)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != "Bearer" || !resp.Close {
		t.Errorf("refusal: status %d, WWW-Authenticate %q, close %v", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), resp.Close)
	}
	if strings.Contains(strings.ToLower(string(body)), "expired") || len(body) > 64 {
		t.Errorf("refusal body says too much: %q", body)
	}

	good := sign(t, jwt.SigningMethodEdDSA, k.ed, jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix()})
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/", nil)
	req.Header.Set("Authorization", "Bearer "+good)
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "welcome" {
		t.Errorf("accepted request: status %d body %q", resp.StatusCode, body)
	}
}

func TestNilVerifierAcceptsEverything(t *testing.T) {
	var v *auth.Verifier
	if err := v.Check(request("", ""), "speaker"); err != nil {
		t.Errorf("nil verifier: %v", err)
	}
}

// replaceFile swaps the file's content atomically, as a careful operator or
// a configuration tool does.
func replaceFile(t *testing.T, path string, data ...[]byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, bytes.Join(data, nil), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// eventually polls cond for up to 10 s: Run polls every second, and the
// margin covers a loaded machine.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10 s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRunReloadsOnChange(t *testing.T) {
	k := getKeys()
	exp := jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix()}
	tokA := sign(t, jwt.SigningMethodRS256, k.rsa, exp)
	tokB := sign(t, jwt.SigningMethodES256, k.ec256, exp)
	pemA, pemB := pubPEM(t, &k.rsa.PublicKey), pubPEM(t, &k.ec256.PublicKey)

	// A Kubernetes Secret volume: the file is a link through ..data, and an
	// update swaps ..data to a new directory.
	dir := t.TempDir()
	writeVersion := func(name string, data ...[]byte) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "key.pem"), bytes.Join(data, nil), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(name, filepath.Join(dir, "..data_tmp")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	writeVersion("v1", pemA)
	keyFile := filepath.Join(dir, "key.pem")
	if err := os.Symlink(filepath.Join("..data", "key.pem"), keyFile); err != nil {
		t.Fatal(err)
	}

	var logBuf syncBuffer
	v := newVerifier(t, auth.Config{KeyFile: keyFile, Log: slog.New(slog.NewTextHandler(&logBuf, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return within 5 s of its context ending")
		}
	}()
	accepted := func(tok string) bool { return v.Check(request(tok, ""), "speaker") == nil }

	if !accepted(tokA) || accepted(tokB) {
		t.Fatal("before the rotation: want A accepted, B refused")
	}
	// Rotation, step 1: both keys (Secret volume update).
	writeVersion("v2", pemA, pemB)
	eventually(t, "new key B accepted after the Secret update", func() bool { return accepted(tokB) })
	if !accepted(tokA) {
		t.Error("old key A refused while still listed")
	}
	// Step 2: only B (a plain atomic rename over the link's target dir).
	replaceFile(t, filepath.Join(dir, "v2", "key.pem"), pemB)
	eventually(t, "old key A refused after the rotation away", func() bool { return !accepted(tokA) })
	if got := reasonOf(t, v.Check(request(tokA, ""), "speaker")); got != auth.Signature {
		t.Errorf("old token after rotation: %q, want signature", got)
	}
	if !accepted(tokB) {
		t.Error("key B refused after the rotation")
	}

	// A broken file keeps the keys in use, and Reload says why.
	weak := must(rsa.GenerateKey(rand.Reader, 1024))
	replaceFile(t, filepath.Join(dir, "v2", "key.pem"), pubPEM(t, &weak.PublicKey))
	eventually(t, "failed reload logged", func() bool { return strings.Contains(logBuf.String(), "reload failed") })
	if !accepted(tokB) {
		t.Error("key B refused after a broken file was written")
	}
	if err := v.Reload(); err == nil || !strings.Contains(err.Error(), keyFile) {
		t.Errorf("Reload of a broken file: %v, want an error naming %s", err, keyFile)
	}
	if n := strings.Count(logBuf.String(), "reload failed"); n != 2 {
		t.Errorf("failed reload logged %d times, want 2 (one by Run, one by Reload): a broken file is not retried every second", n)
	}
}

// Reload without Run: what SIGHUP does.
func TestReload(t *testing.T) {
	k := getKeys()
	exp := jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix()}
	p := writeFile(t, pubPEM(t, k.ed.Public()))
	v := newVerifier(t, auth.Config{KeyFile: p})
	tok2 := sign(t, jwt.SigningMethodEdDSA, k.ed2, exp)
	if v.Check(request(tok2, ""), "speaker") == nil {
		t.Fatal("token of an unlisted key accepted")
	}
	replaceFile(t, p, pubPEM(t, k.ed2.Public()))
	if err := v.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := v.Check(request(tok2, ""), "speaker"); err != nil {
		t.Errorf("after Reload: %v", err)
	}
	os.Remove(p)
	if err := v.Reload(); err == nil {
		t.Error("Reload of a missing file succeeded")
	}
	if err := v.Check(request(tok2, ""), "speaker"); err != nil {
		t.Errorf("after a failed Reload the keys in use must stay: %v", err)
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// BenchmarkCheck measures one Check per key type, the cost the
// authentication adds to each websocket open (the issue allows +0.5 ms).
//
//	go test -run '^$' -bench Check -benchmem ./internal/auth
func BenchmarkCheck(b *testing.B) {
	for _, k := range kinds(b) {
		if k.name == "RS512" || k.name == "HS512" {
			continue
		}
		b.Run(k.name, func(b *testing.B) {
			dir := b.TempDir()
			path := filepath.Join(dir, "key")
			cfg := auth.Config{KeyFile: path, Leeway: auth.DefaultLeeway}
			data := k.pub
			if k.secret {
				cfg = auth.Config{SecretFile: path, Leeway: auth.DefaultLeeway}
				data = k.key.([]byte)
			}
			if err := os.WriteFile(path, data, 0o600); err != nil {
				b.Fatal(err)
			}
			v, err := auth.New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			tok, err := jwt.NewWithClaims(k.method, jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix(), "userid": "alice"}).SignedString(k.key)
			if err != nil {
				b.Fatal(err)
			}
			r := request(tok, "")
			// CPU time per check besides wall time: on a shared, loaded
			// machine the wall time mostly measures waiting for a core.
			start := cpuTime()
			n := 0
			for b.Loop() {
				if err := v.Check(r, "speaker"); err != nil {
					b.Fatal(err)
				}
				n++
			}
			b.ReportMetric(float64(cpuTime()-start)/float64(n), "cpu-ns/op")
		})
	}
}
