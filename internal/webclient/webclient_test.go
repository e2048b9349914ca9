package webclient

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pulse-sidecar/pulse-sidecar/internal/audiotest"
	"github.com/pulse-sidecar/pulse-sidecar/internal/microphone"
	"github.com/pulse-sidecar/pulse-sidecar/internal/ogg"
	"github.com/pulse-sidecar/pulse-sidecar/internal/testenv"
)

func get(t *testing.T, method, u string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func TestHandlerServesTheClient(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	for _, c := range []struct{ path, ctype, contains string }{
		{"/", "text/html; charset=utf-8", `<script type="module" src="page.js">`},
		{"/?jwt_token=abc&microphone=x", "text/html; charset=utf-8", "<title>"},
		{"/client.js", "text/javascript; charset=utf-8", "export function connectSpeaker("},
		{"/page.js", "text/javascript; charset=utf-8", "from './client.js'"},
		{"/worklet.js", "text/javascript; charset=utf-8", "registerProcessor('pulse-sidecar-player'"},
	} {
		resp, body := get(t, "GET", srv.URL+c.path)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != c.ctype {
			t.Errorf("GET %s: %d %q, want 200 %q", c.path, resp.StatusCode, resp.Header.Get("Content-Type"), c.ctype)
		}
		if !bytes.Contains(body, []byte(c.contains)) {
			t.Errorf("GET %s: body lacks %q", c.path, c.contains)
		}
		etag := resp.Header.Get("ETag")
		if resp.Header.Get("Cache-Control") != "no-cache" || etag == "" {
			t.Errorf("GET %s: Cache-Control %q, ETag %q; want no-cache and an ETag", c.path, resp.Header.Get("Cache-Control"), etag)
		}
		for k := range securityHeaders {
			if resp.Header.Get(k) == "" {
				t.Errorf("GET %s: no %s", c.path, k)
			}
		}
		resp, body = get(t, "GET", srv.URL+c.path, "If-None-Match", etag)
		if resp.StatusCode != http.StatusNotModified || len(body) != 0 {
			t.Errorf("GET %s with its ETag: %d with %d bytes, want 304", c.path, resp.StatusCode, len(body))
		}
		resp, body = get(t, "HEAD", srv.URL+c.path)
		if resp.StatusCode != 200 || len(body) != 0 {
			t.Errorf("HEAD %s: %d with %d bytes", c.path, resp.StatusCode, len(body))
		}
	}
	for _, p := range []string{"/index.html", "/static/client.js", "/nope", "/client.js/"} {
		if resp, _ := get(t, "GET", srv.URL+p); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, resp.StatusCode)
		}
	}
	if resp, _ := get(t, "POST", srv.URL+"/"); resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /: %d, Allow %q; want 405", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

// Everything the page loads is one of the served files, by a relative
// URL: nothing from a CDN, and it works under a stripped prefix (/sound/).
func TestClientLoadsOnlyItsOwnFiles(t *testing.T) {
	n := 0
	defer func() {
		if n < 4 {
			t.Errorf("found %d references; the pattern misses some", n)
		}
	}()
	refs := regexp.MustCompile(`(?:src=|href=|from |import\()\s*["']([^"']+)["']|new URL\(["']([^"']+)["'], import\.meta\.url\)`)
	for path, f := range files {
		for _, m := range refs.FindAllSubmatch(f.body, -1) {
			ref := string(m[1]) + string(m[2])
			if ref == "data:," {
				continue
			}
			n++
			if !strings.HasPrefix(ref, "./") && !strings.HasPrefix(ref, "page.js") {
				t.Errorf("%s refers to %q: want a relative URL of a served file", path, ref)
				continue
			}
			if _, ok := files["/"+strings.TrimPrefix(ref, "./")]; !ok {
				t.Errorf("%s refers to %q, which is not served", path, ref)
			}
		}
	}
}

// encodeSine is the speaker's encoder on a 1 kHz sine: libopus, 10 ms
// frames, one page per frame.
func encodeSine(t *testing.T, ffmpeg string, seconds float64) (headers, audio []ogg.Page) {
	t.Helper()
	cmd := exec.Command(ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "lavfi",
		"-i", fmt.Sprintf("sine=frequency=1000:sample_rate=48000:duration=%g", seconds),
		"-ac", "1", "-c:a", "libopus", "-b:a", "96k", "-frame_duration", "10", "-application", "lowdelay",
		"-f", "ogg", "-page_duration", "10000", "-flush_packets", "1", "pipe:1")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("ffmpeg encode: %v: %s", err, errb.String())
	}
	r := ogg.NewReader(&out)
	for {
		p, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if p.Kind == ogg.KindAudio {
			audio = append(audio, p)
		}
	}
	return r.Headers(), audio
}

