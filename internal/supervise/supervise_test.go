package supervise

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// records is a slog.Handler that keeps every record, so tests can assert on
// what the children printed.
type records struct {
	mu    *sync.Mutex
	all   *[]map[string]string
	attrs []slog.Attr
}

func newRecords() *records {
	return &records{mu: new(sync.Mutex), all: new([]map[string]string)}
}

func (h *records) Enabled(context.Context, slog.Level) bool { return true }
func (h *records) WithGroup(string) slog.Handler            { return h }
func (h *records) WithAttrs(as []slog.Attr) slog.Handler {
	return &records{mu: h.mu, all: h.all, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}

func (h *records) Handle(_ context.Context, r slog.Record) error {
	m := map[string]string{"msg": r.Message, "level": r.Level.String()}
	for _, a := range h.attrs {
		m[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.String(); return true })
	h.mu.Lock()
	*h.all = append(*h.all, m)
	h.mu.Unlock()
	return nil
}

// find returns the first record whose message is msg.
func (h *records) find(msg string) map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, m := range *h.all {
		if m["msg"] == msg {
			return m
		}
	}
	return nil
}

func need(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required: %v", path, err)
		}
		t.Skipf("%s not available: %v", path, err)
	}
}

// eventually polls cond until it holds or the (generous) deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitDone(t *testing.T, p *Process) {
	t.Helper()
	select {
	case <-p.Done():
	case <-time.After(20 * time.Second):
		t.Fatalf("pid %d: not done", p.Pid())
	}
}

func sh(script string) Spec {
	return Spec{Name: "sh", Path: "/bin/sh", Args: []string{"-c", script}}
}

func TestExitStatus(t *testing.T) {
	need(t, "/bin/sh")
	r := NewReaper(nil, false)
	for _, tc := range []struct {
		script string
		want   string // "" for success
	}{
		{"exit 0", ""},
		{"exit 3", "exit status 3"},
		{"kill -KILL $$", "killed by SIGKILL"},
	} {
		p, err := r.Start(sh(tc.script))
		if err != nil {
			t.Fatal(err)
		}
		waitDone(t, p)
		err = p.Err()
		if tc.want == "" {
			if err != nil {
				t.Errorf("%q: %v", tc.script, err)
			}
			continue
		}
		var ee *ExitError
		if !errors.As(err, &ee) || !strings.Contains(err.Error(), tc.want) || ee.Pid != p.Pid() {
			t.Errorf("%q: got %v, want ExitError with %q", tc.script, err, tc.want)
		}
	}
}

func TestOutputLinesAreLogged(t *testing.T) {
	need(t, "/bin/sh")
	h := newRecords()
	r := NewReaper(slog.New(h), false)
	p, err := r.Start(sh(`echo "E: broken" >&2; printf 'partial'; echo to-stdout >&2`))
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, p)
	for msg, stream := range map[string]string{"E: broken": "stderr", "to-stdout": "stderr", "partial": "stdout"} {
		m := h.find(msg)
		if m == nil {
			t.Errorf("no record %q", msg)
			continue
		}
		if m["stream"] != stream || m["process"] != "sh" || m["pid"] != strconv.Itoa(p.Pid()) {
			t.Errorf("record %q: %v", msg, m)
		}
	}
}

func TestLevelFunc(t *testing.T) {
	need(t, "/bin/sh")
	h := newRecords()
	spec := sh(`echo "E: broken" >&2`)
	spec.Level = func(line []byte) slog.Level {
		if bytes.HasPrefix(line, []byte("E: ")) {
			return slog.LevelError
		}
		return slog.LevelInfo
	}
	p, err := NewReaper(slog.New(h), false).Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, p)
	if m := h.find("E: broken"); m == nil || m["level"] != "ERROR" {
		t.Errorf("record: %v", m)
	}
}

func TestStdoutHandedThrough(t *testing.T) {
	need(t, "/bin/sh")
	out, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	spec := sh(`echo payload`)
	spec.Stdout = out
	p, err := NewReaper(nil, false).Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, p)
	b, err := os.ReadFile(out.Name())
	if err != nil || string(b) != "payload\n" {
		t.Fatalf("stdout file: %q, %v", b, err)
	}
}

