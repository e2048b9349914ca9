package config

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A bad value is one line on the way out, not the usage behind it.
func TestBadValuePrintsNoUsage(t *testing.T) {
	clearEnv(t)
	var out bytes.Buffer
	_, err := Parse("pulse-sidecar", []string{"--mic-rate", "abc"}, &out)
	if err == nil || !strings.Contains(err.Error(), "mic-rate") || strings.Contains(err.Error(), "\n") {
		t.Errorf("error %q, want one line naming mic-rate", err)
	}
	if out.Len() != 0 {
		t.Errorf("printed besides the error:\n%s", out.String())
	}
}

// The desktop's PULSE_SERVER may name a TCP server; only a unix socket in it
// is a default for --pulse-socket, and nothing else in it is an error.
func TestPulseServerVariants(t *testing.T) {
	for _, tc := range []struct{ env, want string }{
		{"tcp:10.0.0.1:4713", "/tmp/.pulse.sock"},
		{"tcp:pod.example", "/tmp/.pulse.sock"},
		{"unix:/tmp/a.sock", "/tmp/a.sock"},
		{"/tmp/b.sock", "/tmp/b.sock"},
		{"tcp:10.0.0.1 unix:/tmp/c.sock", "/tmp/c.sock"},
	} {
		clearEnv(t)
		t.Setenv("PULSE_SERVER", tc.env)
		c, err := Parse("pulse-sidecar healthcheck", nil, &bytes.Buffer{})
		if err != nil {
			t.Errorf("PULSE_SERVER=%q: %v", tc.env, err)
			continue
		}
		if c.PulseSocket != tc.want {
			t.Errorf("PULSE_SERVER=%q: socket %q, want %q", tc.env, c.PulseSocket, tc.want)
		}
	}
}

func TestOriginsThatCanNeverMatch(t *testing.T) {
	for _, o := range []string{
		"https://desktop.example/app", "https://desktop.example:443", "http://desktop.example:80",
		"https://user@desktop.example", "https://desktop.example?x=1", "https://desktop.example#top",
		"ftp://desktop.example", "desktop.example", "null", "https://desktop.example:",
	} {
		clearEnv(t)
		_, err := Parse("pulse-sidecar", []string{"--allowed-origins", "https://ok.example," + o}, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), "--allowed-origins") || !strings.Contains(err.Error(), o) {
			t.Errorf("%q: %v, want refused naming --allowed-origins and the value", o, err)
		}
	}
	for _, o := range []string{"https://desktop.example", "https://Desktop.example/", "http://127.0.0.1:8080", "https://[::1]:8443"} {
		clearEnv(t)
		if _, err := Parse("pulse-sidecar", []string{"--allowed-origins", o}, &bytes.Buffer{}); err != nil {
			t.Errorf("%q refused: %v", o, err)
		}
	}
}

func TestCookieFile(t *testing.T) {
	const hex = "0123456789abcdef0123456789ABCDEF"
	dir := t.TempDir()
	good := filepath.Join(dir, "cookie")
	os.WriteFile(good, []byte("  "+hex+"\n"), 0o600)
	clearEnv(t)
	t.Setenv("CONTAINER_IP_ADDR", "10.0.0.7")
	c, err := Parse("pulse-sidecar", []string{"--cookie-file", good}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Cookie != hex {
		t.Errorf("cookie %q, want the file's digits without whitespace", c.Cookie)
	}
	if c.PulseTCPAddr != "10.0.0.7:4713" {
		t.Errorf("TCP address %q: a cookie from a file enables TCP as the variable does", c.PulseTCPAddr)
	}

	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("secret-not-hex\n"), 0o600)
	for _, tc := range []struct {
		args []string
		env  string
		want string
	}{
		{[]string{"--cookie-file", bad}, "", "--cookie-file"},
		{[]string{"--cookie-file", filepath.Join(dir, "missing")}, "", "--cookie-file"},
		{[]string{"--cookie-file", good}, hex, "both"},
	} {
		clearEnv(t)
		if tc.env != "" {
			t.Setenv("PULSEAUDIO_COOKIE", tc.env)
		}
		_, err := Parse("pulse-sidecar", tc.args, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "secret-not-hex") ||
			strings.Contains(err.Error(), hex) {
			t.Errorf("%v: %v, want an error naming %q without the value", tc.args, err, tc.want)
		}
	}
}

func TestWatchdogFlag(t *testing.T) {
	clearEnv(t)
	c, err := Parse("pulse-sidecar", nil, &bytes.Buffer{})
	if err != nil || c.PulseWatchdog != 10*time.Second || c.FallbackParent != "/run" || c.WarmSpeaker {
		t.Errorf("defaults: watchdog %v, fallback parent %q, warm %v, %v", c.PulseWatchdog, c.FallbackParent, c.WarmSpeaker, err)
	}
	for _, v := range []string{"-1s", "500ms"} {
		if _, err := Parse("pulse-sidecar", []string{"--pulse-watchdog", v}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "--pulse-watchdog") {
			t.Errorf("--pulse-watchdog %s: %v", v, err)
		}
	}
	if c, err := Parse("pulse-sidecar", []string{"--pulse-watchdog", "0"}, &bytes.Buffer{}); err != nil || c.PulseWatchdog != 0 {
		t.Errorf("--pulse-watchdog 0: %v %v", c.PulseWatchdog, err)
	}
}
