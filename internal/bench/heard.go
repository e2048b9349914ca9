package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Browser is headless Chromium playing the speaker stream with JSMpeg as the
// desktop's web client does, driven by run.mjs in Dir (internal/e2e/browser,
// with its npm packages installed), which reports when each onset left the
// page's audio output.
type Browser struct {
	Dir      string
	Node     string // node binary ("node" when empty)
	Chromium string // "/usr/bin/chromium" when empty
}

// HeardPlayer is one tap's report: the first on JSMpeg's output, the second
// (with a proof delay) behind a DelayNode on the same output.
type HeardPlayer struct {
	Onsets        []float64 `json:"onsets"` // Unix milliseconds at the output
	SampleRate    float64   `json:"sampleRate"`
	State         string    `json:"state"`
	BaseLatency   float64   `json:"baseLatency"`
	OutputLatency float64   `json:"outputLatency"`
	Mapped        string    `json:"mapped"`
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

// start serves Dir on loopback, opens the page on ws and returns once JSMpeg
// plays; the page then listens for seconds. A positive delay adds a second
// tap on the page's output behind a DelayNode of that length.
func (b Browser) start(ctx context.Context, ws string, delay time.Duration, seconds float64) (*heardRun, error) {
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
	h := &heardRun{srv: &http.Server{Handler: http.FileServer(http.Dir(b.Dir)), ReadHeaderTimeout: 10 * time.Second}, done: make(chan struct{})}
	go h.srv.Serve(ln)
	if h.dir, err = os.MkdirTemp("", "sidecar-bench-browser"); err != nil {
		h.srv.Close()
		return nil, fmt.Errorf("bench: %w", err)
	}
	args := []string{filepath.Join(b.Dir, "run.mjs"), "heard", "--page", "http://" + ln.Addr().String() + "/pages/",
		"--ws", ws, "--seconds", fmt.Sprint(seconds), "--user-data-dir", filepath.Join(h.dir, "profile"), "--chromium", chromium}
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
