package arm64test

import (
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"math"
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

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/gorilla/websocket"

	"github.com/pulse-sidecar/pulse-sidecar/internal/audiotest"
	"github.com/pulse-sidecar/pulse-sidecar/internal/testenv"
)

// archiveEnv names the arm64 image under test. CI builds it once next to the
// amd64 image; building it here would take minutes and a lock with arm64.
const archiveEnv = "PULSE_SIDECAR_IMAGE_ARCHIVE_ARM64"

const (
	qemuName = "qemu-aarch64-static"
	triplet  = "aarch64-linux-gnu"
	// testCookie is what a pod would put into PULSEAUDIO_COOKIE.
	testCookie = "0123456789abcdef0123456789abcdef"
)

var arm64 = v1.Platform{OS: "linux", Architecture: "arm64"}

// Emulation makes everything slower, and CI shares two cores: these bounds
// are generous, never endless.
const (
	commandTimeout = 2 * time.Minute // one `--version` run
	readyTimeout   = 3 * time.Minute // daemon start to /readyz 200
	audioTimeout   = time.Minute     // first speaker bytes, one recording
	stopTimeout    = 30 * time.Second
)

// emulated is an extracted arm64 root filesystem and the emulator to run
// programs from it with.
type emulated struct {
	qemu, root string
}

// command runs the image's bin (an absolute path inside the image) under
// qemu. -L makes qemu look up every absolute path the program uses under
// root first, the loader and libraries included.
func (e emulated) command(ctx context.Context, bin string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, e.qemu, append([]string{"-L", e.root, filepath.Join(e.root, bin)}, args...)...)
}

