package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Browser is headless Chromium playing the speaker stream, driven by run.mjs
// in Dir (internal/e2e/browser, with its npm packages installed), which
// reports when each onset left the page's audio output: MP2 with JSMpeg as
// the desktop's web client does, or Opus with the sidecar's own client.js
// on the sidecar's own page. Both are tapped by the same code (taps.js).
type Browser struct {
	Dir      string
	Node     string // node binary ("node" when empty)
	Chromium string // "/usr/bin/chromium" when empty
}

// HeardPlayer is one tap's report: the first on the player's output, the
// second (with a proof delay) behind a DelayNode on the same output.
type HeardPlayer struct {
	Onsets        []float64 `json:"onsets"` // Unix milliseconds at the output
	SampleRate    float64   `json:"sampleRate"`
	State         string    `json:"state"`
	BaseLatency   float64   `json:"baseLatency"`
	OutputLatency float64   `json:"outputLatency"`
	Mapped        string    `json:"mapped"`
	// Stats is the sidecar client's stats() at the end (first tap of an
	// Opus page only): underruns and drops explain outliers.
	Stats *ClientStats `json:"stats,omitempty"`
}

// ClientStats is what the sidecar's client.js reports of its speaker.
type ClientStats struct {
	State     string  `json:"state"`
	BufferMs  float64 `json:"bufferMs"`
	TargetMs  float64 `json:"targetMs"`
	Underruns int     `json:"underruns"`
	Dropped   int     `json:"dropped"`
	LatencyMs float64 `json:"latencyMs"`
	JitterMs  float64 `json:"jitterMs"`
	Decoded   int     `json:"decoded"`
	Errors    int     `json:"errors"`
	LastError string  `json:"lastError"`
}

// heardRun is a running page.
type heardRun struct {
	cmd     *exec.Cmd
	srv     *http.Server
	stdout  *bufio.Reader
	stderr  bytes.Buffer
	done    chan struct{}
	result  []HeardPlayer
	err     error
	once    sync.Once
	dir     string
	waiting bool
}

// start serves Dir on loopback, opens the page on ws and returns once its
// player plays; the page then listens for seconds. An empty client plays
// MP2 with JSMpeg from Dir's page; otherwise client is the sidecar's own
// page (http://HOST:PORT/ of its speaker port) whose client.js plays Opus.
// A positive delay adds a second tap on the page's output behind a
// DelayNode of that length.
func (b Browser) start(ctx context.Context, ws, client string, delay time.Duration, seconds float64) (*heardRun, error) {
	node, chromium := b.Node, b.Chromium
	if node == "" {
		node = "node"
	}
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(filepath.Join(b.Dir, "node_modules", "playwright-core")); err != nil {
		return nil, fmt.Errorf("bench: browser driver in %s (run `npm ci` there): %w", b.Dir, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench: serving %s: %w", b.Dir, err)
	}
	files := http.FileServer(http.Dir(b.Dir))
	h := &heardRun{srv: &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The sidecar's page imports the tap from here: module scripts
		// and worklets of another origin load only with CORS.
		w.Header().Set("Access-Control-Allow-Origin", "*")
		files.ServeHTTP(w, r)
	})}, done: make(chan struct{})}
	go h.srv.Serve(ln)
	if h.dir, err = os.MkdirTemp("", "sidecar-bench-browser"); err != nil {
		h.srv.Close()
		return nil, fmt.Errorf("bench: %w", err)
	}
	args := []string{filepath.Join(b.Dir, "run.mjs"), "heard", "--page", "http://" + ln.Addr().String() + "/pages/",
		"--ws", ws, "--seconds", fmt.Sprint(seconds), "--user-data-dir", filepath.Join(h.dir, "profile"), "--chromium", chromium}
	if client != "" {
		args[1] = "heard-opus"
		args = append(args, "--client", client)
	}
	if delay > 0 {
		args = append(args, "--delay-ms", fmt.Sprint(delay.Milliseconds()))
	}
	h.cmd = exec.CommandContext(ctx, node, args...)
	// A fresh HOME and no PULSE_*: Chromium plays to no device of the
	// machine's, and its clock is its own fake output's.
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PULSE_") {
			env = append(env, kv)
		}
	}
	h.cmd.Env = append(env, "HOME="+h.dir, "XDG_CONFIG_HOME="+h.dir, "XDG_CACHE_HOME="+h.dir)
	h.cmd.Stderr = &h.stderr
	out, err := h.cmd.StdoutPipe()
	if err != nil {
		h.close()
		return nil, fmt.Errorf("bench: %s: %w", node, err)
	}
	if err := h.cmd.Start(); err != nil {
		h.close()
		return nil, fmt.Errorf("bench: starting %s: %w", node, err)
	}
	h.stdout = bufio.NewReader(out)
	line, err := h.stdout.ReadBytes('\n')
	var ready struct{ Ready bool }
	if err != nil || json.Unmarshal(line, &ready) != nil || !ready.Ready {
		h.cmd.Wait()
		h.close()
		return nil, fmt.Errorf("bench: browser page did not start playing (%q): %v\n%s", line, err, h.stderr.String())
	}
	h.waiting = true
	go h.wait()
	return h, nil
}

