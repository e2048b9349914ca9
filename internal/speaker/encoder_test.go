package speaker

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pulse-sidecar/pulse-sidecar/internal/supervise"
	"github.com/pulse-sidecar/pulse-sidecar/internal/testenv"
	"github.com/pulse-sidecar/pulse-sidecar/internal/wsserver"
)

// startReaper runs a Reaper for the test. Register it before the relay: the
// cleanups run in reverse, so the relay has stopped its encoder first.
func startReaper(t *testing.T) *supervise.Reaper {
	t.Helper()
	r := supervise.NewReaper(testLog(t), false)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = r.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return r
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

// encoderPid is the pid of the test process's running encoder child (the
// fake one execs sleep), 0 if there is none.
func encoderPid(t *testing.T) int {
	t.Helper()
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
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < 0 {
			continue
		}
		comm, fields := s[open+1:end], strings.Fields(s[end+1:])
		if len(fields) < 2 || fields[0] == "Z" || (comm != "ffmpeg" && comm != "sleep") {
			continue
		}
		if ppid, _ := strconv.Atoi(fields[1]); ppid == os.Getpid() {
			return pid
		}
	}
	return 0
}

// fakeEncoder is an "ffmpeg" that ignores its arguments and idles, so the
// on-demand logic is tested without PulseAudio.
func fakeEncoder(t *testing.T) string {
	t.Helper()
	sh := testenv.Tool(t, "sh")
	sleep := testenv.Tool(t, "sleep")
	path := filepath.Join(t.TempDir(), "ffmpeg")
	script := "#!" + sh + "\nexec " + sleep + " 1000\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestEncoderOnDemand(t *testing.T) {
	const linger = 5 * time.Second
	reaper := startReaper(t)
	r := startRelay(t, Config{
		FFmpeg: fakeEncoder(t),
		Reaper: reaper,
		// Long enough that leaving and rejoining surely fits inside it on
		// a loaded machine.
		Linger:     linger,
		Grace:      time.Second,
		StallAfter: time.Hour, // the fake encoder writes nothing
	})
	if pid := encoderPid(t); pid != 0 {
		t.Fatalf("encoder %d runs without a listener", pid)
	}

	conn := dial(t, r, nil)
	waitFor(t, "the encoder to start", func() bool { return encoderPid(t) != 0 })
	first := encoderPid(t)

	// Leaving and coming back within the linger keeps the encoder.
	conn.Close()
	waitFor(t, "the listener to leave", func() bool { return r.hub.len() == 0 })
	conn = dial(t, r, nil)
	time.Sleep(linger + 2*time.Second) // well past the linger: a stop would have happened
	if pid := encoderPid(t); pid != first || !alive(first) {
		t.Fatalf("encoder %d replaced by %d though a listener came back within the linger", first, pid)
	}

	// An encoder that dies under a listener is restarted; the listener stays.
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a new encoder", func() bool {
		pid := encoderPid(t)
		return pid != 0 && pid != first
	})
	second := encoderPid(t)
	if r.hub.len() != 1 {
		t.Fatalf("%d listeners after the encoder restart, want 1", r.hub.len())
	}
	if got := testutil.ToFloat64(r.m.encoderRestarts); got != 1 {
		t.Errorf("encoder_restarts_total %v, want 1", got)
	}
	if got := testutil.ToFloat64(r.m.encoderStarts); got != 2 {
		t.Errorf("encoder_starts_total %v, want 2", got)
	}

	// The last listener leaving stops it, for real, after the linger.
	conn.Close()
	waitFor(t, "the encoder to stop", func() bool { return encoderPid(t) == 0 && !alive(second) })
}