// micConn is what one microphone connection delivered.
type micConn struct {
	query url.Values
	msgs  [][]byte
	at    []time.Time // when each message arrived
}

// testServer serves Handler on / and the test's websockets: the speaker on
// / (as the sidecar will), the microphone on /mic.
type testServer struct {
	*httptest.Server
	token   string
	speaker []ogg.Page // header pages and audio pages, in the order sent

	mu        sync.Mutex
	speakerQs []url.Values
	mics      []micConn
	flaky     []time.Time // attempts on /flaky, then when its first connection ended
	flakyEnd  time.Time
}

func (s *testServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/flaky" {
		s.serveFlaky(w, r)
		return
	}
	if !websocket.IsWebSocketUpgrade(r) {
		Handler().ServeHTTP(w, r)
		return
	}
	switch r.URL.Path {
	case "/":
		s.serveSpeaker(w, r)
	case "/mic":
		s.serveMicrophone(w, r)
	default:
		http.NotFound(w, r)
	}
}

var upgrader = websocket.Upgrader{}

// serveSpeaker sends the pages as the relay does, one per message, audio
// paced at one 10 ms page per 10 ms.
func (s *testServer) serveSpeaker(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.speakerQs = append(s.speakerQs, r.URL.Query())
	s.mu.Unlock()
	s.stream(w, r, s.speaker)
}

// serveFlaky is a speaker that goes away: its first connection carries
// 30 pages and ends, the next two attempts are refused, the fourth plays.
func (s *testServer) serveFlaky(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	n := len(s.flaky)
	s.flaky = append(s.flaky, time.Now())
	s.mu.Unlock()
	switch n {
	case 0:
		s.stream(w, r, s.speaker[:32])
		s.mu.Lock()
		s.flakyEnd = time.Now()
		s.mu.Unlock()
	case 1, 2:
		http.Error(w, "restarting", http.StatusServiceUnavailable)
	default:
		s.stream(w, r, s.speaker)
	}
}

func (s *testServer) stream(w http.ResponseWriter, r *http.Request, pages []ogg.Page) {
	if r.URL.Query().Get("codec") != "opus" {
		http.Error(w, "codec", http.StatusBadRequest)
		return
	}
	c, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer c.Close()
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
		}
	}()
	due := time.Now()
	for _, p := range pages {
		if p.Kind == ogg.KindAudio {
			due = due.Add(10 * time.Millisecond)
			select {
			case <-gone:
				return
			case <-time.After(time.Until(due)):
			}
		}
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if err := c.WriteMessage(websocket.BinaryMessage, p.Raw); err != nil {
			return
		}
	}
	c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	<-gone
}

func (s *testServer) serveMicrophone(w http.ResponseWriter, r *http.Request) {
	c, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer c.Close()
	mc := micConn{query: r.URL.Query()}
	for {
		typ, b, err := c.ReadMessage()
		if err != nil {
			break
		}
		if typ == websocket.BinaryMessage {
			mc.msgs = append(mc.msgs, b)
			mc.at = append(mc.at, time.Now())
		}
	}
	s.mu.Lock()
	s.mics = append(s.mics, mc)
	s.mu.Unlock()
}

// driveResult is drive.mjs's JSON.
type driveResult struct {
	Page struct {
		Endpoints endpointsJS `json:"endpoints"`
		Support   struct {
			Secure, Webcodecs, AudioWorklet, Microphone bool
			Reasons                                     []string
		} `json:"support"`
		Opus   struct{ Decode, Encode bool } `json:"opus"`
		Table  []endpointsJS                 `json:"table"`
		Notice string                        `json:"notice"`
		TOC    [][]int                       `json:"toc"`
	} `json:"page"`
	Autoplay struct{ Before, After string } `json:"autoplay"`
	Speaker  struct {
		Playing     string
		Rate        int
		First       string
		Second      string
		Quiet       string // at volume 0.25
		StatsFirst  speakerStats
		StatsSecond speakerStats
		UI          map[string]any
	} `json:"speaker"`
	Reconnect struct {
		States []string
		Stats  speakerStats
	} `json:"reconnect"`
	NoWebCodecs struct {
		Notice      string
		PlayEnabled bool
		Mic         micResult
	} `json:"nowebcodecs"`
	MicOpus micResult `json:"mic_opus"`
	MicPCM  micResult `json:"mic_pcm"`
	Logs    []string  `json:"logs"`
}

