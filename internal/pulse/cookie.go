package pulse

import (
	"bytes"
	"crypto/rand"
	"fmt"

	"github.com/pulse-sidecar/pulse-sidecar/internal/atomicfile"
)

// CookieLen is the size of PulseAudio's auth cookie.
const CookieLen = 256

// CookieBytes turns the 32-hex-character PULSEAUDIO_COOKIE into the 256-byte
// cookie: the value written 8 times as ASCII, without newline. Desktop
// containers build their cookie file the same way, so the bytes must match
// exactly (the case of the hex digits is kept). The error never contains the
// value: it is a secret.
func CookieBytes(hex32 string) ([]byte, error) {
	if len(hex32) != 32 {
		return nil, fmt.Errorf("PULSEAUDIO_COOKIE: want 32 hexadecimal characters, got %d characters", len(hex32))
	}
	for i := 0; i < len(hex32); i++ {
		c := hex32[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return nil, fmt.Errorf("PULSEAUDIO_COOKIE: character %d is not hexadecimal", i+1)
		}
	}
	return bytes.Repeat([]byte(hex32), CookieLen/32), nil
}

// RandomCookie returns a fresh random cookie, used when none is configured so
// that the sockets still demand either the same uid or this secret.
func RandomCookie() []byte {
	b := make([]byte, CookieLen)
	rand.Read(b) // never fails: crypto/rand aborts the program instead
	return b
}

// WriteCookie writes the cookie with mode 0600 (the original's was 0666).
func WriteCookie(path string, b []byte) error {
	if len(b) != CookieLen {
		return fmt.Errorf("cookie %s: %d bytes, want %d", path, len(b), CookieLen)
	}
	return atomicfile.WriteBytes(path, b, 0o600)
}
