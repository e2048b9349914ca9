package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pulse-sidecar/pulse-sidecar/internal/audiotest"
	"github.com/pulse-sidecar/pulse-sidecar/internal/ogg"
	"github.com/pulse-sidecar/pulse-sidecar/internal/testenv"
)

// opusListener keeps the messages of a ?codec=opus websocket, each with its
// arrival time.
type opusListener struct {
	mu   sync.Mutex
	msgs [][]byte
	at   []time.Time
	done chan struct{}
}

func listenOpus(t *testing.T, addr string) (*opusListener, *websocket.Conn) {
	t.Helper()
	conn, resp, err := websocket.DefaultDialer.Dial("ws://"+addr+"/?codec=opus&jwt_token=ignored", nil)
	if err != nil {
		t.Fatalf("dial speaker %s ?codec=opus: %v (%v)", addr, err, resp)
	}
	l := &opusListener{done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for {
			_, msg, err := conn.ReadMessage()
			if err != nil {
				return
			}
			l.mu.Lock()
			l.msgs = append(l.msgs, msg)
			l.at = append(l.at, time.Now())
			l.mu.Unlock()
		}
	}()
	t.Cleanup(func() { conn.Close(); <-l.done })
	return l, conn
}

func (l *opusListener) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.msgs)
}

// pages parses every message as exactly one Ogg page.
func (l *opusListener) pages(t *testing.T) []ogg.Page {
	t.Helper()
	l.mu.Lock()
	msgs := l.msgs
	l.mu.Unlock()
	var s ogg.Splitter
	var out []ogg.Page
	for i, m := range msgs {
		if _, err := ogg.ParsePage(m); err != nil {
			t.Fatalf("message %d is not one Ogg page: %v", i, err)
		}
		_, _ = s.Write(m)
		p, _ := s.Next()
		out = append(out, p)
	}
	return out
}

func decodeOggOpus(t *testing.T, data []byte) []float32 {
	t.Helper()
	cmd := exec.Command(testenv.Tool(t, "ffmpeg"), "-hide_banner", "-loglevel", "error", "-f", "ogg", "-i", "pipe:0",
		"-f", "f32le", "-ac", "1", "-ar", "48000", "pipe:1")
	cmd.Stdin = bytes.NewReader(data)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ffmpeg decoding Ogg Opus: %v: %s", err, errb.String())
	}
	return audiotest.F32LE(out)
}

