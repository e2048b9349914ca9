package microphone

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pulse-sidecar/pulse-sidecar/internal/audiotest"
	"github.com/pulse-sidecar/pulse-sidecar/internal/ogg"
	"github.com/pulse-sidecar/pulse-sidecar/internal/supervise"
	"github.com/pulse-sidecar/pulse-sidecar/internal/testenv"
	"github.com/pulse-sidecar/pulse-sidecar/internal/wsserver"
)

// opusPackets encodes samples (48 kHz mono) with ffmpeg's libopus in 20 ms
// frames, WebCodecs' default, and returns the packets.
func opusPackets(t *testing.T, ffmpeg string, samples []float32) [][]byte {
	t.Helper()
	cmd := exec.Command(ffmpeg, "-hide_banner", "-loglevel", "error",
		"-f", "f32le", "-ar", "48000", "-ac", "1", "-i", "pipe:0",
		"-c:a", "libopus", "-b:a", "32000", "-frame_duration", "20", "-f", "ogg", "pipe:1")
	cmd.Stdin = bytes.NewReader(audiotest.F32LEBytes(samples))
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ffmpeg encode: %v: %s", err, errb.String())
	}
	rd := ogg.NewReader(bytes.NewReader(out))
	var a ogg.Assembler
	var pkts [][]byte
	for {
		p, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if p.Kind != ogg.KindAudio {
			continue
		}
		for _, k := range a.Push(p) {
			pkts = append(pkts, k.Data)
		}
	}
	return pkts
}