// An encoder that delivers nothing while someone listens (ffmpeg stuck on a
// PulseAudio that does not answer) makes the relay not ready and is
// restarted; once data flows again the relay is ready again.
func TestEncoderStallRestartsAndUnreadies(t *testing.T) {
	reaper := startReaper(t)
	var ready atomic.Bool
	cfg := Config{
		Server:     wsserver.Config{Addr: "127.0.0.1:0"},
		FIFO:       filepath.Join(t.TempDir(), "speaker"),
		FFmpeg:     fakeEncoder(t),
		Reaper:     reaper,
		Grace:      time.Second,
		StallAfter: 500 * time.Millisecond,
		Log:        testLog(t),
		Ready:      func(ok bool) { ready.Store(ok) },
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "ready", ready.Load)

	dial(t, r, nil)
	waitFor(t, "the encoder to start", func() bool { return encoderPid(t) != 0 })
	first := encoderPid(t)
	waitFor(t, "not ready after the stall", func() bool { return !ready.Load() })
	waitFor(t, "a restarted encoder", func() bool {
		pid := encoderPid(t)
		return pid != 0 && pid != first
	})
	if got := testutil.ToFloat64(r.m.encoderStalls); got < 1 {
		t.Errorf("encoder_stalls_total %v, want at least 1", got)
	}

	// Data through the FIFO (what a recovered ffmpeg writes) clears it.
	wctx, wcancel := context.WithCancel(context.Background())
	wdone := writeTS(wctx, t, cfg.FIFO)
	defer func() { wcancel(); <-wdone }()
	waitFor(t, "ready once data flows", ready.Load)
}

func TestFFmpegCommand(t *testing.T) {
	args := strings.Join(ffmpegArgs(), " ")
	for _, want := range []string{
		"-f pulse -sample_rate 44100 -channels 1 -fragment_size 256 -i speaker.monitor",
		"-f mpegts -correct_ts_overflow 0 -codec:a mp2 -b:a 128k -ac 1 -ar 44100",
		"-flush_packets 1 pipe:1",
	} {
		if !strings.Contains(args, want) {
			t.Errorf("ffmpeg args %q lack %q", args, want)
		}
	}
	env := ffmpegEnv("unix:/tmp/.pulse.sock", "/etc/pulse/cookie")
	want := []string{"PULSE_SERVER=unix:/tmp/.pulse.sock", "PULSE_COOKIE=/etc/pulse/cookie"}
	if !slices.Equal(env, want) {
		t.Errorf("ffmpeg env %q, want exactly %q (nothing of the daemon's)", env, want)
	}
	if env := ffmpegEnv("", ""); len(env) != 0 {
		t.Errorf("ffmpeg env %q, want empty", env)
	}
}

// The reset must be pending before every fork, restarts included: set any
// later and a fast child's first bytes can reach the reader before it, glued
// to the partial packet its predecessor died in.
func TestEncoderResetsPacketizerBeforeEveryFork(t *testing.T) {
	reaper := startReaper(t)
	r, err := New(Config{
		Server: wsserver.Config{Addr: "127.0.0.1:0"},
		FIFO:   filepath.Join(t.TempDir(), "speaker"),
		FFmpeg: fakeEncoder(t),
		Reaper: reaper,
		Grace:  time.Second,
		Log:    testLog(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	out, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()

	// No Run, so no reader consumes the flag: what OnStart sees is what was
	// pending when the child was forked.
	s := r.encoder(out).sup()
	type start struct {
		pid     int
		pending bool
	}
	starts := make(chan start, 2)
	s.OnStart = func(_ context.Context, p *supervise.Process) {
		starts <- start{p.Pid(), r.resetPacketizer.Swap(false)}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Run(ctx)
	}()
	defer func() { cancel(); <-done }()

	for i := range 2 {
		select {
		case st := <-starts:
			if !st.pending {
				t.Fatalf("start %d: no packetizer reset pending when encoder %d was forked", i+1, st.pid)
			}
			if i == 0 {
				// A crash: the supervisor restarts it.
				if err := syscall.Kill(st.pid, syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("start %d: no encoder within 30 s", i+1)
		}
	}
}

// A stuck encoder gets SIGCONT before TERM and may flush what it had; that
// output must not make the relay ready again before the replacement
// delivers. (It did: the not-ready window shrank to the 10 ms between the
// stall and the flush, too short for a readiness probe to see.)
func TestStuckEncodersLastOutputKeepsTheStall(t *testing.T) {
	var ready atomic.Bool
	r, err := New(Config{
		Server: wsserver.Config{Addr: "127.0.0.1:0"},
		FIFO:   filepath.Join(t.TempDir(), "speaker"),
		Log:    testLog(t),
		Ready:  func(ok bool) { ready.Store(ok) },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.setReady(func() { r.serving = true })
	r.encoderStarted()
	r.encoderStalled()
	if ready.Load() {
		t.Fatal("ready after a stall")
	}
	if r.stalledSeen() || ready.Load() {
		t.Fatal("the stuck encoder's last output cleared the stall")
	}
	r.encoderStarted()
	if !r.stalledSeen() || !ready.Load() {
		t.Fatal("the replacement's output did not clear the stall")
	}
}
