package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pulse-sidecar/pulse-sidecar/internal/audiotest"
	"github.com/pulse-sidecar/pulse-sidecar/internal/testenv"
)

// The daemon is tested as a black box: the real binary, real pulseaudio and
// ffmpeg, loopback ports and temp dirs, exactly the interfaces a pod uses.

// testCookie is what a pod would put into PULSEAUDIO_COOKIE.
const testCookie = "0123456789abcdef0123456789abcdef"

type daemonUnderTest struct {
	t                    *testing.T
	cmd                  *exec.Cmd
	dir                  string
	speaker, mic, ops    string
	socket, cookie       string
	speakerFIFO, micFIFO string
	pulseTCP             string
	exited               chan struct{}
	exitErr              error
	stderr               *testenv.SyncBuffer
}

func buildDaemon(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "pulse-sidecar")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func startDaemon(t *testing.T, bin string, extraArgs []string, extraEnv []string) *daemonUnderTest {
	t.Helper()
	return startDaemonAs(t, bin, extraArgs, append(append(cleanEnv(), "PULSEAUDIO_COOKIE="+testCookie), extraEnv...), nil)
}

// startDaemonEnv starts the daemon with exactly env.
func startDaemonEnv(t *testing.T, bin string, extraArgs []string, env []string) *daemonUnderTest {
	t.Helper()
	return startDaemonAs(t, bin, extraArgs, env, nil)
}

// startDaemonAs starts the daemon with exactly env, and attr (e.g. another
// uid) when not nil.
func startDaemonAs(t *testing.T, bin string, extraArgs []string, env []string, attr *syscall.SysProcAttr) *daemonUnderTest {
	t.Helper()
	testenv.Tool(t, "pulseaudio")
	ffmpeg := testenv.Tool(t, "ffmpeg")
	dir := testenv.ShortTempDir(t)
	d := &daemonUnderTest{
		t: t, dir: dir,
		speaker: testenv.FreeAddr(t), mic: testenv.FreeAddr(t), ops: testenv.FreeAddr(t),
		socket: filepath.Join(dir, "pulse.sock"), cookie: filepath.Join(dir, "run", "cookie"),
		speakerFIFO: filepath.Join(dir, "speaker"), micFIFO: filepath.Join(dir, "microphone"),
		pulseTCP: testenv.FreeAddr(t),
		exited:   make(chan struct{}), stderr: &testenv.SyncBuffer{},
	}
	args := append([]string{
		"--speaker-addr", d.speaker, "--microphone-addr", d.mic, "--ops-addr", d.ops,
		"--speaker-fifo", d.speakerFIFO, "--microphone-fifo", d.micFIFO,
		"--pulse-socket", d.socket, "--run-dir", filepath.Join(dir, "run"), "--log-dir", "",
		"--pulse-tcp-addr", d.pulseTCP,
		"--ffmpeg", ffmpeg, "--pulseaudio", testenv.Tool(t, "pulseaudio"),
		"--encoder-linger", "1s", "--ping-interval", "2s", "--log-level", "debug",
	}, extraArgs...)
	d.cmd = exec.Command(bin, args...)
	d.cmd.Env = env
	d.cmd.SysProcAttr = attr
	d.cmd.Stderr = d.stderr
	d.cmd.Stdout = d.stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exitErr = d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() {
		select {
		case <-d.exited:
		default:
			d.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-d.exited:
			case <-time.After(10 * time.Second):
				d.cmd.Process.Kill()
				<-d.exited
			}
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.stderr.String())
		}
	})
	d.waitReady(20 * time.Second)
	return d
}

