// Package auth decides whether a websocket request carries a valid JWT.
//
// Threat model: the relays listen on the pod IP, so anything in the cluster
// network can reach them, not only abcdesktop's router. A valid token proves
// that its holder got it from the issuer; with RequireClaims it also proves
// the token was issued for this desktop's user, so a valid token of another
// user opens nothing here.
//
// What is accepted follows from the configured keys only, never from the
// token's header: an RSA key (>= 2048 bits) verifies RS256/384/512 and
// PS256/384/512, an ECDSA P-256 key ES256, a P-384 key ES384, an Ed25519 key
// EdDSA, and a secret HS256/384/512 (each only when the secret is at least
// as long as the hash, RFC 7518 section 3.2). So "alg": "none" and an HMAC
// token signed with the public key's bytes (the classic confusion) are
// refused: no HMAC algorithm is accepted when the keys are public keys, and
// the key function hands each algorithm only keys of its own type.
//
// exp is required; nbf and iat are honoured with Config.Leeway; aud and iss
// must match when configured. A missing exp is reported as Claims (the
// token is not expired, it is unacceptable), an iat in the future as
// NotYetValid.
//
// Tokens are checked when a connection opens, and only then: an open
// connection is not cut when its token's exp passes. A client that
// reconnects with the expired token gets 401 and must fetch a new one.
//
// Files are watched (Run) and re-read on change or on Reload (SIGHUP), so a
// key can be rotated without a restart: during a rotation put both keys in
// the file, then remove the old one.
//
// The library is github.com/golang-jwt/jwt/v5: parsing, signature
// verification and the registered-claim checks are its; this package only
// chooses keys and algorithms, maps its errors to Reasons, and compares the
// required claims.
package auth
