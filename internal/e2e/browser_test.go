package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pulse-sidecar/pulse-sidecar/internal/audiotest"
	"github.com/pulse-sidecar/pulse-sidecar/internal/testenv"
)

// browserDir holds the pages, the driver and their npm packages (installed
// with `npm ci` from the committed lock).
const browserDir = "browser"

// browser runs run.mjs: headless Chromium, driven by playwright-core, on
// pages served from browserDir.
type browser struct {
	node, chromium string
	pages          string // base URL of the pages
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	node := testenv.Tool(t, "node")
	chromium := testenv.Chromium(t)
	testenv.Playwright(t, browserDir)
	srv := httptest.NewServer(http.FileServer(http.Dir(browserDir)))
	t.Cleanup(srv.Close)
	return &browser{node: node, chromium: chromium, pages: srv.URL + "/pages/"}
}

// browserResult is run.mjs's JSON.
type browserResult struct {
	Mode         string   `json:"mode"`
	SampleRate   float64  `json:"sampleRate"`
	State        string   `json:"state"`
	SamplesF32LE string   `json:"samplesF32LE"`
	Messages     int      `json:"messages"`
	Logs         []string `json:"logs"`
}

func (b *browser) run(t *testing.T, mode, ws string, seconds float64, extra ...string) browserResult {
	t.Helper()
	home := t.TempDir()
	args := append([]string{filepath.Join(browserDir, "run.mjs"), mode,
		"--page", b.pages, "--ws", ws, "--seconds", fmt.Sprint(seconds),
		"--user-data-dir", filepath.Join(home, "profile"), "--chromium", b.chromium}, extra...)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.node, args...)
	// A fresh HOME: nothing from the machine's browser profile or audio
	// setup leaks in, and nothing is left behind.
	cmd.Env = append(withoutPulse(os.Environ()), "HOME="+home, "XDG_CONFIG_HOME="+home, "XDG_CACHE_HOME="+home)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("node run.mjs %s: %v\n%s", mode, err, errb.String())
	}
	var r browserResult
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("node run.mjs %s printed no result: %v\n%s\n%s", mode, err, out.String(), errb.String())
	}
	if len(r.Logs) > 0 {
		t.Logf("%s page console:\n%s", mode, strings.Join(r.Logs, "\n"))
	}
	return r
}

func withoutPulse(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "PULSE_") {
			out = append(out, kv)
		}
	}
	return out
}

// Case 8. The real web clients: JSMpeg plays the speaker stream, an
// AudioWorklet microphone page feeds Chromium's fake capture device into the
// microphone websocket.
func testBrowser(t *testing.T, e *engine, image string, rep *report) {
	b := newBrowser(t)
	p := newPod(t, e, image)
	p.startSidecar(t)

	t.Run("jsmpeg_speaker", func(t *testing.T) {
		pl := startPlayer(t, p, tone(1000), 120, false)
		waitReached(t, pl, playRate, 60*time.Second)
		r := b.run(t, "speaker", "ws://"+p.speaker+"/", 4)
		raw, err := base64.StdEncoding.DecodeString(r.SamplesF32LE)
		if err != nil {
			t.Fatalf("speaker page samples: %v", err)
		}
		samples, rate := audiotest.F32LE(raw), int(r.SampleRate)
		if rate == 0 {
			t.Fatalf("speaker page reported no AudioContext rate (state %q)", r.State)
		}
		s, ok := longest(spans(samples, rate, loud, 100*time.Millisecond))
		if !ok || s.seconds(rate) < 0.5 {
			t.Fatalf("JSMpeg decoded %.1f s of audio with no tone of 0.5 s or more (AudioContext %q)",
				float64(len(samples))/float64(rate), r.State)
		}
		f := audiotest.DominantFrequency(trim(samples, s, rate/20), float64(rate))
		t.Logf("JSMpeg: %.2f s of 1 kHz tone in %.2f s captured at %d Hz, dominant %.1f Hz",
			s.seconds(rate), float64(len(samples))/float64(rate), rate, f)
		if math.Abs(f-1000) > 10 {
			t.Errorf("JSMpeg played the tone at %.1f Hz, want 1000 Hz within 1%%", f)
		}
	})

	t.Run("worklet_microphone", func(t *testing.T) {
		// Chromium loops the fake capture file.
		wav := filepath.Join(t.TempDir(), "a440.wav")
		if err := audiotest.WriteWAV(wav, audiotest.Sine(440, 48000, 0.5, 48000*10, 1), 48000); err != nil {
			t.Fatal(err)
		}
		rec := startRecorder(t, p)
		// 48 kHz, the usual device rate, against PulseAudio's 44.1 kHz:
		// the sidecar has to resample what the page declares.
		r := b.run(t, "microphone", "ws://"+p.microphone, 4, "--fake-audio", wav, "--context-rate", "48000")
		time.Sleep(time.Second)
		samples := rec.stop(t)
		if r.SampleRate != 48000 || r.Messages == 0 {
			t.Fatalf("microphone page sent %d messages at %g Hz, want some at 48000 Hz", r.Messages, r.SampleRate)
		}
		sent := float64(r.Messages*128) / r.SampleRate
		s, ok := longest(spans(samples, playRate, loud, 200*time.Millisecond))
		if !ok {
			t.Fatalf("recording of %.1f s has no tone; the page sent %.2f s at %g Hz", float64(len(samples))/playRate, sent, r.SampleRate)
		}
		f := audiotest.DominantFrequency(trim(samples, s, playRate/20), playRate)
		t.Logf("microphone page: %d messages (%.2f s at %g Hz); recorded %.2f s of tone at %.1f Hz",
			r.Messages, sent, r.SampleRate, s.seconds(playRate), f)
		if math.Abs(f-440) > 4.4 {
			t.Errorf("recorded the browser's tone at %.1f Hz, want 440 Hz within 1%%: wrong speed", f)
		}
		if d := s.seconds(playRate); d < 0.75*sent || d > sent+0.3 {
			t.Errorf("recorded %.2f s of tone, the page sent %.2f s", d, sent)
		}
	})

	t.Run("webclient_opus_speaker", func(t *testing.T) { testWebclientOpusSpeaker(t, p) })
	t.Run("webclient_opus_microphone", func(t *testing.T) { testWebclientOpusMicrophone(t, p) })
}

// longest returns the longest span.
func longest(ss []span) (span, bool) {
	var best span
	for _, s := range ss {
		if s.end-s.start > best.end-best.start {
			best = s
		}
	}
	return best, len(ss) > 0
}