// wrapper writes a host shell script into dir that runs the image's bin
// under qemu with its arguments, and returns its path. The emulated daemon
// execs it as if it were the binary: with no binfmt handler the kernel could
// not run an arm64 file, but it runs a host script.
func (e emulated) wrapper(t *testing.T, dir, bin string) string {
	t.Helper()
	p := filepath.Join(dir, filepath.Base(bin))
	script := fmt.Sprintf("#!/bin/sh\nexec %s -L %s %s \"$@\"\n",
		shellQuote(e.qemu), shellQuote(e.root), shellQuote(filepath.Join(e.root, bin)))
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// extractImage loads the arm64 image named by archiveEnv and extracts it.
func extractImage(t *testing.T) emulated {
	t.Helper()
	qemu := testenv.Tool(t, qemuName)
	testenv.Tool(t, "sh") // the wrappers' interpreter
	src := os.Getenv(archiveEnv)
	if src == "" {
		if testenv.CI() {
			t.Fatalf("%s is not set: CI must build the arm64 image (imagectl build --arch arm64 --oci-archive FILE) and export its path", archiveEnv)
		}
		t.Skipf("%s is not set: no arm64 image to prove", archiveEnv)
	}
	start := time.Now()
	img, err := Load(src, arm64, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if err := Extract(img, root); err != nil {
		t.Fatalf("extract %s: %v", src, err)
	}
	d, _ := img.Digest()
	t.Logf("extracted %s (%s, linux/arm64) in %s", src, d, time.Since(start).Round(time.Millisecond))
	missing, err := MissingAlternatives(root, triplet)
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) > 0 {
		t.Fatalf("the arm64 image lacks the alternatives links %s: its ffmpeg cannot load libblas/liblapack (the image build must make them for %s, not only for the build host's architecture)",
			strings.Join(missing, ", "), triplet)
	}
	return emulated{qemu: qemu, root: root}
}

func TestArm64ImageUnderQemu(t *testing.T) {
	e := extractImage(t)

	for _, c := range []struct {
		bin  string
		args []string
		want []string // substrings of the output
	}{
		{"/usr/bin/pulse-sidecar", []string{"version"}, []string{"pulse-sidecar ", "linux/arm64"}},
		{"/usr/bin/ffmpeg", []string{"-hide_banner", "-version"}, []string{"ffmpeg version ", "--arch=arm64"}},
		{"/usr/bin/pulseaudio", []string{"--version"}, []string{"pulseaudio 16."}},
	} {
		t.Run(filepath.Base(c.bin)+" "+c.args[len(c.args)-1], func(t *testing.T) {
			if m := machine(t, filepath.Join(e.root, c.bin)); m != elf.EM_AARCH64 {
				t.Fatalf("%s is an ELF file for %v, want %v", c.bin, m, elf.EM_AARCH64)
			}
			ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
			defer cancel()
			start := time.Now()
			out, err := e.command(ctx, c.bin, c.args...).CombinedOutput()
			if err != nil {
				t.Fatalf("%s %s under qemu: %v\n%s", c.bin, strings.Join(c.args, " "), err, out)
			}
			for _, w := range c.want {
				if !bytes.Contains(out, []byte(w)) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			t.Logf("%s (%s under emulation)", lineWith(out, c.want[0]), time.Since(start).Round(time.Millisecond))
		})
	}

	t.Run("daemon carries speaker and microphone", func(t *testing.T) {
		testDaemon(t, e)
	})
}

func machine(t *testing.T, path string) elf.Machine {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return f.Machine
}

// lineWith returns the first line of out containing s (qemu's own warnings
// may come first).
func lineWith(out []byte, s string) string {
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}

// daemon is the arm64 pulse-sidecar running under qemu.
type daemon struct {
	cmd                  *exec.Cmd
	dir                  string
	speaker, mic, ops    string
	socket, cookie       string
	speakerFIFO, micFIFO string
	log                  *testenv.SyncBuffer
	exited               chan struct{}
	exitErr              error
}

func testDaemon(t *testing.T, e emulated) {
	// The clients are the host's: a desktop container next to the sidecar
	// is not emulated, and the decoding listener stands for the browser.
	for _, tool := range []string{"paplay", "parecord", "ffmpeg"} {
		testenv.Tool(t, tool)
	}
	dir := testenv.ShortTempDir(t)
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	d := &daemon{
		dir: dir, speaker: testenv.FreeAddr(t), mic: testenv.FreeAddr(t), ops: testenv.FreeAddr(t),
		socket: filepath.Join(dir, "pulse.sock"), cookie: filepath.Join(dir, "run", "cookie"),
		speakerFIFO: filepath.Join(dir, "speaker"), micFIFO: filepath.Join(dir, "microphone"),
		log: &testenv.SyncBuffer{}, exited: make(chan struct{}),
	}
	d.cmd = e.command(context.Background(), "/usr/bin/pulse-sidecar",
		"--speaker-addr", d.speaker, "--microphone-addr", d.mic, "--ops-addr", d.ops,
		"--speaker-fifo", d.speakerFIFO, "--microphone-fifo", d.micFIFO,
		"--pulse-socket", d.socket, "--run-dir", filepath.Join(dir, "run"), "--log-dir", "",
		"--pulse-tcp-addr", testenv.FreeAddr(t),
		"--pulseaudio", e.wrapper(t, bin, "/usr/bin/pulseaudio"),
		"--ffmpeg", e.wrapper(t, bin, "/usr/bin/ffmpeg"),
		"--encoder-linger", "1s", "--stop-timeout", "15s", "--log-level", "debug")
	d.cmd.Env = append(cleanEnv(), "PULSEAUDIO_COOKIE="+testCookie)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	start := time.Now()
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exitErr = d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() {
		select {
		case <-d.exited:
		default:
			_ = d.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-d.exited:
			case <-time.After(stopTimeout):
				_ = d.cmd.Process.Kill()
				<-d.exited
			}
		}
		if t.Failed() {
			t.Logf("arm64 daemon log:\n%s", d.log.String())
		}
	})
	waitFor(t, d, readyTimeout, "daemon ready (/readyz 200)", func() bool { return d.readyz() == http.StatusOK })
	ready := time.Since(start)
	// docs/BENCHMARKS.md ("arm64 under emulation") quotes this line.
	t.Logf("arm64 daemon under qemu-user: start to ready %s", ready.Round(time.Millisecond))

	t.Run("1 kHz speaker tone arrives as 1000 Hz", func(t *testing.T) {
		l := listen(t, d.speaker)
		dialed := time.Now()
		waitFor(t, d, audioTimeout, "first speaker bytes", func() bool { return !l.firstByte().IsZero() })
		t.Logf("first speaker bytes %s after the listener connected (cold emulated encoder)", l.firstByte().Sub(dialed).Round(time.Millisecond))
		time.Sleep(time.Second)
		play(t, d, 1000, time.Second)
		// The emulated encoder lags more than the native one: wait for
		// the tone's end to come through before decoding.
		time.Sleep(3 * time.Second)
		ts := l.bytes()
		l.close()
		if len(ts)%188 != 0 {
			t.Errorf("received %d bytes, not whole 188-byte TS packets", len(ts))
		}
		got, length := toneIn(t, ts, 44100)
		t.Logf("speaker: %.1f Hz for %s from %d TS bytes", got, length.Round(time.Millisecond), len(ts))
		if math.Abs(got-1000)/1000 > 0.01 {
			t.Errorf("speaker tone decoded as %.1f Hz, want 1000 Hz within 1%%", got)
		}
		// Dropouts under a slow emulator would shorten it; an encoder
		// replaying a backlog would lengthen it.
		if length < 700*time.Millisecond || length > 1500*time.Millisecond {
			t.Errorf("speaker tone lasts %s, played 1 s", length)
		}
	})

	t.Run("440 Hz microphone tone is recorded as 440 Hz", func(t *testing.T) {
		testMicrophone(t, d)
	})

	t.Run("SIGTERM stops the daemon and its emulated children", func(t *testing.T) {
		kids := children(d.cmd.Process.Pid)
		if len(kids) == 0 {
			t.Fatal("no child processes (pulseaudio under qemu) before the stop")
		}
		start := time.Now()
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(stopTimeout):
			t.Fatalf("daemon did not exit within %s of SIGTERM", stopTimeout)
		}
		t.Logf("stopped in %s", time.Since(start).Round(time.Millisecond))
		if d.exitErr != nil {
			t.Errorf("exit: %v, want 0", d.exitErr)
		}
		for _, p := range kids {
			if err := syscall.Kill(p, 0); err == nil {
				t.Errorf("child %d still alive", p)
			}
		}
		for _, p := range []string{d.socket, d.speakerFIFO, d.micFIFO, d.cookie} {
			if _, err := os.Lstat(p); err == nil {
				t.Errorf("%s left behind", p)
			}
		}
	})
}

