package microphone

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sys/unix"

	"github.com/pulse-sidecar/pulse-sidecar/internal/audiotest"
	"github.com/pulse-sidecar/pulse-sidecar/internal/fifo"
	"github.com/pulse-sidecar/pulse-sidecar/internal/testenv"
	"github.com/pulse-sidecar/pulse-sidecar/internal/wsserver"
)

const testTimeout = 20 * time.Second

// startRelay runs a relay on 127.0.0.1:0 writing to fifoPath until the test ends.
func startRelay(t *testing.T, fifoPath string, edit func(*Config)) *Relay {
	t.Helper()
	cfg := Config{
		Server:     wsserver.Config{Addr: "127.0.0.1:0"},
		FIFO:       fifoPath,
		Registerer: prometheus.NewRegistry(),
		Log:        slog.New(slog.NewTextHandler(testLog{t}, nil)),
		// These tests send undeclared bytes in the pipe's format and count
		// them exactly; rate detection has tests of its own
		// (undeclared_test.go).
		Undeclared: Undeclared{Passthrough: true},
	}
	if edit != nil {
		edit(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop := runRelay(r)
	t.Cleanup(func() { stop(t, nil) })
	return r
}

// testLog shows the relay's log lines with the test's output.
type testLog struct{ t *testing.T }

func (l testLog) Write(b []byte) (int, error) {
	l.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

func makeFIFO(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "microphone")
	if err := fifo.Make(p, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// pipeReader plays PulseAudio: it drains the FIFO into a buffer.
type pipeReader struct {
	f    *os.File
	mu   sync.Mutex
	data []byte
	done chan struct{}
}

func readPipe(t *testing.T, path string) *pipeReader {
	t.Helper()
	f, err := fifo.OpenReadWrite(path)
	if err != nil {
		t.Fatal(err)
	}
	pr := &pipeReader{f: f, done: make(chan struct{})}
	go func() {
		defer close(pr.done)
		buf := make([]byte, 65536)
		for {
			n, err := f.Read(buf)
			pr.mu.Lock()
			pr.data = append(pr.data, buf[:n]...)
			pr.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(pr.stop)
	return pr
}

func (pr *pipeReader) stop() {
	pr.f.Close()
	<-pr.done
}

func (pr *pipeReader) bytes() []byte {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return append([]byte(nil), pr.data...)
}

// waitFor polls cond until it holds or the test timeout passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func dial(t *testing.T, r *Relay, query string) *websocket.Conn {
	t.Helper()
	c, resp, err := websocket.DefaultDialer.Dial("ws://"+r.Addr().String()+"/?"+query, nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial: %v (HTTP %d)", err, status)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closeCode reads until the server closes and returns the close code.
func closeCode(t *testing.T, c *websocket.Conn) int {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(testTimeout))
	for {
		_, _, err := c.ReadMessage()
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code
		}
		if err != nil {
			t.Fatalf("read: %v, want a close frame", err)
		}
	}
}

func TestRelayConvertsAndKeepsAlignment(t *testing.T) {
	path := makeFIFO(t)
	pr := readPipe(t, path)
	r := startRelay(t, path, nil)
	c := dial(t, r, "format=f32le&rate=48000&jwt_token=ignored")

	src := f32Bytes(audiotest.Sine(440, 48000, 0.5, 12000, 1))
	want := mustConverter(t, Format{F32LE, 48000, 1}, Format{F32LE, 44100, 1})
	var expected []byte
	sizes := []int{512, 511, 1, 513, 3, 1021, 2}
	for i := 0; len(src) > 0; i++ {
		n := min(sizes[i%len(sizes)], len(src))
		expected, _ = want.Convert(expected, src[:n])
		if err := c.WriteMessage(websocket.BinaryMessage, src[:n]); err != nil {
			t.Fatal(err)
		}
		src = src[n:]
		// Pace on what arrived so that nothing is dropped for being early.
		waitFor(t, "converted bytes in the FIFO", func() bool { return len(pr.bytes()) >= len(expected) })
	}
	if got := pr.bytes(); !bytes.Equal(got, expected) {
		t.Fatalf("FIFO got %d bytes, want the %d bytes of the converted stream", len(got), len(expected))
	}
	if d := testutil.ToFloat64(r.m.dropped); d != 0 {
		t.Errorf("bytes_dropped_total = %g, want 0", d)
	}
	if w := testutil.ToFloat64(r.m.written); w != float64(len(expected)) {
		t.Errorf("bytes_written_total = %g, want %d", w, len(expected))
	}
	if s := testutil.ToFloat64(r.m.senders); s != 1 {
		t.Errorf("senders = %g, want 1", s)
	}
}

func TestRelayRejectsTextAndOversize(t *testing.T) {
	path := makeFIFO(t)
	readPipe(t, path)
	r := startRelay(t, path, func(c *Config) { c.MaxMessage = 4096 })

	c := dial(t, r, "")
	if err := c.WriteMessage(websocket.TextMessage, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if code := closeCode(t, c); code != websocket.CloseUnsupportedData {
		t.Errorf("text message: close code %d, want 1003", code)
	}

	waitFor(t, "the sender slot to be released", func() bool { return testutil.ToFloat64(r.m.senders) == 0 })
	c = dial(t, r, "")
	if err := c.WriteMessage(websocket.BinaryMessage, make([]byte, 4097)); err != nil {
		t.Fatal(err)
	}
	if code := closeCode(t, c); code != websocket.CloseMessageTooBig {
		t.Errorf("oversize message: close code %d, want 1009", code)
	}
	if n := testutil.ToFloat64(r.m.rejected.WithLabelValues(reasonText)); n != 1 {
		t.Errorf("rejected_total{reason=text} = %g, want 1", n)
	}
	waitFor(t, "too_big counted", func() bool { return testutil.ToFloat64(r.m.rejected.WithLabelValues(reasonTooBig)) == 1 })
}

func TestRelayCountsInvalidSamples(t *testing.T) {
	path := makeFIFO(t)
	pr := readPipe(t, path)
	r := startRelay(t, path, nil)
	c := dial(t, r, "")
	if err := c.WriteMessage(websocket.BinaryMessage, f32Bytes([]float32{0.5, float32(math.NaN()), 0.25})); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the message in the FIFO", func() bool { return len(pr.bytes()) == 12 })
	if got := f32Samples(t, pr.bytes()); got[1] != 0 {
		t.Errorf("NaN came out as %g, want silence", got[1])
	}
	if n := testutil.ToFloat64(r.m.sanitized.WithLabelValues(sanitizedNonFinite)); n != 1 {
		t.Errorf("samples_sanitized_total{reason=non_finite} = %g, want 1", n)
	}
}

func TestRelayRejectsBadFormat(t *testing.T) {
	r := startRelay(t, makeFIFO(t), nil)
	for query, param := range map[string]string{"format=mp3": "format", "rate=1000": "rate", "channels=12": "channels",
		"channels=8": "channels", "rate=44101": "rate"} {
		_, resp, err := websocket.DefaultDialer.Dial("ws://"+r.Addr().String()+"/?"+query, nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: err %v, want HTTP 400", query, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), param) {
			t.Errorf("%s: body %q does not name %q", query, body, param)
		}
	}
	if n := refused(t, r, wsserver.ReasonParams); n != 5 {
		t.Errorf("refused_total{reason=params} = %g, want 5", n)
	}
}

// The newest sender takes the microphone over: the previous one is closed
// with 4001 and its audio no longer reaches the pipe.
func TestRelayNewestSenderWins(t *testing.T) {
	path := makeFIFO(t)
	pr := readPipe(t, path)
	r := startRelay(t, path, nil)
	msg := f32Bytes(audiotest.Sine(440, 44100, 0.5, 128, 1))

	first := dial(t, r, "")
	send := func(c *websocket.Conn, total int) {
		t.Helper()
		if err := c.WriteMessage(websocket.BinaryMessage, msg); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "audio from the sender", func() bool { return len(pr.bytes()) >= total })
	}
	send(first, 512)

	second := dial(t, r, "")
	if code := closeCode(t, first); code != CloseReplaced {
		t.Errorf("first sender: close code %d, want %d", code, CloseReplaced)
	}
	send(second, 1024)
	if n := testutil.ToFloat64(r.m.replaced); n != 1 {
		t.Errorf("senders_replaced_total = %g, want 1", n)
	}
	if n := testutil.ToFloat64(r.m.senders); n != 1 {
		t.Errorf("senders = %g, want 1", n)
	}

	// Once the second leaves, nobody sends.
	second.Close()
	waitFor(t, "the sender slot to be released", func() bool { return testutil.ToFloat64(r.m.senders) == 0 })
	third := dial(t, r, "")
	send(third, 1536)
}

// A sender whose peer vanished without a close (half-open: the laptop lost
// its network) answers nothing; the next sender gets the microphone at
// once all the same.
func TestRelayHalfOpenSenderReplacedAtOnce(t *testing.T) {
	path := makeFIFO(t)
	pr := readPipe(t, path)
	r := startRelay(t, path, nil)
	first := dial(t, r, "")
	if err := first.WriteMessage(websocket.BinaryMessage, make([]byte, 512)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first sender's audio", func() bool { return len(pr.bytes()) >= 512 })
	// Never read again, never answer: what a vanished peer looks like from
	// here (its socket stays open, nothing comes back).
	start := time.Now()
	second := dial(t, r, "")
	if err := second.WriteMessage(websocket.BinaryMessage, make([]byte, 512)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the second sender's audio", func() bool { return len(pr.bytes()) >= 1024 })
	took := time.Since(start)
	t.Logf("second sender's audio in the pipe %v after it connected", took)
	if took > 3*time.Second {
		t.Errorf("second sender waited %v for a half-open first one, want well under 1 s", took)
	}
}

// A malformed request never costs the current sender its microphone.
func TestRelayMalformedRequestKeepsSender(t *testing.T) {
	path := makeFIFO(t)
	pr := readPipe(t, path)
	r := startRelay(t, path, nil)
	first := dial(t, r, "")
	if err := first.WriteMessage(websocket.BinaryMessage, make([]byte, 512)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "audio", func() bool { return len(pr.bytes()) >= 512 })
	for _, q := range []string{"rate=1", "channels=8", "format=u8"} {
		if _, resp, err := websocket.DefaultDialer.Dial("ws://"+r.Addr().String()+"/?"+q, nil); err == nil || resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %v, want 400", q, err)
		}
	}
	if err := first.WriteMessage(websocket.BinaryMessage, make([]byte, 512)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first sender's audio after the malformed requests", func() bool { return len(pr.bytes()) >= 1024 })
	if n := testutil.ToFloat64(r.m.replaced); n != 0 {
		t.Errorf("senders_replaced_total = %g, want 0", n)
	}
}

// refused reads the websocket layer's refused_total for reason.
func refused(t *testing.T, r *Relay, reason string) float64 {
	t.Helper()
	mfs, err := r.cfg.Registerer.(prometheus.Gatherer).Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "pulse_sidecar_microphone_refused_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return -1
}

func TestRelayDropsWithoutReader(t *testing.T) {
	path := makeFIFO(t)
	r := startRelay(t, path, nil)
	c := dial(t, r, "")
	msg := f32Bytes(audiotest.Sine(440, 44100, 0.5, 128, 1))
	const n = 200
	for range n {
		if err := c.WriteMessage(websocket.BinaryMessage, msg); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "every message processed", func() bool { return testutil.ToFloat64(r.m.bytesIn) == n*512 })
	if d := testutil.ToFloat64(r.m.dropped); d != n*512 {
		t.Errorf("bytes_dropped_total = %g, want %d (no reader: ENXIO)", d, n*512)
	}
}

func TestRelayDropsWholeFramesWhenPipeIsFull(t *testing.T) {
	path := makeFIFO(t)
	// A reader that never reads: PulseAudio with nothing recording.
	stalled, err := fifo.OpenReadWrite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	r := startRelay(t, path, func(c *Config) { c.Format, c.Channels = "s16le", 2 }) // 4-byte frames
	c := dial(t, r, "format=f32le&rate=44100&channels=1")
	msg := f32Bytes(audiotest.Sine(440, 44100, 0.5, 127, 1))
	const n = 400 // 2 s of audio: far more than the pipe holds
	for range n {
		if err := c.WriteMessage(websocket.BinaryMessage, msg); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "every message processed", func() bool { return testutil.ToFloat64(r.m.bytesIn) == float64(n*len(msg)) })
	written, dropped := testutil.ToFloat64(r.m.written), testutil.ToFloat64(r.m.dropped)
	if dropped == 0 || written+dropped != n*127*4 {
		t.Errorf("written %g + dropped %g, want %d with drops", written, dropped, n*127*4)
	}
	size, err := fifo.PipeSize(stalled)
	if err != nil {
		t.Fatal(err)
	}
	if size > 16384 {
		t.Errorf("pipe buffer %d bytes, want it shrunk to about 50 ms (<= 16384)", size)
	}
	var queued int
	if err := unixIoctlInt(stalled, &queued); err != nil {
		t.Fatal(err)
	}
	if queued != int(written) || queued%4 != 0 {
		t.Errorf("pipe holds %d bytes (written %g), want a whole number of 4-byte frames", queued, written)
	}
	if limit := 44100 * 4 / 20; queued > limit {
		t.Errorf("pipe holds %d bytes, more than 50 ms (%d bytes)", queued, limit)
	}
}

// unixIoctlInt reads how many bytes wait in a pipe (FIONREAD, spelled TIOCINQ).
func unixIoctlInt(f *os.File, v *int) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ierr error
	if err := rc.Control(func(fd uintptr) { *v, ierr = unix.IoctlGetInt(int(fd), unix.TIOCINQ) }); err != nil {
		return err
	}
	return ierr
}

func TestRelayReopensAfterPulseAudioRestart(t *testing.T) {
	path := makeFIFO(t)
	pr := readPipe(t, path)
	r := startRelay(t, path, nil)
	c := dial(t, r, "")
	msg := f32Bytes(audiotest.Sine(440, 44100, 0.5, 128, 1))
	if err := c.WriteMessage(websocket.BinaryMessage, msg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "audio before the restart", func() bool { return len(pr.bytes()) == 512 })

	// PulseAudio restarting: its reader goes, the FIFO is removed and made anew.
	pr.stop()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := fifo.Make(path, 0o600); err != nil {
		t.Fatal(err)
	}
	pr2 := readPipe(t, path)
	for i := 0; len(pr2.bytes()) == 0; i++ {
		if i > 1000 {
			t.Fatal("no audio reached the re-created FIFO")
		}
		if err := c.WriteMessage(websocket.BinaryMessage, msg); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := len(pr2.bytes()); got%4 != 0 {
		t.Errorf("re-created FIFO got %d bytes, not whole frames", got)
	}
}

func TestRelayPingsKeepIdleSenderAlive(t *testing.T) {
	path := makeFIFO(t)
	pr := readPipe(t, path)
	r := startRelay(t, path, func(c *Config) {
		// Many pings, each with ample time for its pong on a loaded machine.
		c.Server.PingInterval = 100 * time.Millisecond
		c.Server.PongWait = 2 * time.Second
	})
	c := dial(t, r, "")
	pings := make(chan struct{}, 100)
	c.SetPingHandler(func(data string) error {
		select {
		case pings <- struct{}{}:
		default:
		}
		return c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	go func() {
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
		}
	}()
	// Silent for 30 pings, well past PongWait: only pongs keep it open.
	for i := range 30 {
		select {
		case <-pings:
		case <-time.After(testTimeout):
			t.Fatalf("ping %d never came", i)
		}
	}
	if err := c.WriteMessage(websocket.BinaryMessage, make([]byte, 512)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "audio after the idle period", func() bool { return len(pr.bytes()) == 512 })
}

func TestRelayOrigins(t *testing.T) {
	// Configured the way an operator may well write it: with a trailing
	// slash and capitals, which no browser's Origin header carries.
	r := startRelay(t, makeFIFO(t), func(c *Config) { c.Server.AllowedOrigins = []string{"https://Desktop.example/"} })
	h := http.Header{"Origin": {"https://evil.example"}}
	if _, resp, err := websocket.DefaultDialer.Dial("ws://"+r.Addr().String()+"/", h); err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("foreign origin: err %v, want HTTP 403", err)
	}
	if got := refused(t, r, wsserver.ReasonOrigin); got != 1 {
		t.Errorf("origin rejections %v, want 1", got)
	}
	h.Set("Origin", "https://desktop.example")
	c, _, err := websocket.DefaultDialer.Dial("ws://"+r.Addr().String()+"/microphone", h)
	if err != nil {
		t.Fatalf("allowed origin: %v", err)
	}
	c.Close()
	if got := refused(t, r, wsserver.ReasonOrigin); got != 1 {
		t.Errorf("origin rejections %v after an allowed origin, want still 1", got)
	}
}

func TestRelayShutdownIgnoresSilentConnections(t *testing.T) {
	r, err := New(Config{Server: wsserver.Config{Addr: "127.0.0.1:0"}, FIFO: makeFIFO(t), Log: slog.New(slog.NewTextHandler(testLog{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	testenv.StopsDespiteSilentConnection(t, r.Addr().String(), r.Run)
}

func TestRelayShutdownClosesSenders(t *testing.T) {
	path := makeFIFO(t)
	r, err := New(Config{Server: wsserver.Config{Addr: "127.0.0.1:0"}, FIFO: path})
	if err != nil {
		t.Fatal(err)
	}
	stop := runRelay(r)
	c := dial(t, r, "")
	if err := c.WriteMessage(websocket.BinaryMessage, make([]byte, 512)); err != nil {
		t.Fatal(err)
	}
	stop(t, c)
}

// runRelay runs r until stop is called. stop cancels Run, expects close
// 1001 on c (unless nil) and Run to return nil, and returns how long that
// took.
func runRelay(r *Relay) (stop func(t *testing.T, c *websocket.Conn) time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	return func(t *testing.T, c *websocket.Conn) time.Duration {
		t.Helper()
		start := time.Now()
		cancel()
		if c != nil {
			if code := closeCode(t, c); code != websocket.CloseGoingAway {
				t.Errorf("close code %d, want 1001", code)
			}
		}
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(testTimeout):
			t.Fatal("Run did not return")
		}
		return time.Since(start)
	}
}

func TestNewReportsAddressInUse(t *testing.T) {
	r := startRelay(t, makeFIFO(t), nil)
	_, err := New(Config{Server: wsserver.Config{Addr: r.Addr().String()}, FIFO: "/nonexistent"})
	if err == nil || !strings.Contains(err.Error(), r.Addr().String()) {
		t.Fatalf("New on a used port: %v, want an error naming %s", err, r.Addr())
	}
	for _, cfg := range []Config{
		{Server: wsserver.Config{Addr: "127.0.0.1:0"}},
		{Server: wsserver.Config{Addr: "127.0.0.1:0"}, FIFO: "x", Format: "u8"},
		{Server: wsserver.Config{Addr: "127.0.0.1:0"}, FIFO: "x", Rate: 1},
		{Server: wsserver.Config{Addr: "127.0.0.1:0"}, FIFO: "x", Rate: 44101},
		{Server: wsserver.Config{Addr: "127.0.0.1:0"}, FIFO: "x", Channels: 8},
		{Server: wsserver.Config{Addr: "127.0.0.1:0", PingInterval: time.Second, PongWait: time.Second}, FIFO: "x"},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded, want an error", cfg)
		}
	}
}

func TestMetricsNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	startRelay(t, makeFIFO(t), func(c *Config) { c.Registerer = reg })
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, mf := range mfs {
		got[mf.GetName()] = true
	}
	for _, name := range []string{"senders", "bytes_in_total", "bytes_written_total", "bytes_dropped_total", "samples_sanitized_total", "senders_replaced_total", "rejected_total", "refused_total", "connections"} {
		if !got["pulse_sidecar_microphone_"+name] {
			t.Errorf("metric pulse_sidecar_microphone_%s not registered", name)
		}
	}
}
