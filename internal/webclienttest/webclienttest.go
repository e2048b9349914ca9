// Package webclienttest drives the sidecar's built-in web client, the page
// its speaker port serves, in headless Chromium, and checks what it did:
// the page plays ?codec=opus through WebCodecs with its output tapped, and
// sends its microphone (Chromium's fake capture of a file) as WebCodecs
// Opus. The daemon's tests and the image's tests run the same page the
// same way; only how they play into and record from PulseAudio differs.
package webclienttest

import (
	"bufio"
	"context"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pulse-sidecar/pulse-sidecar/internal/audiotest"
	"github.com/pulse-sidecar/pulse-sidecar/internal/testenv"
)

// driver is the playwright script; it is written next to the browser
// profile, so it needs no file of the source tree at run time.
//
//go:embed page.mjs
var driver []byte

// MicTone is how many seconds of 440 Hz the fake capture device's file
// holds: the recording of the microphone source must hold as much.
const MicTone = 1.5

// micFile writes the fake capture device's file: lead seconds of silence,
// MicTone seconds of 440 Hz, then 3.5 s of silence (Chromium loops it from
// the start).
func micFile(path string, lead float64) error {
	samples := make([]float32, int((lead+MicTone+3.5)*48000))
	copy(samples[int(lead*48000):], audiotest.Sine(440, 48000, 0.5, int(MicTone*48000), 1))
	return audiotest.WriteWAV(path, samples, 48000)
}

// Options says where the page is and what the browser does there.
type Options struct {
	// Page is the URL of the page on the speaker port, with its query
	// (jwt_token, microphone).
	Page string
	// BrowserDir holds playwright-core, installed by `npm ci`
	// (internal/e2e/browser).
	BrowserDir string
	// TapSeconds is how long the speaker's output is tapped once the page
	// signalled "tap"; MicSeconds how long the microphone sends. Zero leaves
	// that part out.
	TapSeconds, MicSeconds float64
	// MicLead is the silence before the tone in the fake capture file,
	// from when the page opens the microphone [1 s]. The sidecar drops
	// what arrives before its decoder runs, so a loaded machine needs more.
	MicLead float64
}

// Result is what page.mjs reports.
type Result struct {
	Support struct {
		Secure, Webcodecs, AudioWorklet bool
		Reasons                         []string
	}
	Speaker *struct {
		Playing string
		Rate    int
		Samples string
		Ends    []int
		Stamps  []float64
		Stats   map[string]any
	}
	Microphone *struct {
		State string
		Stats map[string]any
	}
	Logs []string
}

// Run loads the page in headless Chromium and runs its parts. signal is
// called on the test's goroutine with "tap" when the test must start the
// desktop's tone (the page taps its output from then on) and with "mic"
// when the microphone starts sending; it must return soon. Run fails the
// test unless the page is a secure context with WebCodecs and an
// AudioWorklet.
func Run(t *testing.T, o Options, signal func(string)) Result {
	t.Helper()
	node := testenv.Tool(t, "node")
	chromium := testenv.Chromium(t)
	pw := testenv.Playwright(t, o.BrowserDir)
	home := t.TempDir()
	script := filepath.Join(home, "page.mjs")
	if err := os.WriteFile(script, driver, 0o644); err != nil {
		t.Fatal(err)
	}
	wav := filepath.Join(home, "mic.wav")
	if o.MicLead == 0 {
		o.MicLead = 1
	}
	if err := micFile(wav, o.MicLead); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script, "--playwright", pw,
		"--page", o.Page, "--chromium", chromium, "--user-data-dir", filepath.Join(home, "profile"),
		"--fake-audio", wav, "--tap-seconds", strconv.FormatFloat(o.TapSeconds, 'f', -1, 64), "--mic-seconds", strconv.FormatFloat(o.MicSeconds, 'f', -1, 64))
	// A fresh HOME: nothing from the machine's browser profile or audio
	// setup leaks in, and nothing is left behind.
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PULSE_") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "HOME="+home, "XDG_CONFIG_HOME="+home, "XDG_CACHE_HOME="+home)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errb testenv.SyncBuffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var last string
	lines := bufio.NewScanner(stdout)
	lines.Buffer(make([]byte, 1<<20), 64<<20)
	for lines.Scan() {
		switch line := lines.Text(); line {
		case "tap", "mic":
			signal(line)
		default:
			last = line
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("node page.mjs: %v\n%s", err, errb.String())
	}
	var r Result
	if err := json.Unmarshal([]byte(last), &r); err != nil {
		t.Fatalf("page.mjs printed no result: %v\n%s", err, errb.String())
	}
	if len(r.Logs) > 0 {
		t.Logf("page console:\n%s", strings.Join(r.Logs, "\n"))
	}
	if !r.Support.Secure || !r.Support.Webcodecs || !r.Support.AudioWorklet {
		t.Fatalf("page %s: support %+v, want a secure context with WebCodecs", o.Page, r.Support)
	}
	return r
}

