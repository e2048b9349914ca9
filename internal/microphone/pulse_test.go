package microphone

import (
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pulse-sidecar/pulse-sidecar/internal/audiotest"
)

// requireTool finds an external program; in CI its absence is a failure.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required in CI: %v", name, err)
		}
		t.Skipf("%s not installed: %v", name, err)
	}
	return p
}

// startProcess runs cmd until the test ends, then stops it by its PID
// (SIGTERM, SIGKILL after a grace period).
func startProcess(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
}

// recorder collects parecord's raw output.
type recorder struct {
	mu   sync.Mutex
	data []byte
}

func (r *recorder) Write(b []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.data = append(r.data, b...)
	return len(b), nil
}

func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.data)
}

func (r *recorder) samples(t *testing.T) []float32 {
	r.mu.Lock()
	b := append([]byte(nil), r.data[:len(r.data)/4*4]...)
	r.mu.Unlock()
	return f32Samples(t, b)
}

// TestPulseAudioRecordsResampledTone sends what a browser sends (48 kHz
// float32 in 128-sample messages, in real time) through the relay into a real
// module-pipe-source at 44.1 kHz and records the source with parecord: the
// tone must keep its pitch and its duration.
func TestPulseAudioRecordsResampledTone(t *testing.T) {
	if testing.Short() {
		t.Skip("real-time test")
	}
	pulseaudio := requireTool(t, "pulseaudio")
	parecord := requireTool(t, "parecord")

	dir := t.TempDir()
	// Unix socket paths are limited to 108 bytes; t.TempDir may be longer.
	sockDir, err := os.MkdirTemp("/tmp", "mic")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "s")
	fifoPath := filepath.Join(dir, "microphone")
	home := filepath.Join(dir, "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "default.pa")
	conf := fmt.Sprintf(`load-module module-null-sink sink_name=speaker
load-module module-pipe-source source_name=microphone file=%s format=float32le rate=44100 channels=1
load-module module-native-protocol-unix socket=%s
`, fifoPath, sock)
	if err := os.WriteFile(script, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	pa := exec.Command(pulseaudio, "-n", "--file="+script, "--daemonize=no", "--system=no",
		"--exit-idle-time=-1", "--disallow-exit", "--use-pid-file=no", "--realtime=no",
		"--high-priority=no", "--no-cpu-limit", "--log-target=stderr")
	pa.Env = append(os.Environ(), "HOME="+home, "XDG_RUNTIME_DIR="+home)
	var paLog strings.Builder
	pa.Stderr = &syncWriter{w: &paLog}
	startProcess(t, pa)
	deadline := time.Now().Add(testTimeout)
	for {
		_, e1 := os.Stat(sock)
		_, e2 := os.Stat(fifoPath)
		if e1 == nil && e2 == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pulseaudio did not create %s and %s:\n%s", sock, fifoPath, paLog.String())
		}
		time.Sleep(10 * time.Millisecond)
	}

	r := startRelay(t, fifoPath, nil)
	rec := &recorder{}
	pr := exec.Command(parecord, "-s", "unix:"+sock, "--latency-msec=20", "-d", "microphone",
		"--raw", "--format=float32le", "--rate=44100", "--channels=1")
	pr.Env = pa.Env
	pr.Stdout = rec
	pr.Stderr = io.Discard
	startProcess(t, pr)

	c := dial(t, r, "format=f32le&rate=48000")
	const quantum = 128 // samples per AudioWorklet message
	period := time.Second * quantum / 48000
	start := time.Now()
	sent := 0
	send := func(samples []float32) {
		t.Helper()
		for len(samples) > 0 {
			n := min(quantum, len(samples))
			if err := c.WriteMessage(websocket.BinaryMessage, f32Bytes(samples[:n])); err != nil {
				t.Fatal(err)
			}
			samples = samples[n:]
			sent++
			time.Sleep(time.Until(start.Add(time.Duration(sent) * period)))
		}
	}
	silence := make([]float32, quantum)

	// Silence until the recorder is demonstrably running, so no tone waits in
	// the pipe before it (or is dropped for lack of a reader).
	for i := 0; rec.len() == 0; i++ {
		if i > int(testTimeout/period) {
			t.Fatalf("parecord recorded nothing:\n%s", paLog.String())
		}
		send(silence)
	}
	const toneSeconds = 2.0
	send(audiotest.Sine(440, 48000, 0.5, int(toneSeconds*48000), 1))
	before := rec.len()
	// Trailing silence pushes the tail of the tone through the buffers.
	for i := 0; rec.len() < before+44100*4/2; i++ {
		if i > int(testTimeout/period) {
			t.Fatal("recording stopped growing after the tone")
		}
		send(silence)
	}

	got := rec.samples(t)
	first, last := -1, -1
	for i, v := range got {
		if math.Abs(float64(v)) > 0.05 {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 {
		t.Fatalf("recorded %d samples of silence only", len(got))
	}
	tone := got[first : last+1]
	dur := float64(len(tone)) / 44100
	if math.Abs(dur-toneSeconds)/toneSeconds > 0.07 {
		t.Errorf("tone lasted %.3f s in the recording, want %.1f s (too fast/slow means a wrong rate)", dur, toneSeconds)
	}
	if f := audiotest.DominantFrequency(tone, 44100); math.Abs(f-440)/440 > 0.01 {
		t.Errorf("recorded tone at %.2f Hz, want 440 Hz within 1%%", f)
	}
	t.Logf("recorded %.3f s of tone; bytes written %g, dropped %g", dur,
		testutil.ToFloat64(r.m.written), testutil.ToFloat64(r.m.dropped))
}

// syncWriter lets a process's output and the test read one builder safely.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}
