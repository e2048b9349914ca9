package e2e

import (
	"bytes"
	"context"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pulse-sidecar/pulse-sidecar/internal/audiotest"
	"github.com/pulse-sidecar/pulse-sidecar/internal/testenv"
)

// TestBrowserUndeclaredMicrophone runs the AudioWorklet microphone page the
// way abcdesktop's client talks (no format, rate or channels in the URL),
// its AudioContext at 48000 Hz on Chromium's fake capture of a 440 Hz file,
// against the daemon built from this tree with its own PulseAudio at 44100
// Hz: the recording of the microphone source must hold 440 Hz, which it
// does only if the daemon found the page's rate, and found it in its first
// decision (on a loaded machine the page's audio thread falls behind after
// its first messages; see TestRateDetectorChromiumStartup).
//
// It needs no container engine: the daemon runs as a plain process.
func TestBrowserUndeclaredMicrophone(t *testing.T) {
	b := newBrowser(t)
	mic, pulseEnv, metric := startLocalDaemon(t)

	wav := filepath.Join(t.TempDir(), "a440.wav")
	if err := audiotest.WriteWAV(wav, audiotest.Sine(440, 48000, 0.5, 48000*10, 1), 48000); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rec := exec.CommandContext(ctx, testenv.Tool(t, "parecord"), "--latency-msec=20", "-d", "microphone", "--raw",
		"--format=float32le", "--rate=44100", "--channels=1")
	rec.Env = pulseEnv
	var recorded bytes.Buffer
	rec.Stdout = &recorded
	if err := rec.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		rec.Process.Signal(syscall.SIGINT)
		rec.Wait()
	}()

	r := b.run(t, "microphone", "ws://"+mic, 4, "--fake-audio", wav, "--context-rate", "48000", "--undeclared")
	time.Sleep(time.Second)
	rec.Process.Signal(syscall.SIGINT)
	rec.Wait()
	if r.SampleRate != 48000 || r.Messages == 0 {
		t.Fatalf("microphone page sent %d messages at %g Hz, want some at 48000 Hz", r.Messages, r.SampleRate)
	}
	if got := metric("pulse_sidecar_microphone_detected_rate_hz"); got != 48000 {
		t.Errorf("daemon detected %g Hz, want 48000", got)
	}
	// The first decision must be right, not corrected later: a wrong one
	// counts under its own rate, a correction under how="corrected".
	if got := metric(`pulse_sidecar_microphone_rate_decisions_total{how="detected",rate="48000"}`); got != 1 {
		t.Errorf("daemon's first decisions of 48000 Hz: %g, want 1 (the first decision was another rate, or none)", got)
	}
	samples := audiotest.F32LE(recorded.Bytes())
	sent := float64(r.Messages*128) / r.SampleRate
	s, ok := longest(spans(samples, playRate, loud, 200*time.Millisecond))
	if !ok {
		t.Fatalf("recording of %.1f s has no tone; the page sent %.2f s at %g Hz", float64(len(samples))/playRate, sent, r.SampleRate)
	}
	f := audiotest.DominantFrequency(trim(samples, s, playRate/20), playRate)
	t.Logf("undeclared microphone page: %d messages (%.2f s at %g Hz); recorded %.2f s of tone at %.2f Hz; bytes in %g, written %g, dropped %g",
		r.Messages, sent, r.SampleRate, s.seconds(playRate), f, metric("pulse_sidecar_microphone_bytes_in_total"),
		metric("pulse_sidecar_microphone_bytes_written_total"), metric("pulse_sidecar_microphone_bytes_dropped_total"))
	if math.Abs(f-440) > 4.4 {
		t.Errorf("recorded the browser's tone at %.2f Hz, want 440 Hz within 1%%: wrong rate", f)
	}
	if d := s.seconds(playRate); d < 0.75*sent || d > sent+0.3 {
		t.Errorf("recorded %.2f s of tone, the page sent %.2f s", d, sent)
	}
}

// startLocalDaemon builds cmd/pulse-sidecar and runs it with its own
// PulseAudio on loopback ports until the test ends. It returns the
// microphone address, the environment a PulseAudio client needs, and a
// reader of unlabelled metrics (-1 when absent).
func startLocalDaemon(t *testing.T) (mic string, pulseEnv []string, metric func(string) float64) {
	t.Helper()
	pulseaudio, ffmpeg := testenv.Tool(t, "pulseaudio"), testenv.Tool(t, "ffmpeg")
	dir := testenv.ShortTempDir(t)
	bin := filepath.Join(dir, "pulse-sidecar")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/pulse-sidecar").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	mic, ops := testenv.FreeAddr(t), testenv.FreeAddr(t)
	socket := filepath.Join(dir, "pulse.sock")
	cmd := exec.Command(bin,
		"--speaker-addr", testenv.FreeAddr(t), "--microphone-addr", mic, "--ops-addr", ops,
		"--speaker-fifo", filepath.Join(dir, "speaker"), "--microphone-fifo", filepath.Join(dir, "microphone"),
		"--pulse-socket", socket, "--run-dir", filepath.Join(dir, "run"), "--log-dir", "",
		"--ffmpeg", ffmpeg, "--pulseaudio", pulseaudio, "--log-level", "debug")
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PULSE") && !strings.HasPrefix(kv, "XDG_") && !strings.HasPrefix(kv, "CONTAINER_IP_ADDR=") &&
			!strings.HasPrefix(kv, "POD_IP=") && !strings.HasPrefix(kv, "ABCDESKTOP_") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	log := &testenv.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", log.String())
		}
	})
	client := http.Client{Timeout: 2 * time.Second}
	metric = func(name string) float64 {
		resp, err := client.Get("http://" + ops + "/metrics")
		if err != nil {
			return -1
		}
		defer resp.Body.Close()
		var body bytes.Buffer
		body.ReadFrom(resp.Body)
		for _, line := range strings.Split(body.String(), "\n") {
			if v, ok := strings.CutPrefix(line, name+" "); ok {
				if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
					return f
				}
			}
		}
		return -1
	}
	ready := func() bool {
		resp, err := client.Get("http://" + ops + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	for deadline := time.Now().Add(30 * time.Second); !ready(); {
		select {
		case <-exited:
			t.Fatalf("daemon exited:\n%s", log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon not ready within 30 s:\n%s", log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return mic, append(env, "PULSE_SERVER=unix:"+socket, "PULSE_COOKIE="+filepath.Join(dir, "run", "cookie"), "HOME="+dir), metric
}
