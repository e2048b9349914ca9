package e2e

import (
	"bufio"
	"context"
	"io"
	"math"
	"net/http"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pulse-sidecar/pulse-sidecar/internal/audiotest"
	"github.com/pulse-sidecar/pulse-sidecar/internal/testenv"
)

// loud is the 10 ms RMS above which decoded audio counts as the tone (which
// is played at amplitude 0.5, RMS 0.35).
const loud = 0.05

// TestImage loads the image once and runs every case against it, each in a
// pod of its own.
func TestImage(t *testing.T) {
	ffmpeg := testenv.Tool(t, "ffmpeg")
	archive := imageArchive(t)
	e := newEngine(t)
	image := e.loadImage(t, archive)
	rep := newReport(t)

	t.Run("speaker", func(t *testing.T) { testSpeaker(t, e, image, ffmpeg, rep) })
	t.Run("speaker_opus", func(t *testing.T) { testSpeakerOpus(t, e, image, ffmpeg) })
	t.Run("speaker_codecs", func(t *testing.T) { testSpeakerCodecs(t, e, image, ffmpeg) })
	t.Run("microphone", func(t *testing.T) { testMicrophone(t, e, image) })
	t.Run("pulse_tcp_cookie", func(t *testing.T) { testPulseTCP(t, e, image) })
	t.Run("health", func(t *testing.T) { testHealth(t, e, image, rep) })
	t.Run("stop", func(t *testing.T) { testStop(t, e, image, rep) })
	t.Run("faults", func(t *testing.T) { testFaults(t, e, image, ffmpeg, rep) })
	t.Run("read_only", func(t *testing.T) { testReadOnly(t, e, image) })
	t.Run("browser", func(t *testing.T) { testBrowser(t, e, image, rep) })
}

// Case 1. The desktop plays a steady 1 kHz tone; the first listener connects
// while it plays (the encoder starts cold), then the desktop plays 20 short
// bursts whose write times are the reference for latency.
func testSpeaker(t *testing.T, e *engine, image, ffmpeg string, rep *report) {
	p := newPod(t, e, image)
	p.startSidecar(t)

	const (
		toneFrom, toneTo = 1.0, 7.0 // seconds of program
		connectAt        = 2.0
		burstsFrom       = 8.0
		bursts           = 20
		burstLen, period = 0.15, 0.6
	)
	length := burstsFrom + bursts*period + 0.5
	sine := tone(1000)
	burstStart := func(k int) int { return int((burstsFrom + float64(k)*period) * playRate) }
	prog := func(i int) float32 {
		s := float64(i) / playRate
		switch {
		case s >= toneFrom && s < toneTo:
			return sine(i)
		case s >= burstsFrom && s < burstsFrom+bursts*period && math.Mod(s-burstsFrom, period) < burstLen:
			return sine(i)
		}
		return 0
	}
	pl := startPlayer(t, p, prog, length, false)
	waitReached(t, pl, int(connectAt*playRate), 60*time.Second)

	l := listen(t, p.speaker)
	waitReached(t, pl, int(length*playRate)-1, time.Duration(length+30)*time.Second)
	// The last burst needs the pipeline's latency to arrive.
	time.Sleep(2 * time.Second)
	data, arrivals, err := l.snapshot()
	if err != nil {
		t.Fatalf("speaker listener disconnected: %v", err)
	}
	if len(arrivals) == 0 {
		t.Fatal("speaker listener received nothing")
	}
	if !packetAligned(data) {
		t.Errorf("speaker stream of %d bytes is not whole 188-byte MPEG-TS packets from its first byte", len(data))
	}
	samples, err := audiotest.DecodeTS(ffmpeg, data, playRate)
	if err != nil {
		t.Fatal(err)
	}
	tl := timeline{arrivals: arrivals, bytes: len(data), samples: len(samples)}
	// Bursts are 450 ms apart; a shorter gap is a dropout inside one.
	ss := spans(samples, playRate, loud, 300*time.Millisecond)
	if len(ss) != 1+bursts {
		t.Fatalf("decoded speaker stream (%.1f s) has %d loud stretches, want the steady tone and %d bursts: %v",
			float64(len(samples))/playRate, len(ss), bursts, ss)
	}

	first := ss[0]
	if before := float64(first.start) / playRate; before > 0.5 {
		t.Errorf("%.2f s of audio before the tone that was playing when the listener connected: stale or queued audio", before)
	}
	if f := audiotest.DominantFrequency(trim(samples, first, playRate/20), playRate); math.Abs(f-1000) > 10 {
		t.Errorf("steady tone decoded at %.1f Hz, want 1000 Hz within 1%%", f)
	}
	rep.add(t, "speaker_time_to_first_bytes_ms", ms(arrivals[0].at.Sub(l.connected)), "ms",
		"first listener, encoder cold: websocket connected to first MPEG-TS message")
	rep.add(t, "speaker_time_to_first_audio_ms", ms(tl.at(first.start).Sub(l.connected)), "ms",
		"first listener, encoder cold: websocket connected to arrival of the first tone sample")

	var lat []float64
	for k, s := range ss[1:] {
		if d := s.seconds(playRate); d < burstLen-0.05 || d > burstLen+0.25 {
			t.Errorf("burst %d lasts %.3f s, want %.2f s", k, d, burstLen)
		}
		written := pl.writtenAt(burstStart(k))
		if written.IsZero() {
			t.Fatalf("burst %d was never written", k)
		}
		d := tl.at(s.start).Sub(written).Seconds()
		if d < -0.05 || d > 2 {
			t.Errorf("burst %d arrived %.3f s after the desktop played it, want 0..2 s", k, d)
		}
		lat = append(lat, d*1000)
	}
	slices.Sort(lat)
	rep.add(t, "speaker_latency_median_ms", percentile(lat, 50), "ms",
		"steady state over 20 tone bursts: desktop's write into paplay to arrival at the websocket listener")
	rep.add(t, "speaker_latency_p95_ms", percentile(lat, 95), "ms", "as speaker_latency_median_ms")
}