func startTestReaper(t *testing.T) *supervise.Reaper {
	t.Helper()
	r := supervise.NewReaper(nil, false)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = r.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

// decoderPids lists this process's running ffmpeg children.
func decoderPids(t *testing.T) []int {
	t.Helper()
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(stat)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < 0 || s[open+1:end] != "ffmpeg" {
			continue
		}
		fields := strings.Fields(s[end+1:])
		if len(fields) < 2 || fields[0] == "Z" {
			continue
		}
		if ppid, _ := strconv.Atoi(fields[1]); ppid == os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestOpusSenderRecordedByPulseAudio sends what the web client sends with
// ?format=opus (one 20 ms Opus packet per message, in real time) through the
// relay, its ffmpeg decoder and a real module-pipe-source at 44.1 kHz, and
// records the source: the tone keeps its pitch and duration. A replaced
// sender's decoder stops, and so does the last one's when it leaves.
func TestOpusSenderRecordedByPulseAudio(t *testing.T) {
	ffmpeg := testenv.Tool(t, "ffmpeg")
	parecord := testenv.Tool(t, "parecord")
	fifoPath := filepath.Join(t.TempDir(), "microphone")
	pa := testenv.PulseAudio(t,
		"load-module module-null-sink sink_name=speaker",
		"load-module module-pipe-source source_name=microphone file="+fifoPath+" format=float32le rate=44100 channels=1",
	)
	reaper := startTestReaper(t)
	r := startRelay(t, fifoPath, func(c *Config) { c.FFmpeg = ffmpeg; c.Reaper = reaper })

	rec := &recorder{}
	pr := exec.Command(parecord, "-s", pa.Server, "--latency-msec=20", "-d", "microphone",
		"--raw", "--format=float32le", "--rate=44100", "--channels=1")
	pr.Env = pa.Env()
	pr.Stdout = rec
	pr.Stderr = io.Discard
	startProcess(t, pr)

	const toneSeconds = 2.0
	silence := opusPackets(t, ffmpeg, make([]float32, 48000*4))
	tone := opusPackets(t, ffmpeg, audiotest.Sine(440, 48000, 0.5, int(toneSeconds*48000), 1))

	c := dial(t, r, "format=opus&rate=48000")
	waitUntil(t, "the decoder to start", func() bool { return len(decoderPids(t)) == 1 })
	start := time.Now()
	sent := 0
	send := func(pkts [][]byte) {
		t.Helper()
		for _, p := range pkts {
			if err := c.WriteMessage(websocket.BinaryMessage, p); err != nil {
				t.Fatal(err)
			}
			sent++
			time.Sleep(time.Until(start.Add(time.Duration(sent) * 20 * time.Millisecond)))
		}
	}
	for i := 0; rec.len() == 0; i++ {
		if i > 10 {
			t.Fatal("parecord recorded nothing")
		}
		send(silence[:50])
	}
	// A few more packets so the decoder is past its start.
	send(silence[:25])
	send(tone)
	before := rec.len()
	for i := 0; rec.len() < before+44100*4; i++ {
		if i > 20 {
			t.Fatal("recording stopped growing after the tone")
		}
		send(silence[:25])
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
		t.Fatalf("recorded %d samples of silence only; written %g bytes, dropped %g", len(got),
			testutil.ToFloat64(r.m.written), testutil.ToFloat64(r.m.dropped))
	}
	toneGot := got[first : last+1]
	dur := float64(len(toneGot)) / 44100
	if math.Abs(dur-toneSeconds)/toneSeconds > 0.07 {
		t.Errorf("tone lasted %.3f s in the recording, want %.1f s", dur, toneSeconds)
	}
	if f := audiotest.DominantFrequency(toneGot, 44100); math.Abs(f-440)/440 > 0.01 {
		t.Errorf("recorded tone at %.2f Hz, want 440 Hz within 1%%", f)
	}
	t.Logf("recorded %.3f s of tone; bytes written %g, dropped %g", dur,
		testutil.ToFloat64(r.m.written), testutil.ToFloat64(r.m.dropped))

	// A newer sender takes over: the old one is closed with 4001 and its
	// decoder goes; one decoder runs.
	old := decoderPids(t)
	c2 := dial(t, r, "format=opus")
	if code := closeCode(t, c); code != CloseReplaced {
		t.Errorf("replaced Opus sender closed with %d, want %d", code, CloseReplaced)
	}
	waitUntil(t, "the replaced sender's decoder to stop", func() bool {
		p := decoderPids(t)
		return len(p) == 1 && p[0] != old[0]
	})

	// Something that is not Opus closes the sender with 1003 (an empty
	// first byte is no TOC; a code-3 packet without its count byte is
	// malformed).
	if err := c2.WriteMessage(websocket.BinaryMessage, []byte{0x03}); err != nil {
		t.Fatal(err)
	}
	if code := closeCode(t, c2); code != websocket.CloseUnsupportedData {
		t.Errorf("a malformed packet closed the sender with %d, want %d", code, websocket.CloseUnsupportedData)
	}
	waitUntil(t, "the last decoder to stop", func() bool { return len(decoderPids(t)) == 0 })
}

func TestOpusRefusals(t *testing.T) {
	refused := func(r *Relay, q string) {
		t.Helper()
		_, resp, err := websocket.DefaultDialer.Dial("ws://"+r.Addr().String()+"/?"+q, nil)
		if err == nil || resp == nil || resp.StatusCode != 400 {
			t.Errorf("?%s: %v, want 400", q, err)
		}
	}
	// Without a decoder configured, Opus is refused before the upgrade.
	refused(startRelay(t, filepath.Join(t.TempDir(), "microphone"), nil), "format=opus")
	reaper := startTestReaper(t)
	r := startRelay(t, filepath.Join(t.TempDir(), "microphone"), func(c *Config) { c.FFmpeg = "/bin/false"; c.Reaper = reaper })
	for _, q := range []string{"format=opus&rate=1234", "format=opus&channels=3", "format=opus&rate=x"} {
		refused(r, q)
	}
}

// A burst of Opus packets (a sender whose network stalled and flushed five
// seconds at once) is cut, not queued: far less than five seconds of it
// reaches PulseAudio, and what follows is live again.
func TestOpusBurstIsDroppedNotQueued(t *testing.T) {
	ffmpeg := testenv.Tool(t, "ffmpeg")
	parecord := testenv.Tool(t, "parecord")
	fifoPath := filepath.Join(t.TempDir(), "microphone")
	pa := testenv.PulseAudio(t,
		"load-module module-null-sink sink_name=speaker",
		"load-module module-pipe-source source_name=microphone file="+fifoPath+" format=float32le rate=44100 channels=1",
	)
	reaper := startTestReaper(t)
	r := startRelay(t, fifoPath, func(c *Config) { c.FFmpeg = ffmpeg; c.Reaper = reaper })
	rec := &recorder{}
	pr := exec.Command(parecord, "-s", pa.Server, "--latency-msec=20", "-d", "microphone",
		"--raw", "--format=float32le", "--rate=44100", "--channels=1")
	pr.Env = pa.Env()
	pr.Stdout = rec
	pr.Stderr = io.Discard
	startProcess(t, pr)

	silence := opusPackets(t, ffmpeg, make([]float32, 48000*4))
	burst := opusPackets(t, ffmpeg, audiotest.Sine(440, 48000, 0.5, 48000*5, 1))
	c := dial(t, r, "format=opus")
	start := time.Now()
	sent := 0
	realTime := func(pkts [][]byte) {
		t.Helper()
		for _, p := range pkts {
			if err := c.WriteMessage(websocket.BinaryMessage, p); err != nil {
				t.Fatal(err)
			}
			sent++
			time.Sleep(time.Until(start.Add(time.Duration(sent) * 20 * time.Millisecond)))
		}
	}
	for i := 0; rec.len() == 0; i++ {
		if i > 10 {
			t.Fatal("parecord recorded nothing")
		}
		realTime(silence[:50])
	}
	realTime(silence[:25])
	for _, p := range burst {
		if err := c.WriteMessage(websocket.BinaryMessage, p); err != nil {
			t.Fatal(err)
		}
	}
	// The clock restarts: the burst took no time to send.
	start, sent = time.Now(), 0
	before := rec.len()
	for i := 0; rec.len() < before+44100*4*3; i++ {
		if i > 20 {
			t.Fatal("recording stopped growing after the burst")
		}
		realTime(silence[:25])
	}
	got := rec.samples(t)
	loud := 0
	for _, v := range got {
		if math.Abs(float64(v)) > 0.05 {
			loud++
		}
	}
	// A sine at 0.5 is above 0.05 ~94 % of the time.
	secs := float64(loud) / 0.94 / 44100
	t.Logf("a 5 s burst became %.2f s of tone; bytes written %g, dropped %g", secs,
		testutil.ToFloat64(r.m.written), testutil.ToFloat64(r.m.dropped))
	if secs > 1.5 {
		t.Errorf("a 5 s burst of packets played %.2f s of tone: late audio was queued, not dropped", secs)
	}
}

// A decoder hung beyond what SIGCONT and the end of its input cure (here
// one that never reads and ignores TERM) is killed after decoderGrace: a
// relay with its sender connected stops within a second, and the decoder
// is gone.
func TestOpusHungDecoderDoesNotHoldTheStop(t *testing.T) {
	sh := testenv.Tool(t, "sh")
	// Named ffmpeg so that decoderPids finds it.
	hung := filepath.Join(t.TempDir(), "ffmpeg")
	if err := os.WriteFile(hung, []byte("#!"+sh+"\ntrap '' TERM\nwhile :; do sleep 1; done\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	r, err := New(Config{Server: wsserver.Config{Addr: "127.0.0.1:0"}, FIFO: makeFIFO(t), FFmpeg: hung, Reaper: startTestReaper(t),
		Log: slog.New(slog.NewTextHandler(testLog{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	stop := runRelay(r)
	c := dial(t, r, "format=opus")
	waitUntil(t, "the decoder to start", func() bool { return len(decoderPids(t)) == 1 })
	pid := decoderPids(t)[0]
	t.Cleanup(func() {
		if slices.Contains(decoderPids(t), pid) {
			syscall.Kill(-pid, syscall.SIGKILL)
		}
	})
	took := stop(t, c)
	t.Logf("relay with a hung decoder stopped in %v", took)
	// Without margin: a second of grace can never pass it, 200 ms leaves
	// ample room.
	if took > time.Second {
		t.Errorf("the relay took %v to stop, want under 1 s", took)
	}
	if p := decoderPids(t); len(p) != 0 {
		t.Errorf("decoder still running after the relay stopped: %v", p)
	}
}