// cleanEnv keeps the test's PULSE_* and XDG variables away from the daemon.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PULSE") || strings.HasPrefix(kv, "XDG_") || strings.HasPrefix(kv, "CONTAINER_IP_ADDR=") ||
			strings.HasPrefix(kv, "POD_IP=") || strings.HasPrefix(kv, "ABCDESKTOP_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func (d *daemonUnderTest) readyz() int {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + d.ops + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (d *daemonUnderTest) waitReady(within time.Duration) time.Duration {
	d.t.Helper()
	start := time.Now()
	for time.Since(start) < within {
		select {
		case <-d.exited:
			d.t.Fatalf("daemon exited: %v\n%s", d.exitErr, d.stderr.String())
		default:
		}
		if d.readyz() == http.StatusOK {
			return time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.t.Fatalf("daemon not ready within %s\n%s", within, d.stderr.String())
	return 0
}

// metric reads one unlabelled value from /metrics, -1 when it is not there.
func (d *daemonUnderTest) metric(name string) float64 {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + d.ops + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

// pulseEnv is what a desktop client needs to reach the daemon's PulseAudio.
func (d *daemonUnderTest) pulseEnv() []string {
	return append(cleanEnv(), "PULSE_SERVER=unix:"+d.socket, "PULSE_COOKIE="+d.cookie, "HOME="+d.dir)
}

// children returns the pids of the daemon's child processes named comm.
func (d *daemonUnderTest) children(comm string) []int {
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
		// pid (comm) state ppid ...
		s := string(stat)
		open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || close < 0 {
			continue
		}
		fields := strings.Fields(s[close+1:])
		if len(fields) < 2 || s[open+1:close] != comm {
			continue
		}
		if ppid, _ := strconv.Atoi(fields[1]); ppid == d.cmd.Process.Pid && fields[0] != "Z" {
			pids = append(pids, pid)
		}
	}
	return pids
}

// sigterm stops the daemon as a container runtime does and returns how long
// it took to exit. The daemon must exit with status 0 within `within`.
func (d *daemonUnderTest) sigterm(t *testing.T, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.exited:
	case <-time.After(within):
		t.Fatalf("daemon still running %v after SIGTERM", within)
	}
	took := time.Since(start)
	if d.exitErr != nil {
		t.Errorf("exit: %v after %v, want status 0", d.exitErr, took)
	}
	return took
}

// running reports whether pid is a process that has not exited; a zombie
// has.
func running(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil && !strings.Contains(string(stat), ") Z ")
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s", what, within)
}

// listener collects what a speaker websocket client receives, with arrival times.
type listener struct {
	conn  *websocket.Conn
	mu    sync.Mutex
	data  []byte
	first time.Time
	done  chan struct{}
}

func listen(t *testing.T, addr string) *listener {
	t.Helper()
	conn, resp, err := websocket.DefaultDialer.Dial("ws://"+addr+"/?jwt_token=ignored", nil)
	if err != nil {
		t.Fatalf("dial speaker %s: %v (%v)", addr, err, resp)
	}
	l := &listener{conn: conn, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for {
			typ, msg, err := conn.ReadMessage()
			if err != nil {
				return
			}
			if typ != websocket.BinaryMessage {
				t.Errorf("speaker sent message type %d, want binary", typ)
			}
			l.mu.Lock()
			if l.first.IsZero() {
				l.first = time.Now()
			}
			l.data = append(l.data, msg...)
			l.mu.Unlock()
		}
	}()
	t.Cleanup(func() { conn.Close(); <-l.done })
	return l
}

func (l *listener) bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]byte(nil), l.data...)
}

func (l *listener) firstByte() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.first
}

func (l *listener) close() {
	l.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	l.conn.Close()
	<-l.done
}

func play(t *testing.T, d *daemonUnderTest, freq float64, dur time.Duration) {
	t.Helper()
	wav := filepath.Join(d.dir, fmt.Sprintf("tone-%g.wav", freq))
	samples := audiotest.Sine(freq, 44100, 0.5, int(dur.Seconds()*44100), 1)
	if err := audiotest.WriteWAV(wav, samples, 44100); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), dur+10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.Tool(t, "paplay"), "--device=speaker", wav)
	cmd.Env = d.pulseEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("paplay: %v: %s", err, out)
	}
}

// toneIn decodes what the listener got and checks a tone of freq sits in it.
func toneIn(t *testing.T, ts []byte, freq float64) (onset, length time.Duration) {
	t.Helper()
	pcm, err := audiotest.DecodeTS(testenv.Tool(t, "ffmpeg"), ts, 44100)
	if err != nil {
		t.Fatal(err)
	}
	start, end, ok := audiotest.Loud(pcm, 44100, 0.05)
	if !ok {
		t.Fatalf("no tone in %d decoded samples (%d TS bytes)", len(pcm), len(ts))
	}
	got := audiotest.DominantFrequency(pcm[start:end], 44100)
	if math.Abs(got-freq)/freq > 0.01 {
		t.Fatalf("dominant frequency %.1f Hz, want %.0f Hz within 1%%", got, freq)
	}
	return time.Duration(float64(start) / 44100 * float64(time.Second)), time.Duration(float64(end-start) / 44100 * float64(time.Second))
}