// toneAt checks that samples at rate hold freq within 1 % for at least
// minSeconds, and returns where the tone starts and how long it lasts.
func toneAt(t *testing.T, what string, samples []float32, rate int, freq, threshold, minSeconds float64) (start int, seconds float64) {
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

// TestDaemonOpus runs the issue 13 features on the real binary: the Opus
// speaker stream beside MP2, the codec refusal, the client page on the
// speaker port, and the page itself in Chromium playing Opus and sending
// its microphone as Opus.
func TestDaemonOpus(t *testing.T) {
	bin := buildDaemon(t)
	d := startDaemon(t, bin, []string{"--opus-frame", "10ms"}, nil)

	t.Run("client page", func(t *testing.T) {
		for _, c := range []struct{ path, ctype string }{
			{"/", "text/html; charset=utf-8"},
			{"/client.js", "text/javascript; charset=utf-8"},
			{"/worklet.js", "text/javascript; charset=utf-8"},
		} {
			resp, err := http.Get("http://" + d.speaker + c.path + "?jwt_token=x")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != c.ctype {
				t.Errorf("GET %s: %d %q, want 200 %q", c.path, resp.StatusCode, resp.Header.Get("Content-Type"), c.ctype)
			}
		}
	})

	t.Run("codec refused", func(t *testing.T) {
		_, resp, err := websocket.DefaultDialer.Dial("ws://"+d.speaker+"/?codec=foo", nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("?codec=foo: %v, %v; want 400", err, resp)
		}
	})

	t.Run("opus and mp2 listeners", func(t *testing.T) {
		ol, _ := listenOpus(t, d.speaker)
		waitFor(t, 20*time.Second, "opus pages", func() bool { return ol.count() >= 30 })
		if n := len(d.children("ffmpeg")); n != 1 {
			t.Fatalf("%d ffmpeg children for one Opus listener, want 1", n)
		}
		ml := listen(t, d.speaker)
		waitFor(t, 20*time.Second, "MP2 bytes", func() bool { return len(ml.bytes()) >= 188*20 })
		if n := len(d.children("ffmpeg")); n != 2 {
			t.Fatalf("%d ffmpeg children for an Opus and an MP2 listener, want 2", n)
		}
		from := len(ml.bytes())
		play(t, d, 1000, 1500*time.Millisecond)
		waitFor(t, 20*time.Second, "the tone to pass", func() bool { return len(ml.bytes()) >= from+40000 && ol.count() >= 300 })
		pages := ol.pages(t)
		if pages[0].Kind != ogg.KindOpusHead || pages[1].Kind != ogg.KindOpusTags {
			t.Fatalf("first messages %v, %v; want OpusHead, OpusTags", pages[0].Kind, pages[1].Kind)
		}
		var stream []byte
		for _, p := range pages {
			stream = append(stream, p.Raw...)
		}
		toneAt(t, "opus listener", decodeOggOpus(t, stream), 48000, 1000, 0.05, 1.2)
		toneIn(t, ml.bytes()[from:], 1000)
		ml.close()
		waitFor(t, 20*time.Second, "the MP2 encoder to stop, the Opus one to run", func() bool { return len(d.children("ffmpeg")) == 1 })
	})

	t.Run("browser", func(t *testing.T) { testOpusPage(t, d) })
}

// TestDaemonClientPageOff: --client-page=false leaves plain requests 404
// and the websocket as it was.
func TestDaemonClientPageOff(t *testing.T) {
	bin := buildDaemon(t)
	d := startDaemon(t, bin, []string{"--client-page=false"}, nil)
	for _, p := range []string{"/", "/client.js", "/worklet.js"} {
		resp, err := http.Get("http://" + d.speaker + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s with --client-page=false: %d, want 404", p, resp.StatusCode)
		}
	}
	ol, _ := listenOpus(t, d.speaker)
	waitFor(t, 20*time.Second, "opus pages", func() bool { return ol.count() >= 10 })
}

func playwrightModule(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "internal", "e2e", "browser"))
	if err != nil {
		t.Fatal(err)
	}
	mod := filepath.Join(dir, "node_modules", "playwright-core", "index.mjs")
	if _, err := os.Stat(mod); err == nil {
		return mod
	}
	if testenv.CI() {
		t.Fatalf("playwright-core missing (run `npm ci` in internal/e2e/browser): %s", mod)
	}
	cmd := exec.Command(testenv.Tool(t, "npm"), "ci", "--no-audit", "--no-fund")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
	}
	return mod
}

type pageResult struct {
	Support struct {
		Secure, Webcodecs, AudioWorklet bool
		Reasons                         []string
	}
	Speaker struct {
		Playing string
		Rate    int
		Samples string
		Ends    []int
		Stamps  []float64
		Stats   map[string]any
	}
	Microphone struct {
		State string
		Stats map[string]any
	}
	Logs []string
}

