package pulse

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCookieBytes(t *testing.T) {
	const v = "0123456789abcdefABCDEF0123456789"
	b, err := CookieBytes(v)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 256 || string(b) != strings.Repeat(v, 8) {
		t.Fatalf("cookie = %q", b)
	}
}

func TestCookieBytesDoesNotEchoSecret(t *testing.T) {
	for _, v := range []string{"", "short", "0123456789abcdef0123456789abcdeZ", "0123456789abcdef0123456789abcdef\n"} {
		_, err := CookieBytes(v)
		if err == nil {
			t.Fatalf("%q accepted", v)
		}
		if v != "" && strings.Contains(err.Error(), strings.TrimSpace(v)) {
			t.Fatalf("error echoes the value: %v", err)
		}
	}
}

func TestRandomCookie(t *testing.T) {
	a, b := RandomCookie(), RandomCookie()
	if len(a) != CookieLen || bytes.Equal(a, b) {
		t.Fatalf("random cookies: %d bytes, equal=%v", len(a), bytes.Equal(a, b))
	}
}

func TestWriteCookie(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cookie")
	if err := os.WriteFile(path, []byte("old"), 0o666); err != nil {
		t.Fatal(err)
	}
	c := RandomCookie()
	if err := WriteCookie(path, c); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	got, _ := os.ReadFile(path)
	if !bytes.Equal(got, c) {
		t.Error("content differs")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temp files left behind: %v", entries)
	}
	if err := WriteCookie(path, []byte("short")); err == nil {
		t.Error("short cookie accepted")
	}
}
