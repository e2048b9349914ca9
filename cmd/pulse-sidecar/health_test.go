package main

import (
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

// A PulseAudio that stops answering is not ready within a few seconds, the
// healthcheck says so too, the watchdog kills it, and once a new one runs the
// speaker flows again to the listener that never reconnected.
func TestStoppedPulseAudioIsReplaced(t *testing.T) {
	bin := buildDaemon(t)
	d := startDaemon(t, bin, []string{"--pulse-watchdog", "4s"}, nil)
	l := listen(t, d.speaker)
	waitFor(t, 10*time.Second, "first speaker bytes", func() bool { return !l.firstByte().IsZero() })
	pids := d.children("pulseaudio")
	if len(pids) != 1 {
		t.Fatalf("pulseaudio children: %v", pids)
	}
	if err := syscall.Kill(pids[0], syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// Kill it in any case, so a failing test leaves no stopped process.
	t.Cleanup(func() { syscall.Kill(pids[0], syscall.SIGKILL) })
	stopped := time.Now()
	waitFor(t, 5*time.Second, "not ready after SIGSTOP", func() bool { return d.readyz() == http.StatusServiceUnavailable })
	t.Logf("not ready %s after SIGSTOP", time.Since(stopped))
	if out, err := exec.Command(bin, "healthcheck", "--ops-addr", d.ops).CombinedOutput(); err == nil {
		t.Errorf("healthcheck of a daemon whose PulseAudio is stopped succeeded: %s", out)
	}
	waitFor(t, 20*time.Second, "a new pulseaudio, ready", func() bool {
		p := d.children("pulseaudio")
		return len(p) == 1 && p[0] != pids[0] && d.readyz() == http.StatusOK
	})
	t.Logf("ready again %s after SIGSTOP (watchdog 4s)", time.Since(stopped))
	if !strings.Contains(d.stderr.String(), "killing it") {
		t.Error("the watchdog's kill is not in the log")
	}
	// The encoder died with its PulseAudio and is started again for the
	// listener still connected; audio resumes without a reconnect.
	n := len(l.bytes())
	waitFor(t, 15*time.Second, "speaker bytes after the restart", func() bool { return len(l.bytes()) > n+2000 })
	before := len(l.bytes())
	play(t, d, 1000, 500*time.Millisecond)
	time.Sleep(time.Second)
	toneIn(t, l.bytes()[before:], 1000)
	select {
	case <-l.done:
		t.Fatal("the listener was disconnected")
	default:
	}
}

// A stop that must kill (PulseAudio stopped with SIGSTOP, an encoder whose
// process group ignores TERM) still exits 0 within --stop-timeout, leaving
// no child behind.
func TestStopThatHadToKillExitsZero(t *testing.T) {
	bin := buildDaemon(t)
	ffmpeg := testenv.Tool(t, "ffmpeg")
	sh := testenv.Tool(t, "sh")
	dir := t.TempDir()
	// ffmpeg handles the TERM; the shell and its sleep ignore it and keep
	// the group alive until the KILL.
	wrapper := filepath.Join(dir, "stubborn-ffmpeg")
	script := "#!" + sh + "\ntrap '' TERM\n" + ffmpeg + ` "$@"` + "\nexec sleep 600\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, bin, []string{"--ffmpeg", wrapper, "--stop-timeout", "5s"}, nil)
	l := listen(t, d.speaker)
	waitFor(t, 10*time.Second, "first speaker bytes", func() bool { return !l.firstByte().IsZero() })
	pa := d.children("pulseaudio")
	enc := d.children("stubborn-ffmpeg")
	if len(pa) != 1 || len(enc) != 1 {
		t.Fatalf("children: pulseaudio %v, encoder %v", pa, enc)
	}
	syscall.Kill(pa[0], syscall.SIGSTOP)
	t.Cleanup(func() { syscall.Kill(pa[0], syscall.SIGKILL) })
	t.Logf("stopped in %s", d.sigterm(t, 15*time.Second))
	for _, p := range append(pa, enc...) {
		if running(p) {
			t.Errorf("child %d still alive", p)
		}
	}
}

// The desktop's PULSE_SERVER often names a TCP server; the healthcheck run
// in the same environment must still work.
func TestHealthcheckWithTCPPulseServer(t *testing.T) {
	bin := buildDaemon(t)
	d := startDaemon(t, bin, nil, nil)
	cmd := exec.Command(bin, "healthcheck", "--ops-addr", d.ops)
	cmd.Env = append(cleanEnv(), "PULSE_SERVER=tcp:127.0.0.1:4713")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("healthcheck with PULSE_SERVER=tcp:...: %v: %s", err, out)
	}
}

// --cookie-file: the same 32 hex digits from a file, the cookie PulseAudio
// gets is byte-identical to the variable's, and the variable need not be set.
func TestCookieFromFile(t *testing.T) {
	bin := buildDaemon(t)
	secret := filepath.Join(t.TempDir(), "cookie")
	if err := os.WriteFile(secret, []byte(testCookie+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemonEnv(t, bin, []string{"--cookie-file", secret}, cleanEnv())
	b, err := os.ReadFile(d.cookie)
	if err != nil || string(b) != strings.Repeat(testCookie, 8) {
		t.Fatalf("cookie file %q (%v), want the file's digits 8 times", b, err)
	}
	pactl := exec.Command(testenv.Tool(t, "pactl"), "-s", "tcp:"+d.pulseTCP, "info")
	pactl.Env = append(cleanEnv(), "PULSE_COOKIE="+d.cookie, "HOME="+d.dir)
	if out, err := pactl.CombinedOutput(); err != nil {
		t.Errorf("pactl over TCP with the cookie from the file: %v: %s", err, out)
	}
}

// Bad values: one line, never the usage.
func TestBadFlagValueIsOneLine(t *testing.T) {
	bin := buildDaemon(t)
	out, err := exec.Command(bin, "--mic-rate", "abc").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "mic-rate") || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 {
		t.Errorf("--mic-rate abc: %v: %q, want one line naming mic-rate", err, out)
	}
	out, err = exec.Command(bin, "--allowed-origins", "https://desktop.example:443").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "default port") {
		t.Errorf("an origin with its default port: %v: %q, want refused at start", err, out)
	}
}