func TestDaemon(t *testing.T) {
	bin := buildDaemon(t)
	d := startDaemon(t, bin, nil, nil)

	t.Run("healthcheck and version", func(t *testing.T) {
		if out, err := exec.Command(bin, "healthcheck", "--ops-addr", d.ops).CombinedOutput(); err != nil {
			t.Errorf("healthcheck of a ready daemon: %v: %s", err, out)
		}
		out, err := exec.Command(bin, "version").CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "pulse-sidecar ") || !strings.Contains(string(out), "github.com/gorilla/websocket") {
			t.Errorf("version: %v: %s", err, out)
		}
		help, _ := exec.Command(bin, "--help").CombinedOutput()
		if !strings.Contains(string(help), "PULSE_SIDECAR_SPEAKER_ADDR") {
			t.Errorf("--help lacks the environment variables:\n%s", help)
		}
		bad, err := exec.Command(bin, "--mic-rate", "7").CombinedOutput()
		if err == nil || !strings.Contains(string(bad), "--mic-rate") || strings.Count(strings.TrimSpace(string(bad)), "\n") != 0 {
			t.Errorf("invalid flag: %v: %q, want one line naming --mic-rate", err, bad)
		}
	})

	t.Run("cookie: byte-identical, required over TCP, never logged or inherited", func(t *testing.T) {
		b, err := os.ReadFile(d.cookie)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != strings.Repeat(testCookie, 8) {
			t.Errorf("cookie file is %d bytes %q..., want PULSEAUDIO_COOKIE 8 times", len(b), b[:min(len(b), 40)])
		}
		if fi, _ := os.Stat(d.cookie); fi.Mode().Perm() != 0o600 {
			t.Errorf("cookie file mode %v, want 0600", fi.Mode())
		}
		pactl := testenv.Tool(t, "pactl")
		withCookie := exec.Command(pactl, "-s", "tcp:"+d.pulseTCP, "info")
		withCookie.Env = append(cleanEnv(), "PULSE_COOKIE="+d.cookie, "HOME="+d.dir)
		if out, err := withCookie.CombinedOutput(); err != nil {
			t.Errorf("pactl over TCP with the cookie: %v: %s", err, out)
		}
		wrong := filepath.Join(d.dir, "wrong-cookie")
		os.WriteFile(wrong, []byte(strings.Repeat("f", 256)), 0o600)
		withoutCookie := exec.Command(pactl, "-s", "tcp:"+d.pulseTCP, "info")
		withoutCookie.Env = append(cleanEnv(), "PULSE_COOKIE="+wrong, "HOME="+d.dir)
		if out, err := withoutCookie.CombinedOutput(); err == nil {
			t.Errorf("pactl over TCP with a wrong cookie was let in: %s", out)
		}
		// A listener makes the encoder run, so its environment is checked too.
		l := listen(t, d.speaker)
		waitFor(t, 10*time.Second, "encoder running", func() bool { return len(d.children("ffmpeg")) == 1 })
		for _, comm := range []string{"pulseaudio", "ffmpeg"} {
			for _, pid := range d.children(comm) {
				env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
				if err != nil {
					t.Fatal(err)
				}
				if strings.Contains(string(env), testCookie) || strings.Contains(string(env), "PULSEAUDIO_COOKIE") {
					t.Errorf("%s (%d) inherited the cookie", comm, pid)
				}
			}
		}
		l.close()
		if strings.Contains(strings.ToLower(d.stderr.String()), testCookie) {
			t.Error("the cookie appears in the daemon's log")
		}
	})

	t.Run("speaker tone, no stale backlog", func(t *testing.T) {
		// Played while nobody listens and the encoder is stopped: must never
		// reach a later listener.
		waitFor(t, 10*time.Second, "encoder stopped after the linger", func() bool { return len(d.children("ffmpeg")) == 0 })
		play(t, d, 500, 300*time.Millisecond)
		dialed := time.Now()
		l := listen(t, d.speaker)
		waitFor(t, 10*time.Second, "first speaker bytes", func() bool { return !l.firstByte().IsZero() })
		t.Logf("first listener, cold encoder: first bytes after %s", l.firstByte().Sub(dialed))
		time.Sleep(500 * time.Millisecond)
		played := time.Now()
		play(t, d, 1000, time.Second)
		time.Sleep(1500 * time.Millisecond)
		ts := l.bytes()
		l.close()
		if len(ts)%188 != 0 {
			t.Errorf("received %d bytes, not whole 188-byte TS packets", len(ts))
		}
		onset, length := toneIn(t, ts, 1000)
		// The stream is real time: the tone's position in the decoded audio is
		// the time between the first byte and the play.
		want := played.Sub(l.firstByte())
		if d := onset - want; d < -400*time.Millisecond || d > 600*time.Millisecond {
			t.Errorf("tone starts %s into the stream, played %s after the first byte: stale or lost audio", onset, want)
		}
		if length < 800*time.Millisecond || length > 1300*time.Millisecond {
			t.Errorf("tone lasts %s, played 1s", length)
		}
	})

	t.Run("encoder stops after linger and restarts after kill", func(t *testing.T) {
		l := listen(t, d.speaker)
		waitFor(t, 10*time.Second, "encoder running", func() bool { return len(d.children("ffmpeg")) == 1 })
		old := d.children("ffmpeg")[0]
		syscall.Kill(old, syscall.SIGKILL)
		waitFor(t, 5*time.Second, "encoder restarted", func() bool {
			p := d.children("ffmpeg")
			return len(p) == 1 && p[0] != old
		})
		n := len(l.bytes())
		waitFor(t, 5*time.Second, "audio after encoder restart", func() bool { return len(l.bytes()) > n+2000 })
		l.close()
		waitFor(t, 5*time.Second, "encoder stopped after linger", func() bool { return len(d.children("ffmpeg")) == 0 })
	})

	t.Run("microphone tone at the right speed", func(t *testing.T) {
		testMicrophone(t, d)
	})

	t.Run("bad microphone input", func(t *testing.T) {
		testBadMicrophone(t, d)
	})

	t.Run("pulseaudio killed comes back", func(t *testing.T) {
		pids := d.children("pulseaudio")
		if len(pids) != 1 {
			t.Fatalf("pulseaudio children: %v", pids)
		}
		syscall.Kill(pids[0], syscall.SIGKILL)
		start := time.Now()
		waitFor(t, 3*time.Second, "pulseaudio restarted", func() bool {
			p := d.children("pulseaudio")
			return len(p) == 1 && p[0] != pids[0] && d.readyz() == http.StatusOK
		})
		t.Logf("pulseaudio back and ready after %s", time.Since(start))
		l := listen(t, d.speaker)
		waitFor(t, 10*time.Second, "speaker bytes after pulseaudio restart", func() bool { return !l.firstByte().IsZero() })
		play(t, d, 1000, 500*time.Millisecond)
		time.Sleep(time.Second)
		toneIn(t, l.bytes(), 1000)
		l.close()
	})

	t.Run("SIGTERM", func(t *testing.T) {
		kids := append(d.children("pulseaudio"), d.children("ffmpeg")...)
		// Connections that never send a request (a browser's preconnect, a
		// proxy's pool) must not hold up the stop.
		for _, addr := range []string{d.speaker, d.mic, d.ops} {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
		}
		t.Logf("stopped in %s", d.sigterm(t, 6*time.Second))
		for _, p := range kids {
			if running(p) {
				t.Errorf("child %d still alive", p)
			}
		}
		if err := exec.Command(bin, "healthcheck", "--ops-addr", d.ops).Run(); err == nil {
			t.Errorf("healthcheck of a stopped daemon succeeded")
		}
		for _, p := range []string{d.socket, d.speakerFIFO, d.micFIFO, d.cookie} {
			if _, err := os.Lstat(p); err == nil {
				t.Errorf("%s left behind", p)
			}
		}
	})
}