// cleanEnv keeps the test's PulseAudio, XDG and pod variables away from the
// daemon, as cmd/pulse-sidecar's tests do.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PULSE") || strings.HasPrefix(kv, "XDG_") || strings.HasPrefix(kv, "CONTAINER_IP_ADDR=") ||
			strings.HasPrefix(kv, "POD_IP=") || strings.HasPrefix(kv, "ABCDESKTOP_") || strings.HasPrefix(kv, "QEMU_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// pulseEnv is what a desktop client needs to reach the daemon's PulseAudio.
func (d *daemon) pulseEnv() []string {
	return append(cleanEnv(), "PULSE_SERVER=unix:"+d.socket, "PULSE_COOKIE="+d.cookie, "HOME="+d.dir)
}

func (d *daemon) readyz() int {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + d.ops + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// waitFor polls cond every 50 ms until it holds, failing when within passes
// or the daemon exits first.
func waitFor(t *testing.T, d *daemon, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		select {
		case <-d.exited:
			t.Fatalf("%s: the daemon exited (%v)", what, d.exitErr)
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("%s: not within %s", what, within)
}

// children returns the pids of pid's live child processes: the wrappers
// exec qemu, so these are the emulated pulseaudio and ffmpeg.
func children(pid int) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 || f[0] == "Z" {
			continue
		}
		if ppid, _ := strconv.Atoi(f[1]); ppid == pid {
			pids = append(pids, p)
		}
	}
	return pids
}

// listener collects what a speaker websocket client receives.
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
			_, msg, err := conn.ReadMessage()
			if err != nil {
				return
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
	_ = l.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	l.conn.Close()
	<-l.done
}

// play plays a tone into the daemon's speaker sink with the host's paplay.
func play(t *testing.T, d *daemon, freq float64, dur time.Duration) {
	t.Helper()
	wav := filepath.Join(d.dir, fmt.Sprintf("tone-%g.wav", freq))
	if err := audiotest.WriteWAV(wav, audiotest.Sine(freq, 44100, 0.5, int(dur.Seconds()*44100), 1), 44100); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), dur+audioTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.Tool(t, "paplay"), "--device=speaker", wav)
	cmd.Env = d.pulseEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("paplay: %v: %s", err, out)
	}
}