// CheckSpeaker: the page played Opus and its tapped output holds the
// desktop's 1 kHz tone for at least a second. played is when the desktop
// started the tone on the test's clock (zero if unknown): the onset the page
// heard is logged against it.
func CheckSpeaker(t *testing.T, r Result, played time.Time) {
	t.Helper()
	sp := r.Speaker
	if sp == nil {
		t.Fatal("page.mjs ran no speaker part")
	}
	t.Logf("speaker stats: %v", sp.Stats)
	if sp.Playing != "playing" || sp.Stats["codec"] != "opus" {
		t.Fatalf("speaker %q, codec %v; want playing opus", sp.Playing, sp.Stats["codec"])
	}
	raw, err := base64.StdEncoding.DecodeString(sp.Samples)
	if err != nil {
		t.Fatal(err)
	}
	pcm := audiotest.F32LE(raw)
	start, _ := ToneAt(t, "page output", pcm, sp.Rate, 1000, 0.02, 1.0)
	// The onset the page heard, on the machine's clock: the batch holding
	// it reached the tap at its stamp, and the onset sits that many samples
	// before the batch's end.
	for i, end := range sp.Ends {
		if end > start && i < len(sp.Stamps) && !played.IsZero() {
			heard := time.UnixMicro(int64(sp.Stamps[i] * 1000)).Add(-time.Duration(float64(end-start) / float64(sp.Rate) * float64(time.Second)))
			t.Logf("onset heard in the page %v after the desktop started the tone (tap batch of 10 ms; machine load: %s)",
				heard.Sub(played).Round(time.Millisecond), loadavg())
			break
		}
	}
}

// CheckMicrophone: the page's microphone was open and sent Opus, and the
// recording of the source "microphone" (mono at rate, fed by nothing but
// the page) holds 440 Hz within 1 % for MicTone seconds within 10 %.
func CheckMicrophone(t *testing.T, r Result, recorded []float32, rate int) {
	t.Helper()
	mic := r.Microphone
	if mic == nil {
		t.Fatal("page.mjs ran no microphone part")
	}
	t.Logf("microphone state %q, stats %v", mic.State, mic.Stats)
	if mic.State != "open" || mic.Stats["codec"] != "opus" {
		t.Fatalf("microphone %q with codec %v, want open with opus", mic.State, mic.Stats["codec"])
	}
	_, secs := ToneAt(t, "microphone source", recorded, rate, 440, 0.05, 0)
	if math.Abs(secs-MicTone)/MicTone > 0.1 {
		t.Errorf("recorded %.2f s of the page's 440 Hz, the file holds %.1f s", secs, MicTone)
	}
}

// ToneAt checks that samples at rate hold freq within 1 % for at least
// minSeconds, and returns where the tone starts and how long it lasts.
func ToneAt(t *testing.T, what string, samples []float32, rate int, freq, threshold, minSeconds float64) (start int, seconds float64) {
	t.Helper()
	s, e, ok := audiotest.Loud(samples, rate, threshold)
	if !ok {
		t.Fatalf("%s: no tone in %.2f s of audio", what, float64(len(samples))/float64(rate))
	}
	seconds = float64(e-s) / float64(rate)
	edge := rate / 20
	steady := samples[s:e]
	if e-s > 4*edge {
		steady = samples[s+edge : e-edge]
	}
	f := audiotest.DominantFrequency(steady, float64(rate))
	t.Logf("%s: %.2f s of tone at %.1f Hz from %.3f s", what, seconds, f, float64(s)/float64(rate))
	if math.Abs(f-freq)/freq > 0.01 {
		t.Fatalf("%s: tone at %.1f Hz, want %g Hz within 1%%", what, f, freq)
	}
	if seconds < minSeconds {
		t.Fatalf("%s: %.2f s of tone, want at least %.2f s", what, seconds, minSeconds)
	}
	return s, seconds
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}