type endpointsJS struct {
	Href       string `json:"href"`
	Speaker    string `json:"speaker"`
	Microphone string `json:"microphone"`
	Token      string `json:"token"`
}

type speakerStats struct {
	Codec, State, LastError string
	BufferMs, TargetMs      float64
	JitterMs                float64
	Underruns, Dropped      int
	LatencyMs               *float64
	Decoded, Pages, Streams int
	Errors, Reconnects      int
}

type micResult struct {
	State string
	Stats struct {
		Codec, State, Reason, LastError string
		Rate, Sent, Dropped, Errors     int
		LatencyMs                       float64
	}
}

// playwright returns the path of playwright-core's module, installed for
// the end-to-end browser tests from their committed lock.
func playwright(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "e2e", "browser"))
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
	npm := testenv.Tool(t, "npm")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
	}
	return mod
}

func chromiumPath(t *testing.T) string {
	t.Helper()
	p := os.Getenv("E2E_CHROMIUM")
	if p == "" {
		p = "/usr/bin/chromium"
	}
	if _, err := os.Stat(p); err != nil {
		if testenv.CI() {
			t.Fatalf("chromium is required in CI: %v", err)
		}
		t.Skipf("chromium not installed: %v", err)
	}
	return p
}

func samplesOf(t *testing.T, b64 string) []float32 {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	return audiotest.F32LE(raw)
}

// checkTone asserts that samples at rate hold freq within 1 %, loud, for
// at least minSeconds; it returns the tone's length in seconds.
func checkTone(t *testing.T, what string, samples []float32, rate int, freq, minSeconds float64) float64 {
	t.Helper()
	start, end, ok := audiotest.Loud(samples, rate, 0.02)
	if !ok {
		t.Errorf("%s: no tone in %.2f s of audio", what, float64(len(samples))/float64(rate))
		return 0
	}
	d := float64(end-start) / float64(rate)
	if d < minSeconds {
		t.Errorf("%s: %.2f s of tone, want at least %.2f s", what, d, minSeconds)
	}
	edge := rate / 20
	if end-start > 4*edge {
		start, end = start+edge, end-edge
	}
	f := audiotest.DominantFrequency(samples[start:end], float64(rate))
	t.Logf("%s: %.2f s of tone at %.1f Hz, RMS %.3f", what, d, f, audiotest.RMS(samples[start:end]))
	if math.Abs(f-freq) > freq/100 {
		t.Errorf("%s: tone at %.1f Hz, want %g Hz within 1%%", what, f, freq)
	}
	return d
}

// decodeOpus wraps packets into an Ogg Opus stream with the ogg package's
// writer and decodes it with ffmpeg to 48 kHz mono.
func decodeOpus(t *testing.T, ffmpeg string, packets [][]byte) []float32 {
	t.Helper()
	var stream bytes.Buffer
	w, err := ogg.NewOpusWriter(&stream, 1, ogg.OpusHead{Channels: 1, PreSkip: ogg.DefaultPreSkip, InputRate: 48000}, "webclient test")
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range packets {
		if err := w.WritePacket(p); err != nil {
			t.Fatalf("microphone message %d is not an Opus packet: %v", i, err)
		}
	}
	w.Close()
	cmd := exec.Command(ffmpeg, "-hide_banner", "-loglevel", "error", "-i", "pipe:0", "-f", "f32le", "-ac", "1", "-ar", "48000", "pipe:1")
	cmd.Stdin = &stream
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("ffmpeg decode: %v: %s", err, errb.String())
	}
	return audiotest.F32LE(out.Bytes())
}