// toneIn decodes the MPEG-TS a listener got with the host's ffmpeg and
// returns the dominant frequency of its loud part and that part's length.
func toneIn(t *testing.T, ts []byte, rate int) (float64, time.Duration) {
	t.Helper()
	pcm, err := audiotest.DecodeTS(testenv.Tool(t, "ffmpeg"), ts, rate)
	if err != nil {
		t.Fatal(err)
	}
	s, e, ok := audiotest.Loud(pcm, rate, 0.05)
	if !ok {
		t.Fatalf("no tone in %d decoded samples (%d TS bytes)", len(pcm), len(ts))
	}
	return audiotest.DominantFrequency(pcm[s:e], float64(rate)), time.Duration(float64(e-s) / float64(rate) * float64(time.Second))
}

// testMicrophone sends a 440 Hz tone the way a browser's AudioWorklet does
// (128 float32 samples at 48 kHz a message, in real time) and records the
// daemon's microphone source with the host's parecord.
func testMicrophone(t *testing.T, d *daemon) {
	const secs = 2
	ctx, cancel := context.WithTimeout(context.Background(), audioTimeout)
	defer cancel()
	rec := exec.CommandContext(ctx, testenv.Tool(t, "parecord"), "--latency-msec=20", "-d", "microphone", "--raw",
		"--format=float32le", "--rate=44100", "--channels=1")
	rec.Env = d.pulseEnv()
	var recorded, recErr bytes.Buffer
	rec.Stdout, rec.Stderr = &recorded, &recErr
	if err := rec.Start(); err != nil {
		t.Fatal(err)
	}
	// Recording must have begun before the tone does; an emulated
	// PulseAudio takes longer to set the stream up.
	time.Sleep(2 * time.Second)
	conn, _, err := websocket.DefaultDialer.Dial("ws://"+d.mic+"/?format=f32le&rate=48000&jwt_token=x", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tone := audiotest.F32LEBytes(audiotest.Sine(440, 48000, 0.5, 48000*secs, 1))
	start := time.Now()
	for off, i := 0, 0; off < len(tone); off, i = off+512, i+1 {
		if err := conn.WriteMessage(websocket.BinaryMessage, tone[off:min(off+512, len(tone))]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Until(start.Add(time.Duration(i+1) * 128 * time.Second / 48000)))
	}
	time.Sleep(2 * time.Second)
	_ = rec.Process.Signal(syscall.SIGINT)
	_ = rec.Wait()
	pcm := audiotest.F32LE(recorded.Bytes())
	s, e, ok := audiotest.Loud(pcm, 44100, 0.05)
	if !ok {
		t.Fatalf("no tone recorded (%d samples; parecord: %s)", len(pcm), strings.TrimSpace(recErr.String()))
	}
	got := audiotest.DominantFrequency(pcm[s:e], 44100)
	dur := float64(e-s) / 44100
	t.Logf("microphone: %.1f Hz for %.2f s recorded", got, dur)
	if math.Abs(got-440)/440 > 0.01 {
		t.Errorf("recorded %.1f Hz, want 440 Hz within 1%%", got)
	}
	if dur < secs*0.85 || dur > secs*1.15 {
		t.Errorf("recorded tone lasts %.2f s, sent %d s", dur, secs)
	}
}