// packetAligned: a client joining the stream gets whole TS packets, each
// starting with the sync byte.
func packetAligned(ts []byte) bool {
	if len(ts) == 0 || len(ts)%188 != 0 {
		return false
	}
	for i := 0; i < len(ts); i += 188 {
		if ts[i] != 0x47 {
			return false
		}
	}
	return true
}

func waitReached(t *testing.T, pl *player, sample int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !pl.reached(sample) {
		if time.Now().After(deadline) {
			t.Fatalf("the desktop's player did not reach %.1f s of its program within %s", float64(sample)/playRate, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Case 2. A client sends a 440 Hz tone as float32 at 48 kHz in 512-byte
// messages; the desktop records the microphone source at PulseAudio's
// 44.1 kHz, so right pitch and duration mean the sidecar resampled.
func testMicrophone(t *testing.T, e *engine, image string) {
	p := newPod(t, e, image)
	p.startSidecar(t)
	rec := startRecorder(t, p)

	conn, resp, err := websocket.DefaultDialer.Dial("ws://"+p.microphone+"/?format=f32le&rate=48000", nil)
	if err != nil {
		t.Fatalf("microphone websocket %s: %v", p.microphone, err)
	}
	resp.Body.Close()
	defer conn.Close()
	const rate, toneSeconds = 48000, 2.0
	signal := append(make([]float32, rate*3/10), audiotest.Sine(440, rate, 0.5, int(toneSeconds*rate), 1)...)
	signal = append(signal, make([]float32, rate/2)...)
	sendRealTime(t, conn, signal, rate)
	time.Sleep(time.Second)
	samples := rec.stop(t)

	ss := spans(samples, playRate, loud, 200*time.Millisecond)
	if len(ss) != 1 {
		t.Fatalf("recording of %.1f s has %d loud stretches, want the one tone: %v", float64(len(samples))/playRate, len(ss), ss)
	}
	t.Logf("recorded %.3f s of tone at %.1f Hz", ss[0].seconds(playRate),
		audiotest.DominantFrequency(trim(samples, ss[0], playRate/20), playRate))
	if d := ss[0].seconds(playRate); math.Abs(d-toneSeconds) > 0.15 {
		t.Errorf("recorded tone lasts %.3f s, want %.1f s: wrong speed or lost audio", d, toneSeconds)
	}
	if f := audiotest.DominantFrequency(trim(samples, ss[0], playRate/20), playRate); math.Abs(f-440) > 4.4 {
		t.Errorf("recorded tone at %.1f Hz, want 440 Hz within 1%%", f)
	}
}

// sendRealTime sends float32 samples in 128-sample messages at the pace a
// browser's AudioWorklet does.
func sendRealTime(t *testing.T, conn *websocket.Conn, signal []float32, rate int) {
	t.Helper()
	start := time.Now()
	for sent := 0; sent < len(signal); {
		due := int(time.Since(start).Seconds() * float64(rate))
		for ; sent+128 <= len(signal) && sent < due; sent += 128 {
			if err := conn.WriteMessage(websocket.BinaryMessage, audiotest.F32LEBytes(signal[sent:sent+128])); err != nil {
				t.Fatalf("microphone websocket: %v", err)
			}
		}
		if sent+128 > len(signal) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// recorder is parecord in the desktop container recording the microphone
// source to its stdout.
type recorder struct {
	p    *pod
	mu   sync.Mutex
	data []byte
	done chan struct{} // closed when parecord's podman exec ended
}

func startRecorder(t *testing.T, p *pod) *recorder {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := p.e.command(ctx, p.desktopExec(nil, "parecord", "--device=microphone", "--latency-msec=20", "--raw",
		"--format=float32le", "--rate=44100", "--channels=1")...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &recorder{p: p, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		// The recording ends with parecord; how it ended shows in the
		// recording itself.
		io.Copy(r, bufio.NewReader(out))
		cmd.Wait()
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			t.Error("parecord's podman exec did not end")
		}
	})
	// Recording has begun once PulseAudio lists the source output.
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := p.desktopRun(t, 30*time.Second, nil, "pactl", "list", "short", "source-outputs")
		if err == nil && strings.TrimSpace(out) != "" {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("parecord never showed up as a source output: %v %s", err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.data = append(r.data, b...)
	return len(b), nil
}

// stop ends parecord with SIGINT, which makes it flush, and returns the
// recording.
func (r *recorder) stop(t *testing.T) []float32 {
	t.Helper()
	pids := r.p.hostPIDs(t, r.p.desktop, "parecord")
	if len(pids) != 1 {
		t.Fatalf("want one parecord in %s, found %v", r.p.desktop, pids)
	}
	if err := syscall.Kill(pids[0], syscall.SIGINT); err != nil {
		t.Fatalf("SIGINT to parecord (host PID %d): %v", pids[0], err)
	}
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		t.Fatal("parecord did not stop on SIGINT")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return audiotest.F32LE(r.data)
}

// Case 3. PulseAudio over TCP inside the pod: the cookie from
// PULSEAUDIO_COOKIE lets a client play, any other cookie is refused.
func testPulseTCP(t *testing.T, e *engine, image string) {
	p := newPod(t, e, image)
	p.startSidecar(t)
	wav := filepath.Join(p.feed, "tone.wav")
	if err := audiotest.WriteWAV(wav, audiotest.Sine(1000, playRate, 0.5, playRate/2, 1), playRate); err != nil {
		t.Fatal(err)
	}
	server := "PULSE_SERVER=tcp:127.0.0.1:4713"
	good := "PULSE_COOKIE=" + p.cookieFile(t, "good-cookie", p.cookie)
	bad := "PULSE_COOKIE=" + p.cookieFile(t, "bad-cookie", randomHex(t, 16))

	if out, err := p.desktopRun(t, time.Minute, []string{server, good}, "paplay", "/feed/tone.wav"); err != nil {
		t.Errorf("paplay over TCP with the cookie: %v\n%s", err, out)
	}
	if out, err := p.desktopRun(t, time.Minute, []string{server, good}, "pactl", "info"); err != nil || !strings.Contains(out, "Server Name") {
		t.Errorf("pactl info over TCP with the cookie: %v\n%s", err, out)
	}
	for _, env := range [][]string{{server, bad}, {server, "PULSE_COOKIE=/feed/no-such-cookie"}} {
		out, err := p.desktopRun(t, time.Minute, env, "pactl", "info")
		if err == nil {
			t.Errorf("pactl info over TCP with %s was accepted:\n%s", env[1], out)
		} else if !strings.Contains(err.Error(), "denied") {
			t.Errorf("pactl info over TCP with %s failed, but not as access denied: %v", env[1], err)
		}
		if out, err := p.desktopRun(t, time.Minute, env, "paplay", "/feed/tone.wav"); err == nil {
			t.Errorf("paplay over TCP with %s played:\n%s", env[1], out)
		}
	}
}

// Case 4. `podman healthcheck run` turns healthy soon after start and
// /readyz agrees.
func testHealth(t *testing.T, e *engine, image string, rep *report) {
	p := newPod(t, e, image)
	start := time.Now()
	e.must(t, p.sidecarArgs()...)
	started := time.Now()
	var healthy time.Duration
	// The target is 2 s; the assertion leaves room for a loaded machine and
	// the report keeps the figure.
	deadline := start.Add(10 * time.Second)
	for {
		_, err := e.try(context.Background(), 30*time.Second, "healthcheck", "run", p.sidecar)
		if err == nil {
			healthy = time.Since(start)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("podman healthcheck run not healthy within 10 s of podman run: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code := p.readyz(); code != http.StatusOK {
		t.Errorf("healthcheck healthy but /readyz answers %d", code)
	}
	p.waitReady(t, 10*time.Second)
	rep.add(t, "container_start_to_healthy_ms", ms(healthy), "ms",
		"`podman run -d` invoked to the first healthy `podman healthcheck run`")
	rep.add(t, "container_run_command_ms", ms(started.Sub(start)), "ms", "`podman run -d` of the sidecar in a running pod")
	if healthy > 2*time.Second {
		t.Logf("healthy after %s, more than the 2 s target (a loaded machine?)", healthy.Round(time.Millisecond))
	}
	// Ready from the daemon's side, without podman's exec overhead.
	q := newPod(t, e, image)
	start = time.Now()
	e.must(t, q.sidecarArgs()...)
	q.waitReady(t, 60*time.Second)
	rep.add(t, "container_start_to_ready_ms", ms(time.Since(start)), "ms", "`podman run -d` invoked to /readyz 200 on the published port")
}

// Case 5. `podman stop` ends the sidecar with exit code 0 in time and leaves
// the shared /tmp as the desktop had it.
func testStop(t *testing.T, e *engine, image string, rep *report) {
	p := newPod(t, e, image)
	if out, err := p.desktopRun(t, time.Minute, nil, "ffmpeg", "-nostdin", "-loglevel", "error",
		"-f", "lavfi", "-i", "anullsrc", "-t", "0.1", "-y", "/tmp/desktop.wav"); err != nil {
		t.Fatalf("desktop writing to /tmp: %v\n%s", err, out)
	}
	before := p.tmpEntries(t)
	p.startSidecar(t)
	// Busy when stopped: a listener keeps the encoder running, a client
	// plays.
	pl := startPlayer(t, p, tone(1000), 30, false)
	waitReached(t, pl, playRate, 60*time.Second)
	l := listen(t, p.speaker)
	l.waitBytes(t, 4096, 30*time.Second)

	pl.ended = true // paplay dies with the server it plays to
	start := time.Now()
	e.must(t, "stop", "--time", "10", p.sidecar)
	took := time.Since(start)
	rep.add(t, "container_stop_ms", ms(took), "ms", "`podman stop` of a busy sidecar (listener and player connected)")
	if took > 5*time.Second {
		t.Errorf("podman stop took %s, want within 5 s", took.Round(time.Millisecond))
	}
	if code := e.must(t, "inspect", "--format", "{{.State.ExitCode}}", p.sidecar); code != "0" {
		t.Errorf("sidecar exit code %s after podman stop, want 0", code)
	}
	if after := p.tmpEntries(t); !slices.Equal(after, before) {
		t.Errorf("shared /tmp after stop = %q, want what the desktop put there: %q", after, before)
	}
}

// Case 6. SIGKILL to the encoder, then to PulseAudio: the listener stays
// connected and the tone comes back.
func testFaults(t *testing.T, e *engine, image, ffmpeg string, rep *report) {
	p := newPod(t, e, image)
	p.startSidecar(t)
	// restart: a PulseAudio client dies with its server; a desktop app
	// reconnects, and so does this player.
	pl := startPlayer(t, p, tone(1000), 120, true)
	waitReached(t, pl, playRate, 60*time.Second)
	l := listen(t, p.speaker)
	l.waitBytes(t, 64<<10, 30*time.Second)

	for _, victim := range []string{"ffmpeg", "pulseaudio"} {
		pids := p.hostPIDs(t, p.sidecar, victim)
		if len(pids) != 1 {
			t.Fatalf("want one %s in the sidecar, found %v", victim, pids)
		}
		killed := time.Now()
		if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
			t.Fatalf("SIGKILL to %s (host PID %d): %v", victim, pids[0], err)
		}
		back := toneBack(t, l, ffmpeg, killed, 15*time.Second)
		rep.add(t, "recovery_after_"+victim+"_kill_ms", ms(back.Sub(killed)), "ms",
			"SIGKILL to the sidecar's "+victim+" to the arrival of the tone at a listener that stayed connected")
		if d := back.Sub(killed); d > 3*time.Second {
			t.Logf("tone back %s after killing %s, more than the 3 s target (a loaded machine?)", d.Round(time.Millisecond), victim)
		}
		if _, _, err := l.snapshot(); err != nil {
			t.Fatalf("listener disconnected after %s was killed: %v", victim, err)
		}
		p.waitReady(t, 30*time.Second)
	}
}

// toneBack waits until the 1 kHz tone arrives again after a fault at killed
// and returns when its first bytes arrived. The stream's first silence in
// arrivals after the kill (a restarting encoder sends nothing) splits the
// audio still in flight from what came after; without one the restart was
// seamless.
func toneBack(t *testing.T, l *listener, ffmpeg string, killed time.Time, within time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		time.Sleep(500 * time.Millisecond)
		data, arrivals, err := l.snapshot()
		if err != nil {
			t.Fatalf("listener disconnected: %v", err)
		}
		if at, ok := toneAfter(ffmpeg, data, arrivals, killed); ok {
			return at
		}
		if time.Now().After(deadline) {
			t.Fatalf("the tone did not come back within %s", within)
		}
	}
}

func toneAfter(ffmpeg string, data []byte, arrivals []arrival, killed time.Time) (time.Time, bool) {
	first := sort.Search(len(arrivals), func(i int) bool { return arrivals[i].at.After(killed) })
	if first == len(arrivals) {
		return time.Time{}, false
	}
	from := first
	for i := max(first, 1); i < len(arrivals); i++ {
		if arrivals[i].at.Sub(arrivals[i-1].at) > 150*time.Millisecond {
			from = i
			break
		}
	}
	start := 0
	if from > 0 {
		start = arrivals[from-1].end
	}
	seg := data[start:]
	samples, err := audiotest.DecodeTS(ffmpeg, seg, playRate)
	if err != nil || len(samples) == 0 {
		return time.Time{}, false
	}
	for _, s := range spans(samples, playRate, loud, 100*time.Millisecond) {
		f := audiotest.DominantFrequency(trim(samples, s, playRate/50), playRate)
		if s.seconds(playRate) >= 0.3 && math.Abs(f-1000) <= 10 {
			tl := timeline{arrivals: shift(arrivals, start), bytes: len(seg), samples: len(samples)}
			return tl.at(s.start), true
		}
	}
	return time.Time{}, false
}

// shift keeps the arrivals past offset from, relative to it.
func shift(arrivals []arrival, from int) []arrival {
	var out []arrival
	for _, a := range arrivals {
		if a.end > from {
			out = append(out, arrival{at: a.at, end: a.end - from})
		}
	}
	return out
}

// Case 7. With a read-only root, `podman diff` shows nothing written outside
// the mounts the sidecar was given (and the ones podman always adds).
func testReadOnly(t *testing.T, e *engine, image string) {
	p := newPod(t, e, image)
	p.startSidecar(t)
	pl := startPlayer(t, p, tone(1000), 30, false)
	waitReached(t, pl, playRate, 60*time.Second)
	l := listen(t, p.speaker)
	l.waitBytes(t, 16<<10, 30*time.Second)

	mounts := []string{"/tmp", "/container", "/var/run/desktop", "/var/log/desktop",
		// podman's own: --read-only-tmpfs and the files it bind-mounts.
		"/run", "/var/tmp", "/dev", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf"}
	out := e.must(t, "diff", p.sidecar)
	for _, line := range strings.Split(out, "\n") {
		kind, path, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok {
			continue
		}
		if !allowedChange(kind, path, mounts) {
			t.Errorf("podman diff: %s %s is a write outside the sidecar's mounts", kind, path)
		}
	}
	t.Logf("podman diff of the sidecar:\n%s", out)
}

// allowedChange: inside a mount, or a changed parent directory of one (the
// mount point itself may be created).
func allowedChange(kind, path string, mounts []string) bool {
	for _, m := range mounts {
		if path == m || strings.HasPrefix(path, m+"/") {
			return true
		}
		if kind == "C" && strings.HasPrefix(m, path+"/") {
			return true
		}
	}
	return false
}