func (h *heardRun) wait() {
	defer close(h.done)
	line, rerr := h.stdout.ReadBytes('\n')
	werr := h.cmd.Wait()
	var r struct {
		Players []HeardPlayer
		Logs    []string
	}
	switch {
	case werr != nil:
		h.err = fmt.Errorf("bench: browser: %w\n%s", werr, h.stderr.String())
	case rerr != nil || json.Unmarshal(line, &r) != nil:
		h.err = fmt.Errorf("bench: browser printed no result (%q): %v\n%s", line, rerr, h.stderr.String())
	case len(r.Players) == 0:
		h.err = errors.New("bench: browser reported no player")
	default:
		h.result = r.Players
	}
}

// players waits for the page to finish listening.
func (h *heardRun) players(ctx context.Context) ([]HeardPlayer, error) {
	select {
	case <-h.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return h.result, h.err
}

func (h *heardRun) close() {
	h.once.Do(func() {
		if h.cmd != nil && h.cmd.Process != nil {
			h.cmd.Process.Kill()
		}
		if h.waiting {
			select {
			case <-h.done:
			case <-time.After(10 * time.Second):
			}
		}
		h.srv.Close()
		os.RemoveAll(h.dir)
	})
}

// unixMillis turns the page's Unix milliseconds into times.
func unixMillis(ms []float64) []time.Time {
	out := make([]time.Time, len(ms))
	for i, m := range ms {
		out[i] = time.Unix(0, int64(m*float64(time.Millisecond)))
	}
	return out
}

// listen starts the page for a run of bursts at interval: it listens
// through the settling wait and the bursts, plus time for the last one to
// be heard.
func (b Browser) listen(ctx context.Context, ws, client string, delay time.Duration, bursts int, interval time.Duration) (*heardRun, error) {
	secs := (2*time.Second + time.Duration(bursts)*interval + 3*time.Second).Seconds()
	return b.start(ctx, ws, client, delay, secs)
}

// fill waits for the page's report and sets each burst's Heard (the first
// tap) and HeardDelayed (the tap behind the proof delay).
func (h *heardRun) fill(ctx context.Context, bs []BurstTiming, interval, delay time.Duration) ([]HeardPlayer, error) {
	players, err := h.players(ctx)
	if err != nil {
		return nil, err
	}
	fill(bs, unixMillis(players[0].Onsets), interval, func(b *BurstTiming, d time.Duration) { b.Heard = d })
	if len(players) > 1 {
		fill(bs, unixMillis(players[1].Onsets), interval+delay, func(b *BurstTiming, d time.Duration) { b.HeardDelayed = d })
	}
	return players, nil
}

// heardSummaries summarises the bursts heard, and the proof tap's figure
// minus the direct one's; nil where no burst was.
func heardSummaries(bs []BurstTiming) (heard, added *Summary) {
	var h, a []time.Duration
	for _, b := range bs {
		if b.Heard != 0 {
			h = append(h, b.Heard)
		}
		if b.Heard != 0 && b.HeardDelayed != 0 {
			a = append(a, b.HeardDelayed-b.Heard)
		}
	}
	if len(h) > 0 {
		s := Summarize(h)
		heard = &s
	}
	if len(a) > 0 {
		s := Summarize(a)
		added = &s
	}
	return heard, added
}

// ClientPage is the sidecar's own web client page for the speaker
// websocket ws: the same address over http(s), at the websocket's path
// with a trailing slash (the page's relative URLs need it behind a
// router's prefix), its query (a jwt_token) kept.
func ClientPage(ws string) (string, error) {
	u, err := url.Parse(ws)
	if err != nil {
		return "", fmt.Errorf("bench: speaker URL %q: %w", ws, err)
	}
	switch u.Scheme {
	case "ws":
		u.Scheme = "http"
	case "wss":
		u.Scheme = "https"
	default:
		return "", fmt.Errorf("bench: speaker URL %q: want ws or wss", ws)
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	u.Fragment = ""
	return u.String(), nil
}

// writeBrowser prints what the page said about its taps.
func writeBrowser(w io.Writer, players []HeardPlayer) {
	for _, p := range players {
		fmt.Fprintf(w, "  page: AudioContext %g Hz %s, baseLatency %.1f ms, outputLatency %.1f ms, mapped by %s\n",
			p.SampleRate, p.State, 1000*p.BaseLatency, 1000*p.OutputLatency, p.Mapped)
		if s := p.Stats; s != nil {
			fmt.Fprintf(w, "  client.js: %s, buffer %.1f ms (target %.0f ms), %d underruns, %d dropped, %d decoded, %d errors %s\n",
				s.State, s.BufferMs, s.TargetMs, s.Underruns, s.Dropped, s.Decoded, s.Errors, s.LastError)
		}
	}
}

// opusClientStats is the client.js figures of a page's report, if any.
func opusClientStats(players []HeardPlayer) *ClientStats {
	if len(players) == 0 {
		return nil
	}
	return players[0].Stats
}
