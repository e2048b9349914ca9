package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
)

// Authentication on the websockets, through the real binary: tokens are
// checked before the upgrade on both ports, and no refused request, for
// its token or its format, costs the microphone's sender anything.
func TestDaemonWebsocketAuthentication(t *testing.T) {
	bin := buildDaemon(t)
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "jwt.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	sign := func(key ed25519.PrivateKey, claims jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	exp := time.Now().Add(time.Hour).Unix()
	good := sign(priv, jwt.MapClaims{"exp": exp, "userid": "alice"})
	bob := sign(priv, jwt.MapClaims{"exp": exp, "userid": "bob"})
	forged := sign(otherKey, jwt.MapClaims{"exp": exp, "userid": "alice"})
	expired := sign(priv, jwt.MapClaims{"exp": time.Now().Add(-time.Hour).Unix(), "userid": "alice"})

	d := startDaemon(t, bin, []string{"--auth-jwt-key", keyFile, "--auth-require-claim", "userid=alice"}, nil)

	dial := func(addr, query string, h http.Header) (*websocket.Conn, *http.Response, error) {
		return websocket.DefaultDialer.Dial("ws://"+addr+"/?"+query, h)
	}
	token := func(s string) string { return "jwt_token=" + url.QueryEscape(s) }

	t.Run("valid token opens both ports", func(t *testing.T) {
		for _, addr := range []string{d.speaker, d.mic} {
			c, _, err := dial(addr, token(good), nil)
			if err != nil {
				t.Fatalf("%s: %v", addr, err)
			}
			c.Close()
		}
	})
	t.Run("Authorization: Bearer works without the query parameter", func(t *testing.T) {
		c, _, err := dial(d.speaker, "", http.Header{"Authorization": {"Bearer " + good}})
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	})
	t.Run("missing, forged, expired or another user's token: 401 before the upgrade", func(t *testing.T) {
		for name, q := range map[string]string{
			"missing": "", "forged": token(forged), "expired": token(expired), "another user": token(bob), "garbage": "jwt_token=abc",
		} {
			for _, addr := range []string{d.speaker, d.mic} {
				c, resp, err := dial(addr, q, nil)
				if err == nil {
					c.Close()
					t.Errorf("%s token on %s: upgraded", name, addr)
					continue
				}
				if resp == nil || resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != "Bearer" {
					t.Errorf("%s token on %s: %v (%v), want 401 with WWW-Authenticate: Bearer", name, addr, err, resp)
				}
			}
		}
		if got := d.metric(`pulse_sidecar_auth_refused_total{reason="missing",service="speaker"}`); got != 1 {
			t.Errorf(`auth_refused_total{reason="missing",service="speaker"} = %v, want 1`, got)
		}
	})
	t.Run("a refused request never evicts the microphone's sender", func(t *testing.T) {
		sender, _, err := dial(d.mic, token(good), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer sender.Close()
		waitFor(t, 10*time.Second, "the sender", func() bool { return d.metric("pulse_sidecar_microphone_senders") == 1 })
		for _, q := range []string{"", token(forged), token(bob), token(good) + "&rate=1", token(good) + "&channels=8", "rate=1"} {
			if c, _, err := dial(d.mic, q, nil); err == nil {
				c.Close()
				t.Errorf("%.30s: admitted", q)
			}
		}
		if err := sender.WriteMessage(websocket.BinaryMessage, make([]byte, 512)); err != nil {
			t.Errorf("sender after refused requests: %v", err)
		}
		if got := d.metric("pulse_sidecar_microphone_senders_replaced_total"); got != 0 {
			t.Errorf("senders_replaced_total %v after refused requests, want 0", got)
		}
		// A holder of a valid token takes it over.
		next, _, err := dial(d.mic, token(good), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer next.Close()
		if code := micCloseCode(sender, 5*time.Second); code != 4001 {
			t.Errorf("replaced sender: close %d, want 4001", code)
		}
	})
}
