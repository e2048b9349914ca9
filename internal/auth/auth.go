package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultLeeway is the --auth-leeway default: clocks in a cluster drift by
// seconds, and a token refused for a skew of 2 s makes a user's audio fail
// for no reason an operator can see.
const DefaultLeeway = 30 * time.Second

// QueryParam is where abcdesktop's web client puts the token on websocket
// URLs (browsers cannot set headers on a websocket request).
const QueryParam = "jwt_token"

// Reason says why a token was refused; it is the value of the metric's
// reason label, so the set is fixed.
type Reason string

const (
	Missing     Reason = "missing"       // no token in the query or the Authorization header
	Malformed   Reason = "malformed"     // not three base64url JSON segments
	Signature   Reason = "signature"     // algorithm not accepted for the keys, or no key verifies it
	Expired     Reason = "expired"       // exp passed (beyond the leeway)
	NotYetValid Reason = "not_yet_valid" // nbf or iat in the future (beyond the leeway)
	Claims      Reason = "claims"        // exp missing, aud, iss or a required claim absent or different
)

// Error is a refusal. Its text is built from the library's error strings
// and claim names only: it never contains the token, its signature or a
// claim's value.
type Error struct {
	Reason Reason
	Err    error
}

func (e *Error) Error() string { return "token refused (" + string(e.Reason) + "): " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Config configures a Verifier. Exactly one of KeyFile and SecretFile is
// set; a nil *Verifier is how callers say "no authentication".
type Config struct {
	KeyFile    string        // PEM "PUBLIC KEY" block(s); several = rotation, any may verify
	SecretFile string        // HMAC secret: the raw bytes, one trailing newline stripped
	Leeway     time.Duration // clock skew allowed for exp, nbf and iat; zero is none (the flag defaults to DefaultLeeway)
	Audience   string        // when set, aud must contain it
	Issuer     string        // when set, iss must equal it

	// RequireClaims lists claims that must be present and equal to the
	// value. A string claim is compared as is; a number or boolean claim by
	// its JSON text (so userid=1000 matches "userid": 1000 but not 1e3 or
	// 1000.0); arrays, objects and null never match.
	RequireClaims map[string]string

	Log        *slog.Logger          // nil: discard
	Registerer prometheus.Registerer // nil: the counter is kept but not exported
	Now        func() time.Time      // nil: time.Now
}

// Verifier checks tokens against the keys of one file. It is safe for
// concurrent use; Reload swaps the keys atomically.
type Verifier struct {
	path    string
	secret  bool
	opts    []jwt.ParserOption
	require []claim
	log     *slog.Logger
	refused *prometheus.CounterVec

	keys     atomic.Pointer[loaded]
	reloadMu sync.Mutex // one Reload at a time, so the newest read wins
}

type claim struct{ name, value string }

// loaded is one read of the file and the parser made for its keys.
type loaded struct {
	ks     *keySet
	parser *jwt.Parser
}

// New reads the key or secret file. A file that cannot be used (missing,
// no PEM block, a private key, RSA below 2048 bits, an unsupported curve, a
// short secret) is an error naming it, so a wrong deployment fails at
// start instead of refusing every user.
func New(cfg Config) (*Verifier, error) {
	switch {
	case cfg.KeyFile != "" && cfg.SecretFile != "":
		return nil, errors.New("auth: a key file and a secret file are both set; give one")
	case cfg.KeyFile == "" && cfg.SecretFile == "":
		return nil, errors.New("auth: neither a key file nor a secret file is set")
	case cfg.Leeway < 0:
		return nil, fmt.Errorf("auth: leeway %s is negative", cfg.Leeway)
	}
	v := &Verifier{path: cfg.KeyFile, log: cfg.Log}
	if cfg.SecretFile != "" {
		v.path, v.secret = cfg.SecretFile, true
	}
	if v.log == nil {
		v.log = slog.New(slog.DiscardHandler)
	}
	for name, value := range cfg.RequireClaims {
		if name == "" {
			return nil, errors.New("auth: a required claim has an empty name")
		}
		v.require = append(v.require, claim{name, value})
	}
	slices.SortFunc(v.require, func(a, b claim) int { return strings.Compare(a.name, b.name) })

	v.opts = []jwt.ParserOption{
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.Leeway),
		// Numbers stay as their JSON text, so a required claim compares
		// with what the issuer wrote, not with a float64's rendering.
		jwt.WithJSONNumber(),
	}
	if cfg.Audience != "" {
		v.opts = append(v.opts, jwt.WithAudience(cfg.Audience))
	}
	if cfg.Issuer != "" {
		v.opts = append(v.opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Now != nil {
		v.opts = append(v.opts, jwt.WithTimeFunc(cfg.Now))
	}

	v.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pulse_sidecar_auth_refused_total",
		Help: "Websocket requests refused for their token, by service and reason.",
	}, []string{"service", "reason"})
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(v.refused); err != nil {
			return nil, fmt.Errorf("auth: registering metrics: %w", err)
		}
	}

	l, err := v.load()
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	v.keys.Store(l)
	v.log.Info("auth: keys loaded", "file", v.path, "keys", l.ks.desc)
	return v, nil
}