// recordMicrophone records source "microphone" in the pipe's format
// (float32 mono, 44100 Hz) from now until stop, which returns the samples.
// It returns once parecord has had half a second to start recording.
func (d *daemonUnderTest) recordMicrophone(ctx context.Context, t *testing.T) (stop func() []float32) {
	t.Helper()
	rec := exec.CommandContext(ctx, testenv.Tool(t, "parecord"), "--latency-msec=20", "-d", "microphone", "--raw",
		"--format=float32le", "--rate=44100", "--channels=1")
	rec.Env = d.pulseEnv()
	var recorded bytes.Buffer
	rec.Stdout = &recorded
	if err := rec.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	return func() []float32 {
		rec.Process.Signal(syscall.SIGINT)
		rec.Wait()
		return audiotest.F32LE(recorded.Bytes())
	}
}

func testMicrophone(t *testing.T, d *daemonUnderTest) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stopRecording := d.recordMicrophone(ctx, t)
	conn, _, err := websocket.DefaultDialer.Dial("ws://"+d.mic+"/?format=f32le&rate=48000&jwt_token=x", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const secs = 2
	tone := audiotest.F32LEBytes(audiotest.Sine(440, 48000, 0.5, 48000*secs, 1))
	// 128 samples a message, paced in real time like an AudioWorklet.
	start := time.Now()
	for off, i := 0, 0; off < len(tone); off, i = off+512, i+1 {
		if err := conn.WriteMessage(websocket.BinaryMessage, tone[off:min(off+512, len(tone))]); err != nil {
			t.Fatal(err)
		}
		due := start.Add(time.Duration(i+1) * 128 * time.Second / 48000)
		time.Sleep(time.Until(due))
	}
	time.Sleep(700 * time.Millisecond)
	pcm := stopRecording()
	s, e, ok := audiotest.Loud(pcm, 44100, 0.05)
	if !ok {
		t.Fatalf("no tone recorded (%d samples)", len(pcm))
	}
	got := audiotest.DominantFrequency(pcm[s:e], 44100)
	if math.Abs(got-440)/440 > 0.01 {
		t.Errorf("recorded %.1f Hz, want 440 Hz within 1%%", got)
	}
	dur := float64(e-s) / 44100
	if dur < secs*0.9 || dur > secs*1.1 {
		t.Errorf("recorded tone lasts %.2f s, sent %d s", dur, secs)
	}
}

