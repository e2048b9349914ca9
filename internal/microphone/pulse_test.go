package microphone

import (
	"io"
	"math"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pulse-sidecar/pulse-sidecar/internal/audiotest"
	"github.com/pulse-sidecar/pulse-sidecar/internal/testenv"
)

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
	parecord := testenv.Tool(t, "parecord")

	fifoPath := filepath.Join(t.TempDir(), "microphone")
	pa := testenv.PulseAudio(t,
		"load-module module-null-sink sink_name=speaker",
		"load-module module-pipe-source source_name=microphone file="+fifoPath+" format=float32le rate=44100 channels=1",
	)

	r := startRelay(t, fifoPath, nil)
	rec := &recorder{}
	pr := exec.Command(parecord, "-s", pa.Server, "--latency-msec=20", "-d", "microphone",
		"--raw", "--format=float32le", "--rate=44100", "--channels=1")
	pr.Env = pa.Env()
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
			t.Fatal("parecord recorded nothing")
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