// load reads and parses the file; it changes nothing in v.
func (v *Verifier) load() (*loaded, error) {
	data, err := readLimited(v.path)
	if err != nil {
		return nil, err
	}
	var ks *keySet
	if v.secret {
		ks, err = parseSecret(v.path, data)
	} else {
		ks, err = parsePublicKeys(v.path, data)
	}
	if err != nil {
		return nil, err
	}
	// WithValidMethods is the first guard against algorithm confusion: an
	// algorithm no loaded key can verify is refused before any key is
	// looked up.
	opts := append(slices.Clip(v.opts), jwt.WithValidMethods(ks.algs))
	return &loaded{ks: ks, parser: jwt.NewParser(opts...)}, nil
}

// Check verifies the token of r: the jwt_token query parameter, or, when
// that is absent or empty, "Authorization: Bearer TOKEN". nil means
// accepted. A refusal is an *Error, counted here by its Reason; its text
// never holds the token, so the caller may log it (the websocket layer does,
// rate-limited with its other refusals). A nil Verifier accepts
// everything: that is the unauthenticated configuration.
func (v *Verifier) Check(r *http.Request, service string) error {
	if v == nil {
		return nil
	}
	err := v.verify(tokenOf(r))
	if err == nil {
		return nil
	}
	v.refused.WithLabelValues(service, string(err.Reason)).Inc()
	return err
}

func tokenOf(r *http.Request) string {
	if t := r.URL.Query().Get(QueryParam); t != "" {
		return t
	}
	// The scheme is case-insensitive (RFC 7235 section 2.1).
	scheme, token, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	if ok && strings.EqualFold(scheme, "Bearer") {
		return strings.TrimSpace(token)
	}
	return ""
}

func (v *Verifier) verify(token string) *Error {
	if token == "" {
		return &Error{Missing, errors.New("no jwt_token query parameter and no Authorization: Bearer header")}
	}
	l := v.keys.Load()
	claims := jwt.MapClaims{}
	if _, err := l.parser.ParseWithClaims(token, claims, l.ks.keyFunc); err != nil {
		return &Error{reasonOf(err), err}
	}
	for _, c := range v.require {
		got, ok := claims[c.name]
		if !ok {
			return &Error{Claims, fmt.Errorf("required claim %q is missing", c.name)}
		}
		if text, ok := claimText(got); !ok || text != c.value {
			// The values stay out of the message: the token's is the
			// client's data, the expected one names this desktop's user.
			return &Error{Claims, fmt.Errorf("claim %q does not have the required value", c.name)}
		}
	}
	return nil
}

// claimText is the text a required claim's value is compared with: a
// string as is, a number or boolean as written in the token.
func claimText(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return x.String(), true
	case bool:
		if x {
			return "true", true
		}
		return "false", true
	}
	return "", false
}

// reasonOf maps jwt/v5's errors to a Reason. The order matters where a
// token has several faults: the structural ones first, then expired before
// not yet valid, then the claims.
func reasonOf(err error) Reason {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return Malformed
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		// Unverifiable: an alg the library does not know, or one with no
		// key here. Either way no key of ours signed it.
		return Signature
	case errors.Is(err, jwt.ErrTokenExpired):
		return Expired
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return NotYetValid
	default:
		// Missing exp (ErrTokenRequiredClaimMissing), aud, iss, or a
		// registered claim of the wrong JSON type.
		return Claims
	}
}

// Refuse writes the standard refusal: 401 with "WWW-Authenticate: Bearer"
// and nothing that says why (the reason is in the log and the metric, where
// the operator looks and an attacker cannot). The connection is closed
// afterwards so a refused client cannot keep it for other attempts.
func Refuse(w http.ResponseWriter) {
	h := w.Header()
	h.Set("WWW-Authenticate", "Bearer")
	h.Set("Connection", "close")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusUnauthorized)
	fmt.Fprintln(w, http.StatusText(http.StatusUnauthorized))
}
