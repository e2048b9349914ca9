package pulse

import (
	"context"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pulse-sidecar/pulse-sidecar/internal/supervise"
	"github.com/pulse-sidecar/pulse-sidecar/internal/testenv"
)

// logRecords keeps the messages a Daemon logs.
type logRecords struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logRecords) Write(b []byte) (int, error) {
	l.mu.Lock()
	l.msgs = append(l.msgs, string(b))
	l.mu.Unlock()
	return len(b), nil
}

func (l *logRecords) count(sub string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.msgs {
		if strings.Contains(m, sub) {
			n++
		}
	}
	return n
}

// runDaemon runs a Daemon with fast probes until the test ends.
func runDaemon(t *testing.T, warm bool, watchdog time.Duration) (*Daemon, *readiness, *logRecords) {
	t.Helper()
	dir := testenv.ShortTempDir(t)
	var ready readiness
	logs := &logRecords{}
	reaper := supervise.NewReaper(nil, false)
	d, err := New(DaemonConfig{
		Config: Config{
			Socket: filepath.Join(dir, "s"), CookieFile: filepath.Join(dir, "run", "cookie"),
			MicFIFO: filepath.Join(dir, "mic"), MicFormat: "float32le", MicRate: 44100, MicChannels: 1,
			RunDir: filepath.Join(dir, "run"), WarmSpeaker: warm,
		},
		Binary: testenv.Tool(t, "pulseaudio"), Cookie: RandomCookie(), Reaper: reaper,
		Log:   slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Ready: ready.set, Grace: 5 * time.Second,
		ProbeInterval: 200 * time.Millisecond, Watchdog: watchdog,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	reaperDone := make(chan error, 1)
	go func() { reaperDone <- reaper.Run(ctx) }()
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		<-reaperDone
		if t.Failed() {
			for _, m := range logs.msgs {
				t.Log(strings.TrimSpace(m))
			}
		}
	})
	eventually(t, "ready", func() bool { r, _ := ready.last(); return r })
	return d, &ready, logs
}

// A PulseAudio that stops answering is not ready within a few probes and is
// killed and started again once the watchdog expires.
func TestWatchdogRestartsAStoppedPulseAudio(t *testing.T) {
	_, ready, logs := runDaemon(t, false, 2*time.Second)
	pid := childPulseaudio(t)
	if err := unix.Kill(pid, unix.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	notReady := eventually(t, "not ready", func() bool { r, _ := ready.last(); return !r })
	if notReady > 3*time.Second { // 2 probe timeouts of 400 ms, with margin
		t.Errorf("not ready only %s after SIGSTOP", notReady)
	}
	eventually(t, "a new pulseaudio, ready", func() bool {
		r, _ := ready.last()
		p := childPulseaudio(t)
		return r && p != 0 && p != pid
	})
	t.Logf("not ready after %s, ready again after %s", notReady, time.Since(stopped))
	if logs.count("killing it") != 1 {
		t.Errorf("watchdog kills logged: %d, want 1", logs.count("killing it"))
	}
	if err := unix.Kill(pid, 0); err == nil {
		t.Errorf("the stopped pulseaudio %d still exists", pid)
	}
}

// Without the warming loopback, a stream recording speaker.monitor (the
// encoder) restarts the speaker's clock; one recording the microphone does
// not; and so does the next PulseAudio after a crash.
func TestSpeakerClockRestartsForMonitorRecording(t *testing.T) {
	d, ready, logs := runDaemon(t, false, 0)
	parec := testenv.Tool(t, "parecord")
	record := func(device string) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, parec, "--latency-msec=20", "-d", device, "--raw", "/dev/null")
		cmd.Env = []string{"HOME=" + t.TempDir(), "PULSE_SERVER=unix:" + d.cfg.Socket, "PULSE_COOKIE=" + d.cfg.CookieFile}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		cmd.Process.Signal(unix.SIGINT)
		cmd.Wait()
	}
	const restarted = "speaker clock restarted"
	// A second stream recording the monitor while one already does must
	// not restart the clock under the first.
	both := make(chan struct{})
	go func() { defer close(both); record("speaker.monitor") }()
	time.Sleep(300 * time.Millisecond)
	record("speaker.monitor")
	<-both
	if n := logs.count(restarted); n != 1 {
		t.Fatalf("two overlapping recordings of the monitor restarted the clock %d times, want once", n)
	}
	record("microphone")
	if n := logs.count(restarted); n != 1 {
		t.Errorf("recording the microphone restarted the speaker clock (%d restarts, want 1)", n)
	}
	record("speaker.monitor")
	eventually(t, "speaker clock restarted", func() bool { return logs.count(restarted) == 2 })

	pid := childPulseaudio(t)
	_, before := ready.last()
	if err := unix.Kill(pid, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a new pulseaudio, ready", func() bool {
		r, n := ready.last()
		return r && n > before && childPulseaudio(t) != pid
	})
	record("speaker.monitor")
	eventually(t, "speaker clock restarted by the new pulseaudio's watch", func() bool { return logs.count(restarted) == 3 })
	if n := logs.count("watch ended"); n != 0 {
		t.Errorf("%d warnings about the watch ending; a PulseAudio that died is not worth one", n)
	}
}
