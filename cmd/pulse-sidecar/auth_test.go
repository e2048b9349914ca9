package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pulse-sidecar/pulse-sidecar/internal/testenv"
)

func writePublicKey(t *testing.T, path string) {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// The daemon's side of authentication: the key file is loaded at start,
// re-read on SIGHUP and when it changes, and SIGHUP never stops the daemon,
// with or without a key. Without one it warns once that the ports are open.
func TestDaemonAuthWiring(t *testing.T) {
	bin := buildDaemon(t)
	const openWarning = "anyone who reaches the speaker and microphone ports can listen and talk"

	t.Run("with a key", func(t *testing.T) {
		keyFile := filepath.Join(t.TempDir(), "jwt.pem")
		writePublicKey(t, keyFile)
		d := startDaemon(t, bin, []string{"--auth-jwt-key", keyFile, "--auth-require-claim", "userid=alice"}, nil)
		if log := d.stderr.String(); !strings.Contains(log, "keys loaded") || strings.Contains(log, openWarning) {
			t.Errorf("start-up log: want the keys loaded and no open-ports warning:\n%s", log)
		}
		d.cmd.Process.Signal(syscall.SIGHUP)
		waitFor(t, 5*time.Second, "reload on SIGHUP", func() bool { return strings.Contains(d.stderr.String(), "keys reloaded") })
		writePublicKey(t, keyFile)
		waitFor(t, 10*time.Second, "reload after the file changed", func() bool {
			return strings.Count(d.stderr.String(), "keys reloaded") >= 2
		})
		select {
		case <-d.exited:
			t.Fatalf("daemon exited after SIGHUP: %v", d.exitErr)
		default:
		}
		if code := d.readyz(); code != http.StatusOK {
			t.Errorf("readyz after SIGHUP and a reload: %d", code)
		}
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(10 * time.Second):
			t.Fatal("no exit within 10 s of SIGTERM")
		}
		if d.exitErr != nil {
			t.Errorf("exit after SIGTERM: %v, want 0", d.exitErr)
		}
	})

	t.Run("without a key", func(t *testing.T) {
		d := startDaemon(t, bin, nil, nil)
		if n := strings.Count(d.stderr.String(), openWarning); n != 1 {
			t.Errorf("open-ports warning logged %d times, want once", n)
		}
		d.cmd.Process.Signal(syscall.SIGHUP)
		time.Sleep(time.Second)
		select {
		case <-d.exited:
			t.Fatalf("daemon exited after SIGHUP: %v", d.exitErr)
		default:
		}
		if code := d.readyz(); code != http.StatusOK {
			t.Errorf("readyz after SIGHUP: %d", code)
		}
	})

	t.Run("a bad key file stops the start", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "jwt.pem")
		os.WriteFile(bad, []byte("not a key\n"), 0o600)
		dir := testenv.ShortTempDir(t)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		// Everything on loopback and in the temp dir, in case it started.
		cmd := exec.CommandContext(ctx, bin, "--auth-jwt-key", bad,
			"--speaker-addr", "127.0.0.1:0", "--microphone-addr", "127.0.0.1:0", "--ops-addr", "127.0.0.1:0",
			"--speaker-fifo", filepath.Join(dir, "speaker"), "--microphone-fifo", filepath.Join(dir, "microphone"),
			"--pulse-socket", filepath.Join(dir, "pulse.sock"), "--run-dir", filepath.Join(dir, "run"), "--log-dir", "",
			"--ffmpeg", testenv.Tool(t, "ffmpeg"), "--pulseaudio", testenv.Tool(t, "pulseaudio"))
		cmd.Env = cleanEnv()
		out, err := cmd.CombinedOutput()
		if err == nil || ctx.Err() != nil || !strings.Contains(string(out), bad) {
			t.Errorf("bad key file: %v: %s, want a start-up failure naming %s", err, out, bad)
		}
	})
}