func TestStdinHandedThrough(t *testing.T) {
	need(t, "/bin/sh")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "in"), []byte("fed\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(filepath.Join(dir, "in"))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(filepath.Join(dir, "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	spec := sh(`read line; echo "got $line"`)
	spec.Stdin, spec.Stdout = in, out
	p, err := NewReaper(nil, false).Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, p)
	if b, err := os.ReadFile(out.Name()); err != nil || string(b) != "got fed\n" {
		t.Fatalf("stdout file: %q, %v", b, err)
	}
}

func TestEnvironmentIsNotInherited(t *testing.T) {
	need(t, "/bin/sh")
	t.Setenv("SUPERVISE_SECRET", "leak")
	h := newRecords()
	p, err := NewReaper(slog.New(h), false).Start(sh(`echo "secret=${SUPERVISE_SECRET}" >&2`))
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, p)
	if h.find("secret=") == nil {
		t.Fatalf("child saw the daemon's environment: %v", *h.all)
	}
}

func TestStopWithTERM(t *testing.T) {
	need(t, "/bin/sleep")
	p, err := NewReaper(nil, false).Start(Spec{Name: "sleep", Path: "/bin/sleep", Args: []string{"60"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(time.Minute); err != nil {
		t.Fatal(err)
	}
	var ee *ExitError
	if !errors.As(p.Err(), &ee) || ee.Status.Signal() != syscall.SIGTERM {
		t.Fatalf("err = %v, want killed by SIGTERM", p.Err())
	}
	if err := p.Signal(syscall.SIGTERM); !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("signal after exit: %v", err)
	}
}

func TestStopKillsAfterGrace(t *testing.T) {
	need(t, "/bin/sh")
	h := newRecords()
	// The ignored TERM is inherited by sleep, so the whole group ignores it.
	p, err := NewReaper(slog.New(h), false).Start(sh(`trap '' TERM; echo ready >&2; while :; do sleep 0.05; done`))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "trap installed", func() bool { return h.find("ready") != nil })
	if err := p.Stop(100 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	var ee *ExitError
	if !errors.As(p.Err(), &ee) || ee.Status.Signal() != syscall.SIGKILL {
		t.Fatalf("err = %v, want killed by SIGKILL", p.Err())
	}
}

func TestSupervisorRestartsWithBackoff(t *testing.T) {
	need(t, "/bin/sh")
	r := NewReaper(nil, false)
	var starts, exits atomic.Int32
	s := &Supervisor{
		Reaper:  r,
		Spec:    sh("exit 7"),
		Backoff: Backoff{Min: 5 * time.Millisecond, Max: 20 * time.Millisecond},
		BeforeStart: func(context.Context) error {
			if starts.Add(1) == 2 {
				return errors.New("stale socket") // retried, not fatal
			}
			return nil
		},
		OnExit: func(p *Process, err error) {
			var ee *ExitError
			if !errors.As(err, &ee) || ee.Status.ExitStatus() != 7 {
				t.Errorf("OnExit err = %v", err)
			}
			exits.Add(1)
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	eventually(t, "4 restarts", func() bool { return exits.Load() >= 4 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestSupervisorStopsChildOnCancel(t *testing.T) {
	need(t, "/bin/sleep")
	r := NewReaper(nil, false)
	started := make(chan *Process, 1)
	var exits atomic.Int32
	s := &Supervisor{
		Reaper:  r,
		Spec:    Spec{Name: "sleep", Path: "/bin/sleep", Args: []string{"60"}},
		Grace:   10 * time.Second,
		OnStart: func(ctx context.Context, p *Process) { started <- p; <-ctx.Done() },
		OnExit:  func(*Process, error) { exits.Add(1) },
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var p *Process
	select {
	case p = <-started:
	case <-time.After(20 * time.Second):
		t.Fatal("not started")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	select {
	case <-p.Done():
	default:
		t.Fatal("Run returned before the child was reaped")
	}
	if exits.Load() != 1 {
		t.Fatalf("OnExit called %d times", exits.Load())
	}
}

func TestBackoff(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: time.Second, Stable: 5 * time.Second}
	var got []time.Duration
	var d time.Duration
	for range 6 {
		d = b.next(d, time.Millisecond)
		got = append(got, d)
	}
	want := "[100ms 200ms 400ms 800ms 1s 1s]"
	if fmt.Sprint(got) != want {
		t.Fatalf("delays %v, want %s", got, want)
	}
	if d := b.next(time.Second, 6*time.Second); d != b.Min {
		t.Fatalf("after a stable run: %v, want %v", d, b.Min)
	}
}

func TestReaperDrainKillsLeftovers(t *testing.T) {
	need(t, "/bin/sleep")
	r := NewReaper(nil, false)
	r.Drain = 50 * time.Millisecond
	p, err := r.Start(Spec{Path: "/bin/sleep", Args: []string{"60"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.Run(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	waitDone(t, p)
	if _, err := r.Start(Spec{Path: "/bin/sleep", Args: []string{"1"}}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Run: %v", err)
	}
}

func TestNoGoroutineLeak(t *testing.T) {
	need(t, "/bin/sh")
	before := runtime.NumGoroutine()
	r := NewReaper(nil, false)
	ctx, cancel := context.WithCancel(context.Background())
	reaperDone := make(chan error, 1)
	go func() { reaperDone <- r.Run(ctx) }()
	for range 3 {
		p, err := r.Start(sh(`echo x >&2; sleep 60`))
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Stop(10 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	s := &Supervisor{Reaper: r, Spec: sh("exit 1"), Backoff: Backoff{Min: time.Millisecond, Max: time.Millisecond}}
	sctx, scancel := context.WithTimeout(ctx, 100*time.Millisecond)
	_ = s.Run(sctx)
	scancel()
	cancel()
	<-reaperDone
	eventually(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}

// TestReapAllReapsOrphans runs its body in a re-executed test binary that is a
// child subreaper, so orphans are re-parented to it as they would be to PID 1.
func TestReapAllReapsOrphans(t *testing.T) {
	need(t, "/bin/sh")
	if os.Getenv("SUPERVISE_SUBREAPER_CHILD") == "1" {
		subreaperBody(t)
		return
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestReapAllReapsOrphans$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "SUPERVISE_SUBREAPER_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("orphan reaped")) {
		t.Fatalf("subreaper child: %v\n%s", err, out)
	}
}

func subreaperBody(t *testing.T) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatalf("PR_SET_CHILD_SUBREAPER: %v", err)
	}
	if ok, err := ReapAllWanted(); err != nil || !ok {
		t.Fatalf("ReapAllWanted = %v, %v", ok, err)
	}
	h := newRecords()
	r := NewReaper(slog.New(h), true)
	ctx, cancel := context.WithCancel(context.Background())
	reaperDone := make(chan error, 1)
	go func() { reaperDone <- r.Run(ctx) }()

	// Children that exit at once must not lose their status to the sweep.
	for range 20 {
		p, err := r.Start(sh("exit 0"))
		if err != nil {
			t.Fatal(err)
		}
		waitDone(t, p)
		if p.Err() != nil {
			t.Fatal(p.Err())
		}
	}

	p, err := r.Start(sh("sleep 0.1 & exit 0"))
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, p)
	eventually(t, "no children left", func() bool { return len(childrenOf(t, os.Getpid())) == 0 })
	if h.find("reaped orphan") == nil {
		t.Fatal("orphan was not logged")
	}
	cancel()
	if err := <-reaperDone; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	t.Log("orphan reaped")
}

// childrenOf lists the pids (zombies included) whose parent is ppid.
func childrenOf(t *testing.T, ppid int) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var kids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		// The command name may contain spaces and parentheses; fields after
		// the last ')' are "state ppid ...".
		fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(ppid) {
			kids = append(kids, pid)
		}
	}
	return kids
}

// TestSubreaperAnswers pins how PR_GET_CHILD_SUBREAPER's answers are read.
// EINVAL is what qemu-user 7.2 answers for the option: the arm64 daemon under
// emulation stopped there before. internal/arm64test runs the real one.
func TestSubreaperAnswers(t *testing.T) {
	for _, c := range []struct {
		name    string
		flag    int32
		err     error
		want    bool
		wantErr bool
	}{
		{name: "subreaper", flag: 1, want: true},
		{name: "not a subreaper", flag: 0, want: false},
		{name: "option unknown (qemu-user, old kernels)", err: unix.EINVAL, want: false},
		{name: "other failure", err: unix.EFAULT, wantErr: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := subreaper(func(flag *int32) error {
				*flag = c.flag
				return c.err
			})
			if got != c.want || (err != nil) != c.wantErr {
				t.Errorf("subreaper = %v, %v; want %v, error %v", got, err, c.want, c.wantErr)
			}
			if c.wantErr && !errors.Is(err, c.err) {
				t.Errorf("error %v does not wrap %v", err, c.err)
			}
		})
	}
	// This host's kernel knows the option, and a test process is no subreaper
	// unless something above it made it one; either way it must answer.
	if _, err := ReapAllWanted(); err != nil {
		t.Errorf("ReapAllWanted on this host: %v", err)
	}
}

func TestLineLevel(t *testing.T) {
	for _, tc := range []struct {
		line string
		want slog.Level
	}{
		{"E: [pulseaudio] module.c: Failed to load module", slog.LevelError},
		{"W: [pulseaudio] server-lookup.c: Unable to contact D-Bus", slog.LevelWarn},
		{"N: [pulseaudio] main.c: started", slog.LevelInfo},
		{"D: [pulseaudio] core.c: detail", slog.LevelDebug},
		{"/usr/bin/ffmpeg: error while loading shared libraries: libblas.so.3: cannot open shared object file", slog.LevelError},
		{"[pulse @ 0x55d0] [error] pa_simple_new failed: Connection refused", slog.LevelError},
		{"[warning] Past duration 0.6 too large", slog.LevelWarn},
		{"[mpegts @ 0x1] [info] muxing", slog.LevelInfo},
		{"speaker.monitor: Input/output error", slog.LevelError},
		{"[pulse @ 0x55d0] pa_simple_new failed: Connection refused", slog.LevelError},
		{"Past duration 0.603 too large", slog.LevelWarn},
	} {
		if got := LineLevel([]byte(tc.line)); got != tc.want {
			t.Errorf("%q: %v, want %v", tc.line, got, tc.want)
		}
	}
}

// A child without its own Level func gets LineLevel: an ffmpeg that cannot
// start is an error in the log, not an info line.
func TestDefaultLevelOfErrorLines(t *testing.T) {
	need(t, "/bin/sh")
	h := newRecords()
	p, err := NewReaper(slog.New(h), false).Start(sh(`echo "/usr/bin/ffmpeg: error while loading shared libraries: libblas.so.3" >&2; echo "E: [pulseaudio] broken" >&2`))
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, p)
	for _, msg := range []string{"/usr/bin/ffmpeg: error while loading shared libraries: libblas.so.3", "E: [pulseaudio] broken"} {
		if m := h.find(msg); m == nil || m["level"] != "ERROR" {
			t.Errorf("record %q: %v, want level ERROR", msg, m)
		}
	}
}

// A stopped child (SIGSTOP) gets its TERM, and handles it, when Stop runs:
// not a KILL after the whole grace.
func TestStopContinuesAStoppedChild(t *testing.T) {
	need(t, "/bin/sleep")
	p, err := NewReaper(nil, false).Start(Spec{Name: "sleep", Path: "/bin/sleep", Args: []string{"60"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	eventually(t, "child stopped", func() bool {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Pid()))
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		return len(f) > 0 && f[0] == "T"
	})
	start := time.Now()
	if err := p.Stop(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	var ee *ExitError
	if !errors.As(p.Err(), &ee) || ee.Status.Signal() != syscall.SIGTERM {
		t.Fatalf("err = %v after %s, want terminated by its SIGTERM", p.Err(), time.Since(start))
	}
}