// The page and module in headless Chromium, against test websockets: the
// speaker plays Opus pages (joined mid-stream, then a chained stream) through
// WebCodecs and the worklet; the microphone's fake capture (440 Hz) arrives
// as Opus packets and as declared PCM.
func TestBrowser(t *testing.T) {
	ffmpeg := testenv.Tool(t, "ffmpeg")
	node := testenv.Tool(t, "node")
	chromium := chromiumPath(t)
	pw := playwright(t)

	// A listener joining mid-stream: the headers, then pages from the
	// middle (a sequence and granule gap); then the encoder "restarts":
	// a chained stream with new headers.
	headA, audioA := encodeSine(t, ffmpeg, 5)
	// Long enough to outlast the speaker's checks: an end of stream
	// would make the client reconnect in the middle of them.
	headB, audioB := encodeSine(t, ffmpeg, 8)
	if len(headA) != 2 || len(headB) != 2 || len(audioA) < 400 {
		t.Fatalf("encoded %d+%d header pages, %d audio pages", len(headA), len(headB), len(audioA))
	}
	s := &testServer{token: "tok/1+2"}
	s.speaker = append(append(append(append(s.speaker, headA...), audioA[50:]...), headB...), audioB...)
	s.Server = httptest.NewServer(s)
	defer s.Close()

	home := t.TempDir()
	wav := filepath.Join(home, "a440.wav")
	if err := audiotest.WriteWAV(wav, audiotest.Sine(440, 48000, 0.5, 48000*10, 1), 48000); err != nil {
		t.Fatal(err)
	}
	pageURL := s.URL + "/?" + url.Values{"jwt_token": {s.token}, "microphone": {"ws" + strings.TrimPrefix(s.URL, "http") + "/mic"}}.Encode()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join("testdata", "drive.mjs"), "--playwright", pw,
		"--page", pageURL, "--chromium", chromium, "--user-data-dir", filepath.Join(home, "profile"), "--fake-audio", wav)
	// A fresh HOME: nothing from the machine's browser profile or audio
	// setup leaks in, and nothing is left behind.
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PULSE_") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "HOME="+home, "XDG_CONFIG_HOME="+home, "XDG_CACHE_HOME="+home)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("node drive.mjs: %v\n%s", err, errb.String())
	}
	var r driveResult
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("drive.mjs printed no result: %v\n%s\n%s", err, out.String(), errb.String())
	}
	if len(r.Logs) > 0 {
		t.Logf("page console:\n%s", strings.Join(r.Logs, "\n"))
	}

	t.Run("page", func(t *testing.T) {
		ws := "ws" + strings.TrimPrefix(s.URL, "http")
		if e := r.Page.Endpoints; e.Speaker != ws+"/" || e.Microphone != ws+"/mic" || e.Token != s.token {
			t.Errorf("page endpoints %+v", e)
		}
		want := []endpointsJS{
			{Speaker: "wss://desk.example/sound/", Microphone: "wss://desk.example/microphone", Token: "abc"},
			{Speaker: "wss://desk.example/sound", Microphone: "wss://desk.example/microphone", Token: "abc"},
			{Speaker: "ws://10.1.2.3:29788/", Microphone: "ws://10.1.2.3:29789/", Token: "t+x"},
			{Speaker: "ws://127.0.0.1:8080/x/", Microphone: "ws://other:1/mic", Token: "q"},
			{Speaker: "ws://127.0.0.1:8080/x/", Microphone: "ws://127.0.0.1:8080/mic"},
		}
		for i, got := range r.Page.Table {
			w := want[i]
			w.Href = got.Href
			if got != w {
				t.Errorf("endpoints(%s) = %+v, want %+v", got.Href, got, w)
			}
		}
		if sp := r.Page.Support; !sp.Secure || !sp.Webcodecs || !sp.AudioWorklet || !sp.Microphone || len(sp.Reasons) > 0 {
			t.Errorf("support() on http://127.0.0.1: %+v, want everything", sp)
		}
		if !r.Page.Opus.Decode || !r.Page.Opus.Encode || r.Page.Notice != "" {
			t.Errorf("opus support %+v, notice %q", r.Page.Opus, r.Page.Notice)
		}
		// The page's packet durations are the ogg package's.
		if len(r.Page.TOC) != 256 {
			t.Fatalf("%d TOC results", len(r.Page.TOC))
		}
		for toc, got := range r.Page.TOC {
			for i, p := range [][]byte{{byte(toc)}, {byte(toc), 0}, {byte(toc), 3}, {byte(toc), 0x3f}, {byte(toc), 0x85}} {
				want, err := ogg.PacketSamples(p)
				if err != nil {
					want = 0
				}
				if got[i] != want {
					t.Errorf("opusPacketSamples(%x) = %d in the page, %d in Go", p, got[i], want)
				}
			}
		}
	})

	t.Run("autoplay", func(t *testing.T) {
		a := r.Autoplay
		t.Logf("?autoplay=1 without a gesture: %q; after a click: %q", a.Before, a.After)
		if !strings.HasPrefix(a.Before, "blocked") || !strings.HasPrefix(a.After, "playing") {
			t.Errorf("the page asked to autoplay shows %q, then %q after a click; want blocked, then playing", a.Before, a.After)
		}
	})

	t.Run("speaker", func(t *testing.T) {
		sp := r.Speaker
		if sp.Playing != "playing" || sp.Rate != 48000 {
			t.Fatalf("speaker %q at %d Hz, want playing at 48000", sp.Playing, sp.Rate)
		}
		checkTone(t, "speaker output, first stream", samplesOf(t, sp.First), sp.Rate, 1000, 1.5)
		second := samplesOf(t, sp.Second)
		checkTone(t, "speaker output, chained stream", second, sp.Rate, 1000, 0.7)
		quiet := samplesOf(t, sp.Quiet)
		// The level: the median RMS of the 10 ms windows that are not
		// silent (an underrun's gap, a dropped frame's phase jump and
		// the end of a capture would skew a whole-slice measure).
		level := func(s []float32) float64 {
			var rms []float64
			for i := 0; i+480 <= len(s); i += 480 {
				if v := audiotest.RMS(s[i : i+480]); v > 0.002 {
					rms = append(rms, v)
				}
			}
			if len(rms) == 0 {
				return 0
			}
			slices.Sort(rms)
			return rms[len(rms)/2]
		}
		if a, b := level(second), level(quiet); b < 0.2*a || b > 0.3*a {
			t.Errorf("at volume 0.25 the tone's RMS is %.4f, at 1 %.4f", b, a)
		}
		for i, st := range []speakerStats{sp.StatsFirst, sp.StatsSecond} {
			lat := "none"
			if st.LatencyMs != nil {
				lat = fmt.Sprintf("%.1f ms", *st.LatencyMs)
			}
			t.Logf("stats %d: %+v, latency %s", i+1, st, lat)
			if st.Codec != "opus" || st.Decoded < 100 || st.Errors != 0 || st.LastError != "" {
				t.Errorf("stats %d: codec %q, %d frames decoded, %d errors (%q)", i+1, st.Codec, st.Decoded, st.Errors, st.LastError)
			}
			if st.LatencyMs == nil || *st.LatencyMs <= 0 || *st.LatencyMs > 500 {
				t.Errorf("stats %d: latency %s, want a measured figure", i+1, lat)
			}
			if st.BufferMs > 80+10 {
				t.Errorf("stats %d: %.1f ms buffered, more than the 8-frame maximum", i+1, st.BufferMs)
			}
		}
		if sp.StatsFirst.Streams != 1 || sp.StatsSecond.Streams != 2 {
			t.Errorf("streams seen %d then %d, want 1 then 2 (the chained stream)", sp.StatsFirst.Streams, sp.StatsSecond.Streams)
		}
		t.Logf("page shows %v", sp.UI)
		if sp.UI["codec"] != "opus" || !strings.HasPrefix(fmt.Sprint(sp.UI["state"]), "playing") {
			t.Errorf("page shows %v", sp.UI)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if len(s.speakerQs) != 2 {
			t.Errorf("%d speaker connections, want 2 (autoplay, Play)", len(s.speakerQs))
		}
		for _, q := range s.speakerQs {
			if q.Get("codec") != "opus" || q.Get("jwt_token") != s.token {
				t.Errorf("speaker websocket query %v, want codec=opus and the page's token", q)
			}
		}
	})

	// The microphone connections end with the page's close(); the server
	// records them as they end.
	var mics []micConn
	for i := 0; i < 100; i++ {
		s.mu.Lock()
		mics = append(mics[:0], s.mics...)
		s.mu.Unlock()
		if len(mics) >= 2 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(mics) != 3 {
		t.Fatalf("%d microphone connections, want 3 (opus, pcm, pcm without WebCodecs)", len(mics))
	}

	t.Run("reconnect", func(t *testing.T) {
		rc := r.Reconnect
		t.Logf("states %v, stats %+v", rc.States, rc.Stats)
		if rc.Stats.State != "playing" || rc.Stats.Reconnects != 3 || rc.Stats.Streams != 2 || rc.Stats.Errors != 2 || rc.Stats.LastError != "" {
			t.Errorf("after a closed and two refused connections: %+v; want playing again, 3 reconnects, 2 streams, 2 errors, none left", rc.Stats)
		}
		s.mu.Lock()
		at, end := append([]time.Time(nil), s.flaky...), s.flakyEnd
		s.mu.Unlock()
		if len(at) != 4 {
			t.Fatalf("%d attempts on the flaky speaker, want 4", len(at))
		}
		// The delay doubles from 0.5 s, give or take a quarter.
		gaps := []time.Duration{at[1].Sub(end), at[2].Sub(at[1]), at[3].Sub(at[2])}
		t.Logf("reconnected after %v", gaps)
		for i, g := range gaps {
			lo := time.Duration(float64(500*time.Millisecond<<i) * 0.75)
			if g < lo || g > 3*lo {
				t.Errorf("reconnect %d after %v, want about %v", i+1, g, 500*time.Millisecond<<i)
			}
		}
	})

	t.Run("without_webcodecs", func(t *testing.T) {
		nw := r.NoWebCodecs
		t.Logf("notice %q; microphone %+v", nw.Notice, nw.Mic)
		if !strings.Contains(nw.Notice, "no WebCodecs") || nw.PlayEnabled {
			t.Errorf("without WebCodecs the page says %q, Play enabled %v; want it to say why and disable Play", nw.Notice, nw.PlayEnabled)
		}
		if nw.Mic.Stats.Codec != "pcm" || !strings.Contains(nw.Mic.Stats.Reason, "no WebCodecs") || nw.Mic.Stats.Sent == 0 {
			t.Errorf("microphone without WebCodecs: %+v, want PCM with the reason", nw.Mic.Stats)
		}
		q := mics[2].query
		if q.Get("format") != "float32le" || q.Get("rate") == "" || len(mics[2].msgs) == 0 {
			t.Errorf("microphone without WebCodecs sent %d messages with query %v", len(mics[2].msgs), q)
		}
	})

	t.Run("microphone_opus", func(t *testing.T) {
		m, st := mics[0], r.MicOpus
		t.Logf("opus microphone: %+v", st)
		if q := m.query; q.Get("format") != "opus" || q.Get("jwt_token") != s.token {
			t.Errorf("query %v, want format=opus and the page's token", q)
		}
		if st.State != "open" || st.Stats.Codec != "opus" || st.Stats.Errors != 0 || st.Stats.Sent != len(m.msgs) {
			t.Errorf("page: %+v; the server got %d messages", st, len(m.msgs))
		}
		var samples int
		for _, p := range m.msgs {
			n, _ := ogg.PacketSamples(p)
			samples += n
		}
		sent := float64(samples) / 48000
		got := decodeOpus(t, ffmpeg, m.msgs)
		d := checkTone(t, "opus microphone", got, 48000, 440, 2)
		if d < sent-0.3 || d > sent+0.1 {
			t.Errorf("decoded %.2f s of tone from %d packets holding %.2f s", d, len(m.msgs), sent)
		}
	})

	t.Run("microphone_pcm", func(t *testing.T) {
		m, st := mics[1], r.MicPCM
		t.Logf("pcm microphone: %+v", st)
		q := m.query
		if q.Get("format") != "float32le" || q.Get("channels") != "1" || q.Get("rate") != fmt.Sprint(st.Stats.Rate) || q.Get("jwt_token") != s.token {
			t.Errorf("query %v, want format=float32le, channels=1, rate=%d and the page's token", q, st.Stats.Rate)
		}
		if st.State != "open" || st.Stats.Codec != "pcm" || st.Stats.Sent != len(m.msgs) {
			t.Errorf("page: %+v; the server got %d messages", st, len(m.msgs))
		}
		var all []float32
		for _, b := range m.msgs {
			all = append(all, audiotest.F32LE(b)...)
		}
		d := checkTone(t, "pcm microphone", all, st.Stats.Rate, 440, 2)
		if sent := float64(len(all)) / float64(st.Stats.Rate); d < sent-0.3 || d > sent+0.05 {
			t.Errorf("%.2f s of tone in %.2f s sent", d, sent)
		}
		// The rate detector for undeclared streams, on a real
		// browser's arrival times.
		for i, c := range []micConn{m, mics[2]} {
			det := microphone.NewRateDetector(nil, 0)
			rate, ok := 0, false
			for j, b := range c.msgs {
				if rate, ok = det.Observe(c.at[j], len(b)/4); ok {
					break
				}
			}
			if !ok {
				rate, ok = det.Check(det.Deadline())
			}
			t.Logf("connection %d: detected %d Hz (%v) from Chromium's arrivals, declared %s", i, rate, ok, c.query.Get("rate"))
			if fmt.Sprint(rate) != c.query.Get("rate") {
				t.Errorf("the rate detector found %d Hz in a stream declared %s Hz", rate, c.query.Get("rate"))
			}
		}
	})
}