func testBadMicrophone(t *testing.T, d *daemonUnderTest) {
	closeCode := func(conn *websocket.Conn) int {
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			if _, _, err := conn.ReadMessage(); err != nil {
				if ce, ok := err.(*websocket.CloseError); ok {
					return ce.Code
				}
				return -1
			}
		}
	}
	dial := func() *websocket.Conn {
		// The previous sender's slot is released once its handler is done;
		// the senders gauge says when.
		waitFor(t, 10*time.Second, "microphone sender slot free", func() bool { return d.metric("pulse_sidecar_microphone_senders") == 0 })
		c, _, err := websocket.DefaultDialer.Dial("ws://"+d.mic+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := dial()
	c.WriteMessage(websocket.TextMessage, []byte("hello"))
	if code := closeCode(c); code != 1003 {
		t.Errorf("text message: close %d, want 1003", code)
	}
	c.Close()

	c = dial()
	c.WriteMessage(websocket.BinaryMessage, make([]byte, 64<<10+4))
	if code := closeCode(c); code != 1009 {
		t.Errorf("oversize message: close %d, want 1009", code)
	}
	c.Close()

	first := dial()
	defer first.Close()
	for _, n := range []int{3, 5, 7, 1} { // odd sizes: frames carried over
		if err := first.WriteMessage(websocket.BinaryMessage, make([]byte, n)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "first sender registered", func() bool { return d.metric("pulse_sidecar_microphone_senders") == 1 })
	// The newest sender takes the microphone over; the first one is told
	// with 4001.
	second, _, err := websocket.DefaultDialer.Dial("ws://"+d.mic+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if code := closeCode(first); code != 4001 {
		t.Errorf("replaced sender: close %d, want 4001", code)
	}
	if err := second.WriteMessage(websocket.BinaryMessage, make([]byte, 512)); err != nil {
		t.Errorf("newest sender: %v", err)
	}
	if code := d.readyz(); code != http.StatusOK {
		t.Errorf("readyz %d after bad input", code)
	}
}
