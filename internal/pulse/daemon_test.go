package pulse

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/pulse-sidecar/pulse-sidecar/internal/supervise"
	"github.com/pulse-sidecar/pulse-sidecar/internal/testenv"
)

// readiness records the Ready calls of a Daemon.
type readiness struct {
	mu    sync.Mutex
	calls []bool
}

func (r *readiness) set(v bool) { r.mu.Lock(); r.calls = append(r.calls, v); r.mu.Unlock() }

func (r *readiness) last() (ready bool, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.calls) == 0 {
		return false, 0
	}
	return r.calls[len(r.calls)-1], len(r.calls)
}

func eventually(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > 30*time.Second {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// pactl runs pactl against server with the given cookie file and an empty
// HOME, so no other cookie can be picked up.
func pactl(t *testing.T, server, cookieFile string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(testenv.Tool(t, "pactl"), append([]string{"-s", server}, args...)...)
	cmd.Env = []string{"HOME=" + t.TempDir(), "PULSE_COOKIE=" + cookieFile}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// childPulseaudio finds the pulseaudio started by this test process.
func childPulseaudio(t *testing.T) int {
	t.Helper()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil || !bytes.Contains(b, []byte("(pulseaudio)")) {
			continue
		}
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(os.Getpid()) && f[0] != "Z" {
			pid, _ := strconv.Atoi(e.Name())
			return pid
		}
	}
	return 0
}

func TestDaemonWithPulseAudio(t *testing.T) {
	binary := testenv.Tool(t, "pulseaudio")
	testenv.Tool(t, "pactl")
	t.Setenv("PULSEAUDIO_COOKIE", "0123456789abcdef0123456789abcdef") // must not reach the child

	dir := testenv.ShortTempDir(t)
	tcp := testenv.FreeAddr(t)
	cookie, err := CookieBytes("fedcba9876543210fedcba9876543210")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	var ready readiness
	reaper := supervise.NewReaper(nil, false)
	d, err := New(DaemonConfig{
		Config: Config{
			Socket:      filepath.Join(dir, "s"),
			TCPAddr:     tcp,
			CookieFile:  filepath.Join(dir, "run", "cookie"),
			MicFIFO:     filepath.Join(dir, "mic"),
			MicFormat:   "float32le",
			MicRate:     44100,
			MicChannels: 1,
			RunDir:      filepath.Join(dir, "run"),
			WarmSpeaker: true,
		},
		Binary:     binary,
		Cookie:     cookie,
		Reaper:     reaper,
		Log:        slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Ready:      ready.set,
		Registerer: reg,
		Grace:      10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	c := d.cfg
	// A stale FIFO from a previous run would make module-pipe-source abort.
	if err := unix.Mkfifo(c.MicFIFO, 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reaperDone := make(chan error, 1)
	go func() { reaperDone <- reaper.Run(ctx) }()
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()

	eventually(t, "ready", func() bool { r, _ := ready.last(); return r })
	server := "unix:" + c.Socket
	for _, tc := range []struct{ args, want string }{
		{"info", "Default Sink: speaker"},
		{"list short sinks", "speaker"},
		{"list short sources", "microphone"},
		// The warming loopback holds the speaker's monitor at 30 ms.
		{"list short source-outputs", "module-loopback"},
		{"list short sinks", "speaker_warmer"},
	} {
		out, err := pactl(t, server, c.CookieFile, strings.Fields(tc.args)...)
		if err != nil || !strings.Contains(out, tc.want) {
			t.Errorf("pactl %s: %v\n%s", tc.args, err, out)
		}
	}
	if fi, err := os.Stat(c.MicFIFO); err != nil || fi.Mode()&fs.ModeNamedPipe == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("microphone FIFO: %v %v, want a FIFO with mode 0600", fi.Mode(), err)
	}
	if fi, err := os.Stat(c.CookieFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("cookie file: %v %v", fi, err)
	}

	// TCP: the cookie is the only way in.
	if out, err := pactl(t, "tcp:"+tcp, c.CookieFile, "info"); err != nil {
		t.Errorf("pactl over TCP with the cookie: %v\n%s", err, out)
	}
	wrong := filepath.Join(t.TempDir(), "wrong")
	if err := WriteCookie(wrong, RandomCookie()); err != nil {
		t.Fatal(err)
	}
	if out, err := pactl(t, "tcp:"+tcp, wrong, "info"); err == nil {
		t.Errorf("pactl over TCP with a wrong cookie succeeded:\n%s", out)
	}
	// (Over the unix socket the same uid is let in without the cookie:
	// PulseAudio reads the peer's credentials.)

	pid := childPulseaudio(t)
	if pid == 0 {
		t.Fatal("pulseaudio child not found")
	}
	env, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "environ"))
	if err != nil || bytes.Contains(env, []byte("PULSEAUDIO_COOKIE")) {
		t.Errorf("child environment (%v) has PULSEAUDIO_COOKIE", err)
	}

	// A crash is followed by a restart with the counter and readiness updated.
	_, before := ready.last()
	if err := unix.Kill(pid, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	took := eventually(t, "ready again", func() bool {
		r, n := ready.last()
		return r && n >= before+2
	})
	t.Logf("ready again %v after kill -9", took)
	if got := restartCount(t, reg); got != 1 {
		t.Errorf("restarts counter = %v, want 1", got)
	}
	if out, err := pactl(t, server, c.CookieFile, "info"); err != nil {
		t.Errorf("pactl after restart: %v\n%s", err, out)
	}
	newPid := childPulseaudio(t)

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	<-reaperDone
	if r, _ := ready.last(); r {
		t.Error("still ready after stop")
	}
	if err := unix.Kill(newPid, 0); !errors.Is(err, unix.ESRCH) {
		t.Errorf("pulseaudio %d still exists: %v", newPid, err)
	}
	for _, p := range []string{c.MicFIFO, c.Socket,
		filepath.Join(c.RunDir, scriptName), filepath.Join(c.RunDir, confName), filepath.Join(c.RunDir, "pulse")} {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s left behind: %v", p, err)
		}
	}
}

func restartCount(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "pulse_sidecar_pulseaudio_restarts_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("restart counter not registered")
	return 0
}

// A configuration PulseAudio cannot run with is refused by New, before any
// actor runs and before anything is written; before New existed, Run found
// some of these only after the group had started (a bad path) and others
// never (a negative interval became a default, a missing Reaper panicked
// at the first start).
func TestNewRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	good := func() DaemonConfig {
		c := baseConfig()
		c.RunDir = filepath.Join(dir, "run")
		c.CookieFile = filepath.Join(c.RunDir, "cookie")
		return DaemonConfig{Config: c, Reaper: supervise.NewReaper(nil, false)}
	}
	if _, err := New(good()); err != nil {
		t.Fatalf("New with a good config: %v", err)
	}
	for _, tc := range []struct {
		name, want string
		edit       func(*DaemonConfig)
	}{
		{"path with a space", "microphone FIFO", func(c *DaemonConfig) { c.MicFIFO = "/x y" }},
		{"socket path too long", "socket", func(c *DaemonConfig) { c.Socket = "/" + strings.Repeat("s", 120) }},
		{"bad microphone rate", "microphone rate", func(c *DaemonConfig) { c.MicRate = 1 }},
		{"relative binary", "binary", func(c *DaemonConfig) { c.Binary = "pulseaudio" }},
		{"short cookie", "cookie: 16 bytes", func(c *DaemonConfig) { c.Cookie = make([]byte, 16) }},
		{"no reaper", "Reaper", func(c *DaemonConfig) { c.Reaper = nil }},
		{"negative probe interval", "probe interval", func(c *DaemonConfig) { c.ProbeInterval = -time.Second }},
		{"negative start timeout", "start timeout", func(c *DaemonConfig) { c.StartTimeout = -time.Second }},
		{"negative backoff", "backoff minimum", func(c *DaemonConfig) { c.Backoff.Min = -time.Second }},
		{"backoff maximum below minimum", "below its minimum", func(c *DaemonConfig) { c.Backoff = supervise.Backoff{Min: 2 * time.Second, Max: time.Second} }},
	} {
		cfg := good()
		tc.edit(&cfg)
		d, err := New(cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: New = %v, %v; want an error naming %q", tc.name, d, err, tc.want)
		}
	}
	if _, err := os.Lstat(filepath.Join(dir, "run")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("New wrote the run dir: %v", err)
	}
}

// Every default is resolved by New, so Run reads no zero value.
func TestNewDefaults(t *testing.T) {
	d, err := New(DaemonConfig{Config: baseConfig(), Reaper: supervise.NewReaper(nil, false)})
	if err != nil {
		t.Fatal(err)
	}
	c := d.cfg
	if c.Binary != "/usr/bin/pulseaudio" || len(c.Cookie) != CookieLen || c.Log == nil || c.Ready == nil ||
		c.Grace != 5*time.Second || c.StartTimeout != 15*time.Second || c.ProbeInterval != time.Second ||
		c.Watchdog != 10*time.Second || c.Backoff.Min != 100*time.Millisecond || c.Backoff.Max != 5*time.Second {
		t.Errorf("defaults: %+v", c)
	}
	off, err := New(DaemonConfig{Config: baseConfig(), Reaper: supervise.NewReaper(nil, false), Watchdog: -1})
	if err != nil || off.cfg.Watchdog >= 0 {
		t.Errorf("a negative watchdog (never) became %v (%v)", off.cfg.Watchdog, err)
	}
}