// testOpusPage loads http://127.0.0.1:PORT/ from the daemon in headless
// Chromium (a secure context): the module plays ?codec=opus through
// WebCodecs and its tapped output holds the desktop's 1 kHz tone; then the
// page's microphone, Chromium's fake capture of a 440 Hz file with audio
// processing off, goes out as Opus and is recorded from the source
// "microphone" at 440 Hz for as long as the file's tone lasts.
func testOpusPage(t *testing.T, d *daemonUnderTest) {
	node := testenv.Tool(t, "node")
	chromium := os.Getenv("E2E_CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		if testenv.CI() {
			t.Fatalf("chromium is required in CI: %v", err)
		}
		t.Skipf("chromium not installed: %v", err)
	}
	pw := playwrightModule(t)

	home := t.TempDir()
	// The fake capture device plays this file from the start, looping:
	// 1 s of silence, 1.5 s of 440 Hz, silence to the end.
	const micTone = 1.5
	wav := filepath.Join(home, "mic.wav")
	samples := make([]float32, 48000*6)
	copy(samples[48000:], audiotest.Sine(440, 48000, 0.5, int(micTone*48000), 1))
	if err := audiotest.WriteWAV(wav, samples, 48000); err != nil {
		t.Fatal(err)
	}

	// The microphone source is recorded throughout.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rec := exec.CommandContext(ctx, testenv.Tool(t, "parecord"), "--latency-msec=20", "-d", "microphone", "--raw",
		"--format=float32le", "--rate=44100", "--channels=1")
	rec.Env = d.pulseEnv()
	var recorded testenv.SyncBuffer
	rec.Stdout = &recorded
	if err := rec.Start(); err != nil {
		t.Fatal(err)
	}
	recDone := make(chan struct{})
	go func() { _ = rec.Wait(); close(recDone) }()
	defer func() {
		_ = rec.Process.Signal(syscall.SIGINT)
		<-recDone
	}()

	page := "http://" + d.speaker + "/?" + url.Values{"jwt_token": {"tok"}, "microphone": {"ws://" + d.mic + "/"}}.Encode()
	cmd := exec.CommandContext(ctx, node, filepath.Join("testdata", "page.mjs"), "--playwright", pw,
		"--page", page, "--chromium", chromium, "--user-data-dir", filepath.Join(home, "profile"),
		"--fake-audio", wav, "--tap-seconds", "5", "--mic-seconds", "4.5")
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
	var (
		last    string
		played  time.Time
		playErr = make(chan error, 1)
		playing bool
		lines   = bufio.NewScanner(stdout)
	)
	lines.Buffer(make([]byte, 1<<20), 64<<20)
	for lines.Scan() {
		switch line := lines.Text(); line {
		case "tap":
			// The tone goes on while the page taps its output.
			playing = true
			played = time.Now()
			go func() {
				wavPath := filepath.Join(d.dir, "page-tone.wav")
				if err := audiotest.WriteWAV(wavPath, audiotest.Sine(1000, 44100, 0.5, 44100*3/2, 1), 44100); err != nil {
					playErr <- err
					return
				}
				c := exec.Command(testenv.Tool(t, "paplay"), "--device=speaker", wavPath)
				c.Env = d.pulseEnv()
				if out, err := c.CombinedOutput(); err != nil {
					playErr <- fmt.Errorf("%v: %s", err, out)
					return
				}
				playErr <- nil
			}()
		case "mic":
		default:
			last = line
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("node page.mjs: %v\n%s", err, errb.String())
	}
	if playing {
		if err := <-playErr; err != nil {
			t.Fatalf("paplay: %v", err)
		}
	}
	var r pageResult
	if err := json.Unmarshal([]byte(last), &r); err != nil {
		t.Fatalf("page.mjs printed no result: %v\n%s", err, errb.String())
	}
	if len(r.Logs) > 0 {
		t.Logf("page console:\n%s", strings.Join(r.Logs, "\n"))
	}
	if !r.Support.Secure || !r.Support.Webcodecs || !r.Support.AudioWorklet {
		t.Fatalf("page from http://%s: support %+v, want a secure context with WebCodecs", d.speaker, r.Support)
	}

	t.Run("speaker", func(t *testing.T) {
		sp := r.Speaker
		t.Logf("speaker stats: %v", sp.Stats)
		if sp.Playing != "playing" || sp.Stats["codec"] != "opus" {
			t.Fatalf("speaker %q, codec %v; want playing opus", sp.Playing, sp.Stats["codec"])
		}
		raw, err := base64.StdEncoding.DecodeString(sp.Samples)
		if err != nil {
			t.Fatal(err)
		}
		pcm := audiotest.F32LE(raw)
		start, _ := toneAt(t, "page output", pcm, sp.Rate, 1000, 0.02, 1.0)
		// The onset the page heard, on the machine's clock: the batch
		// holding it reached the tap at its stamp, and the onset sits
		// that many samples before the batch's end.
		for i, end := range sp.Ends {
			if end > start && i < len(sp.Stamps) && !played.IsZero() {
				heard := time.UnixMicro(int64(sp.Stamps[i] * 1000)).Add(-time.Duration(float64(end-start) / float64(sp.Rate) * float64(time.Second)))
				t.Logf("onset heard in the page %v after paplay started (tap batch of 10 ms; machine load: %s)", heard.Sub(played).Round(time.Millisecond), loadavg())
				break
			}
		}
	})

	t.Run("microphone", func(t *testing.T) {
		mic := r.Microphone
		t.Logf("microphone state %q, stats %v", mic.State, mic.Stats)
		if mic.State != "open" || mic.Stats["codec"] != "opus" {
			t.Fatalf("microphone %q with codec %v, want open with opus", mic.State, mic.Stats["codec"])
		}
		_ = rec.Process.Signal(syscall.SIGINT)
		<-recDone
		all := []byte(recorded.String())
		// Nothing but the page feeds the source: the whole recording is
		// searched.
		pcm := audiotest.F32LE(all[:len(all)/4*4])
		_, secs := toneAt(t, "microphone source", pcm, 44100, 440, 0.05, 0)
		if math.Abs(secs-micTone)/micTone > 0.1 {
			t.Errorf("recorded %.2f s of the page's 440 Hz, the file holds %.1f s", secs, micTone)
		}
	})
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}
