package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pulse-sidecar/pulse-sidecar/internal/testenv"
)

// Run as the image's user (102:104) where the configured FIFO directory, run
// dir and log dir belong to root, as in `podman run --read-only --user
// 102:104` with nothing mounted but /tmp: the daemon becomes ready with its
// FIFOs and state in one private directory it made, says so once, and the
// speaker works.
func TestUnwritablePlacesFallBack(t *testing.T) {
	if os.Geteuid() != 0 {
		if testenv.CI() {
			t.Fatal("needs root to run the daemon under another uid")
		}
		t.Skip("needs root to run the daemon under another uid")
	}
	bin := buildDaemon(t)
	base, err := os.MkdirTemp("/tmp", "psro")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	const uid, gid = 102, 104
	mk := func(rel string, mode os.FileMode, owned bool) string {
		p := filepath.Join(base, rel)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		if owned {
			if err := os.Chown(p, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
		return p
	}
	os.Chmod(base, 0o755)
	container := mk("container", 0o755, false) // the image's, read-only for 102
	varRun := mk("var/run", 0o755, false)      // no desktop dir, and none can be made
	logDir := mk("var/log/desktop", 0o755, false)
	shared := mk("tmp", 0o1777, false) // the desktop's /tmp
	run := mk("run", 0o755, true)      // a tmpfs /run writable for 102
	exe := filepath.Join(base, "pulse-sidecar")
	copyFile(t, bin, exe)

	socket := filepath.Join(shared, ".pulse.sock")
	d := startDaemonAs(t, exe, []string{
		"--speaker-fifo", filepath.Join(container, "speaker"), "--microphone-fifo", filepath.Join(container, "microphone"),
		"--run-dir", filepath.Join(varRun, "desktop"), "--log-dir", logDir, "--fallback-parent", run,
		"--pulse-socket", socket,
	}, append(cleanEnv(), "PULSEAUDIO_COOKIE="+testCookie),
		&syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}})

	priv, _ := filepath.Glob(filepath.Join(run, "pulse-sidecar-*"))
	if len(priv) != 1 {
		t.Fatalf("private directories under %s: %v", run, priv)
	}
	fi, err := os.Lstat(priv[0])
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Fatalf("%s: %v %v, want a 0700 directory", priv[0], fi, err)
	}
	for _, f := range []string{"speaker", "microphone"} {
		if fi, err := os.Lstat(filepath.Join(priv[0], f)); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
			t.Errorf("FIFO %s in the private directory: %v %v", f, fi, err)
		}
	}
	log := d.stderr.String()
	if n := strings.Count(log, "using a private directory instead"); n != 1 {
		t.Errorf("fallback announced %d times, want once", n)
	}
	if n := strings.Count(log, "log directory not writable"); n != 1 {
		t.Errorf("log dir fallback announced %d times, want once", n)
	}

	d.socket = socket
	d.cookie = filepath.Join(priv[0], "desktop", "cookie")
	l := listen(t, d.speaker)
	waitFor(t, 10*time.Second, "first speaker bytes", func() bool { return !l.firstByte().IsZero() })
	before := len(l.bytes())
	play(t, d, 1000, 500*time.Millisecond)
	time.Sleep(time.Second)
	toneIn(t, l.bytes()[before:], 1000)
	l.close()

	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(15 * time.Second):
		t.Fatal("daemon did not exit")
	}
	if d.exitErr != nil {
		t.Errorf("exit: %v", d.exitErr)
	}
	if _, err := os.Lstat(priv[0]); err == nil {
		t.Errorf("private directory %s left behind", priv[0])
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
