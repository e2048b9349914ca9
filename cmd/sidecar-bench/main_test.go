package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pulse-sidecar/pulse-sidecar/internal/bench"
	"github.com/pulse-sidecar/pulse-sidecar/internal/testenv"
)

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"fanout", "--listeners", "10,5"},
		{"fanout", "--rate", "fast"},
		{"latency", "--bursts", "0"},
		{"latency", "--player", "vlc"},
		{"churn", "--cycles", "0"},
		{"footprint"},
		{"idle"},
		{"soak", "--churn-rate", "-1"},
	} {
		var out, errb bytes.Buffer
		if err := run(context.Background(), args, &out, &errb); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}

// daemon is a real pulse-sidecar on loopback with everything in temp dirs.
type daemon struct {
	cmd                      *exec.Cmd
	fifo, ws, ops, pulseSock string
	runDir                   string
	stderr                   testenv.SyncBuffer
}

func startDaemon(t *testing.T) *daemon {
	t.Helper()
	pulseaudio := testenv.Tool(t, "pulseaudio")
	ffmpeg := testenv.Tool(t, "ffmpeg")
	dir := testenv.ShortTempDir(t)
	bin := filepath.Join(dir, "pulse-sidecar")
	if out, err := exec.Command("go", "build", "-o", bin, "../pulse-sidecar").CombinedOutput(); err != nil {
		t.Fatalf("building the daemon: %v\n%s", err, out)
	}
	d := &daemon{
		fifo: filepath.Join(dir, "speaker"), pulseSock: filepath.Join(dir, "pulse.sock"),
		runDir: filepath.Join(dir, "run"), ops: testenv.FreeAddr(t),
	}
	speaker := testenv.FreeAddr(t)
	d.ws = "ws://" + speaker + "/"
	d.cmd = exec.Command(bin,
		"--speaker-addr", speaker, "--microphone-addr", testenv.FreeAddr(t), "--ops-addr", d.ops,
		"--speaker-fifo", d.fifo, "--microphone-fifo", filepath.Join(dir, "microphone"),
		"--pulse-socket", d.pulseSock, "--run-dir", d.runDir, "--log-dir", "",
		"--pulseaudio", pulseaudio, "--ffmpeg", ffmpeg, "--encoder-linger", "1s")
	d.cmd.Env = []string{"HOME=" + dir, "PATH=" + os.Getenv("PATH")}
	d.cmd.Stderr = &d.stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { d.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			d.cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("daemon stderr:\n%s", d.stderr.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + d.ops + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return d
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon not ready within 30s (last: %v)\n%s", err, d.stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestFanoutAgainstDaemon(t *testing.T) {
	d := startDaemon(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	err := run(ctx, []string{"fanout", "--fifo", d.fifo, "--ws", d.ws,
		"--pid", fmt.Sprint(d.cmd.Process.Pid), "--metrics", "http://" + d.ops + "/metrics",
		"--listeners", "1,10", "--duration", "2s", "--warmup", "1s", "--settle", "0s", "--slow", "2", "--json"},
		&out, &errb)
	if err != nil {
		t.Fatalf("fanout: %v\n%s", err, errb.String())
	}
	var res bench.FanoutResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("fanout JSON: %v\n%s", err, out.String())
	}
	if len(res.Steps) != 2 {
		t.Fatalf("%d steps, want 2: %s", len(res.Steps), out.String())
	}
	for _, s := range res.Steps {
		// The stream is 207 kbit/s; a loaded machine may shift a chunk
		// across the step's edges, not lose half of it.
		if s.KbpsPerListener < 100 || s.Delay.N == 0 || s.Dropped != 0 || s.CPU <= 0 || s.RSS <= 0 {
			t.Errorf("step %+v looks wrong", s)
		}
	}
	if res.Steps[1].Listeners != 10 || res.Steps[1].Slow != 2 {
		t.Errorf("last step had %d listeners and %d slow, want 10 and 2", res.Steps[1].Listeners, res.Steps[1].Slow)
	}
	if res.Left.Listeners != 0 {
		t.Errorf("relay still counts %d listeners after all left", res.Left.Listeners)
	}
	// The table form prints the same run for people.
	if err := res.WriteTable(&out); err != nil || !strings.Contains(out.String(), "p99 ms") {
		t.Errorf("table: %v", err)
	}
}

// The latency run against the real daemon, with its own proof: a second
// listener behind a proxy that delays the stream by 100 ms must measure
// 100 ms more, within 10 ms, over 20 bursts. Both listeners hear the same
// bursts, so the load of the machine cancels out of the difference.
func TestLatencyAgainstDaemon(t *testing.T) {
	paplay := testenv.Tool(t, "paplay")
	pacat := testenv.Tool(t, "pacat")
	testenv.Tool(t, "pactl")
	d := startDaemon(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	err := run(ctx, []string{"latency", "--ws", d.ws, "--metrics", "http://" + d.ops + "/metrics",
		"--pulse-server", "unix:" + d.pulseSock, "--pulse-cookie", filepath.Join(d.runDir, "cookie"),
		"--paplay", paplay, "--pacat", pacat, "--ffmpeg", testenv.Tool(t, "ffmpeg"), "--bursts", "20",
		"--breakdown", "--fifo", d.fifo, "--pid", fmt.Sprint(d.cmd.Process.Pid), "--proof-delay", "100ms", "--json"}, &out, &errb)
	if err != nil {
		t.Fatalf("latency: %v\n%s", err, errb.String())
	}
	var res bench.LatencyResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("latency JSON: %v\n%s", err, out.String())
	}
	var table bytes.Buffer
	res.WriteTable(&table)
	t.Logf("latency run:\n%s", table.String())
	if res.Summary.N < 18 || res.Summary.P50 <= 0 || res.Summary.P50 > 5*time.Second || res.FirstAudio <= 0 {
		t.Errorf("latency result %+v looks wrong\n%s", res, errb.String())
	}
	if res.Cold == nil || !*res.Cold {
		t.Errorf("the first listener of a fresh daemon should find the encoder cold: %v", res.Cold)
	}
	if res.Added == nil || res.Added.N < 18 {
		t.Fatalf("the delayed listener saw too few bursts: %+v", res.Added)
	}
	if off := res.Added.P50 - res.ProofDelay; off < -10*time.Millisecond || off > 10*time.Millisecond {
		t.Errorf("a %v delay was measured as %v (median of %d bursts): more than 10 ms off",
			res.ProofDelay, res.Added.P50, res.Added.N)
	}
	if len(res.Stages) == 0 || len(res.Encoder) == 0 || res.Encoder[0] == "" {
		t.Errorf("no breakdown: stages %+v, encoder %q", res.Stages, res.Encoder)
	}
	for _, s := range res.Stages[:1] {
		if s.Summary.N < 18 {
			t.Errorf("stage %q saw %d bursts", s.Name, s.Summary.N)
		}
	}
	if res.Lost != 0 || res.Frames == 0 {
		t.Errorf("listener stream: %d frames, %d continuity errors", res.Frames, res.Lost)
	}
}

func TestFootprintAgainstDaemon(t *testing.T) {
	d := startDaemon(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	err := run(ctx, []string{"footprint", "--ws", d.ws, "--pid", fmt.Sprint(d.cmd.Process.Pid),
		"--duration", "2s", "--listeners", "1", "--after", "3s", "--json"}, &out, &errb)
	if err != nil {
		t.Fatalf("footprint: %v\n%s", err, errb.String())
	}
	var res bench.FootprintResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("footprint JSON: %v\n%s", err, out.String())
	}
	if len(res.Phases) != 3 {
		t.Fatalf("%d phases, want idle, streaming and after: %s", len(res.Phases), out.String())
	}
	comms := func(ph bench.FootprintPhase) []string {
		var c []string
		for _, p := range ph.Procs {
			c = append(c, p.Comm)
		}
		return c
	}
	idle, st := res.Phases[0], res.Phases[1]
	// Idle: the daemon and PulseAudio, no encoder; streaming adds ffmpeg.
	if !slices.Contains(comms(idle), "pulseaudio") || slices.Contains(comms(idle), "ffmpeg") {
		t.Errorf("idle processes %q: want pulseaudio and no ffmpeg", comms(idle))
	}
	if !slices.Contains(comms(st), "ffmpeg") {
		t.Errorf("streaming processes %q: want ffmpeg", comms(st))
	}
	// MP2 at 128 kbit/s in MPEG-TS is ~207 kbit/s on the wire.
	if st.Kbps < 100 || st.Kbps > 400 {
		t.Errorf("the listener received %.1f kbit/s while streaming, want ~207", st.Kbps)
	}
	// 3 s after the listener left, past the 1 s linger: no encoder.
	if after := res.Phases[2]; slices.Contains(comms(after), "ffmpeg") {
		t.Errorf("processes %q 3 s after the listener left: the encoder should have stopped", comms(after))
	}
	for _, ph := range res.Phases {
		if ph.RSS <= 0 || ph.PSS <= 0 || ph.PSS > ph.RSS {
			t.Errorf("%s: RSS %d, PSS %d", ph.Name, ph.RSS, ph.PSS)
		}
	}
	if st.CPU <= 0 || st.CPU <= idle.CPU {
		t.Errorf("streaming CPU %.3f, idle %.3f: encoding should cost something", st.CPU, idle.CPU)
	}
}

func TestChurnAgainstDaemon(t *testing.T) {
	d := startDaemon(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	err := run(ctx, []string{"churn", "--ws", d.ws, "--pid", fmt.Sprint(d.cmd.Process.Pid),
		"--metrics", "http://" + d.ops + "/metrics", "--cycles", "50", "--cycle-rate", "50", "--settle", "0s", "--json"},
		&out, &errb)
	if err != nil {
		t.Fatalf("churn: %v\n%s", err, errb.String())
	}
	var res bench.ChurnResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("churn JSON: %v\n%s", err, out.String())
	}
	if res.Failed != 0 || res.Left.Listeners != 0 || res.Before.Goroutines == 0 {
		t.Errorf("churn result %+v", res)
	}
}

// The latency a person hears, for both codecs in one run: JSMpeg in
// headless Chromium plays the MP2 stream, and the daemon's own client.js,
// loaded from the daemon's own page (a secure context on loopback, so
// WebCodecs exists), plays ?codec=opus. Each page times each onset at its
// audio output, and on each a second tap behind a 100 ms DelayNode on the
// same output proves the chain (tap, clock mapping, matching) by reporting
// those 100 ms back within 10 ms.
func TestHeardLatencyAgainstDaemon(t *testing.T) {
	paplay := testenv.Tool(t, "paplay")
	node := testenv.Tool(t, "node")
	chromium := os.Getenv("E2E_CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	browserDir, err := filepath.Abs("../../internal/e2e/browser")
	if err != nil {
		t.Fatal(err)
	}
	for _, need := range []string{chromium, filepath.Join(browserDir, "node_modules", "playwright-core")} {
		if _, err := os.Stat(need); err != nil {
			if testenv.CI() {
				t.Fatalf("needed in CI (chromium; `npm ci` in internal/e2e/browser): %v", err)
			}
			t.Skipf("not installed: %v", err)
		}
	}
	d := startDaemon(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	err = run(ctx, []string{"latency", "--codec", "both", "--ws", d.ws, "--metrics", "http://" + d.ops + "/metrics",
		"--pulse-server", "unix:" + d.pulseSock, "--pulse-cookie", filepath.Join(d.runDir, "cookie"),
		"--paplay", paplay, "--ffmpeg", testenv.Tool(t, "ffmpeg"), "--bursts", "20",
		"--browser", browserDir, "--node", node, "--chromium", chromium, "--proof-delay", "100ms", "--json"}, &out, &errb)
	if err != nil {
		t.Fatalf("latency: %v\n%s", err, errb.String())
	}
	var res bench.CodecComparison
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("latency JSON: %v\n%s", err, out.String())
	}
	var table bytes.Buffer
	res.WriteTable(&table)
	t.Logf("latency run:\n%s", table.String())
	for _, c := range []struct {
		codec                 string
		heard, added, arrival *bench.Summary
		proof                 time.Duration
	}{
		{"mp2", res.MP2.Heard, res.MP2.HeardAdded, &res.MP2.Summary, res.MP2.ProofDelay},
		{"opus", res.Opus.Heard, res.Opus.HeardAdded, &res.Opus.Summary, res.Opus.ProofDelay},
	} {
		if c.heard == nil || c.heard.N < 18 || c.heard.P50 < c.arrival.P50 {
			t.Errorf("%s heard %+v: want at least 18 bursts, each heard after the message carrying it arrived (median %v)",
				c.codec, c.heard, c.arrival.P50)
			continue
		}
		if c.added == nil || c.added.N < 18 {
			t.Errorf("%s: the delayed tap heard too few bursts: %+v", c.codec, c.added)
			continue
		}
		if off := c.added.P50 - c.proof; c.proof != 100*time.Millisecond || off < -10*time.Millisecond || off > 10*time.Millisecond {
			t.Errorf("%s: a %v delay on the page's output was measured as %v (median of %d bursts): more than 10 ms off",
				c.codec, c.proof, c.added.P50, c.added.N)
		}
	}
	if s := res.Opus.Browser; len(s) == 0 || s[0].Stats == nil || s[0].Stats.Decoded == 0 {
		t.Errorf("the Opus page reported no client.js figures: %+v", s)
	}
	if t.Failed() {
		t.Logf("progress:\n%s", errb.String())
	}
}

func TestIdleAgainstDaemon(t *testing.T) {
	d := startDaemon(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	if err := run(ctx, []string{"idle", "--pid", fmt.Sprint(d.cmd.Process.Pid), "--duration", "2s", "--json"}, &out, &errb); err != nil {
		t.Fatalf("idle: %v\n%s", err, errb.String())
	}
	var res bench.IdleResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("idle JSON: %v\n%s", err, out.String())
	}
	comms := map[string]bool{}
	for _, p := range res.Processes {
		comms[p.Comm] = true
	}
	if res.Seconds < 1.9 || res.Share < 0 || !comms["pulse-sidecar"] || !comms["pulseaudio"] {
		t.Errorf("idle result %+v", res)
	}
}

// The short soak CI runs: churn, stalled and half-open clients, PulseAudio
// and the encoder killed in turn; the daemon, its readiness and the
// reference listener's audio must survive, and nothing may be left behind.
func TestSoakAgainstDaemon(t *testing.T) {
	d := startDaemon(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	err := run(ctx, []string{"soak", "--ws", d.ws, "--pid", fmt.Sprint(d.cmd.Process.Pid),
		"--metrics", "http://" + d.ops + "/metrics", "--ready", "http://" + d.ops + "/readyz",
		"--duration", "24s", "--churn-rate", "10", "--stalled", "3", "--half-open", "5",
		"--kill-every", "6s", "--settle", "0s", "--json"}, &out, &errb)
	if err != nil {
		t.Fatalf("soak: %v\n%s", err, errb.String())
	}
	var res bench.SoakResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("soak JSON: %v\n%s", err, out.String())
	}
	t.Logf("%s", errb.String())
	if !res.DaemonAlive || !res.ReadyAtEnd || !res.ReferenceConnected {
		t.Errorf("daemon alive %v, ready at end %v, reference listener connected %v", res.DaemonAlive, res.ReadyAtEnd, res.ReferenceConnected)
	}
	if len(res.Kills) < 2 {
		t.Errorf("%d kills, want PulseAudio and the encoder killed at least once each", len(res.Kills))
	}
	for _, k := range res.Kills {
		if !k.Recovered {
			t.Errorf("no audio after killing %s at %.1f s", k.What, k.At)
		}
	}
	if res.ChurnOK == 0 || res.ChurnFailed > res.ChurnOK/4 {
		t.Errorf("churn: %d ok, %d failed (%s)", res.ChurnOK, res.ChurnFailed, res.ChurnFirstErr)
	}
	if res.ListenersAtClose != 0 {
		t.Errorf("relay counts %d listeners after all left", res.ListenersAtClose)
	}
	var table bytes.Buffer
	if err := res.WriteTable(&table); err != nil || !strings.Contains(table.String(), "kills:") {
		t.Errorf("table: %v\n%s", err, table.String())
	}
}
