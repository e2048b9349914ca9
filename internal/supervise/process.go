package supervise

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// outputGrace bounds how long Done waits, after the child was reaped, for its
// output pipes to reach EOF: a grandchild that inherited stderr may keep the
// pipe open forever, and Done must not depend on it.
const outputGrace = 2 * time.Second

// Spec describes one child process.
type Spec struct {
	Name string   // log tag: "pulseaudio", "ffmpeg"; defaults to the base name of Path
	Path string   // absolute path of the executable (no PATH search: the image has no shell)
	Args []string // arguments after argv[0] (argv[0] is Path)
	// Env is the complete environment of the child. nil means an empty
	// environment, never the daemon's: it holds secrets such as
	// PULSEAUDIO_COOKIE that children must not inherit.
	Env []string
	Dir string
	// Stdin, when set, is handed to the child as fd 0 (e.g. the read end of
	// a pipe the caller feeds); when nil the child reads /dev/null.
	Stdin *os.File
	// Stdout, when set, is handed to the child as fd 1 (e.g. a FIFO); when nil
	// the child's stdout lines are logged like its stderr.
	Stdout *os.File
	// Level picks the log level of one output line; nil: LineLevel.
	Level func(line []byte) slog.Level
	// Log receives the output lines and lifecycle records; nil: the Reaper's.
	Log *slog.Logger
	// stderr is always turned into slog lines tagged with Name and pid.
}

// Process is a started child. Its status is collected by the Reaper that
// started it.
type Process struct {
	r      *Reaper
	name   string
	pid    int
	reaped chan struct{} // closed under r.mu once status is set
	status unix.WaitStatus
	done   chan struct{}
}

// ExitError is the error of a child that did not exit with status 0.
type ExitError struct {
	Name   string
	Pid    int
	Status syscall.WaitStatus
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("%s (pid %d): %s", e.Name, e.Pid, describe(unix.WaitStatus(e.Status)))
}

// Start starts a child in its own process group (so a signal to the group
// reaches whatever it forks) with Pdeathsig SIGKILL (so a crashed daemon leaves
// no orphans). The Reaper waits for it; Done is closed once it was reaped and
// its output drained.
//
// Pdeathsig fires when the OS thread that forked exits, not the process; the Go
// runtime does not retire threads unless a goroutine exits while locked to one,
// which this daemon never does.
func (r *Reaper) Start(spec Spec) (*Process, error) {
	name := spec.Name
	if name == "" {
		name = filepath.Base(spec.Path)
	}
	if spec.Path == "" {
		return nil, fmt.Errorf("start %s: empty path", name)
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	defer devnull.Close()

	// Read ends are closed by their log goroutines, write ends right after the
	// fork (the child holds its own copies); closeAll covers early failures.
	var readers, writers []*os.File
	closeAll := func() {
		for _, f := range append(readers, writers...) {
			f.Close()
		}
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start %s: stderr pipe: %w", name, err)
	}
	readers, writers = append(readers, errR), append(writers, errW)
	stdout := spec.Stdout
	if stdout == nil {
		outR, outW, err := os.Pipe()
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("start %s: stdout pipe: %w", name, err)
		}
		readers, writers = append(readers, outR), append(writers, outW)
		stdout = outW
	}
	env := spec.Env
	if env == nil {
		env = []string{} // os.StartProcess would inherit on nil
	}
	stdin := devnull
	if spec.Stdin != nil {
		stdin = spec.Stdin
	}
	attr := &os.ProcAttr{
		Dir:   spec.Dir,
		Env:   env,
		Files: []*os.File{stdin, stdout, errW},
		Sys:   &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL},
	}

	// Holding r.mu across the fork means a reapAll sweep cannot take this
	// child's status before it is registered below.
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		closeAll()
		return nil, fmt.Errorf("start %s: %w", name, ErrClosed)
	}
	osp, err := os.StartProcess(spec.Path, append([]string{spec.Path}, spec.Args...), attr)
	if err != nil {
		r.mu.Unlock()
		closeAll()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{
		r:      r,
		name:   name,
		pid:    osp.Pid,
		reaped: make(chan struct{}),
		done:   make(chan struct{}),
	}
	r.procs[p.pid] = p
	r.mu.Unlock()
	for _, f := range writers {
		f.Close()
	}

	log := spec.Log
	if log == nil {
		log = r.log
	}
	log = log.With("process", name, "pid", p.pid)
	log.Debug("started", "path", spec.Path)
	level := spec.Level
	if level == nil {
		level = LineLevel
	}
	streams := []string{"stderr", "stdout"} // the order readers were appended in
	drained := make([]chan struct{}, len(readers))
	for i, f := range readers {
		drained[i] = make(chan struct{})
		go logLines(f, log.With("stream", streams[i]), level, drained[i])
	}
	go func() {
		if !r.reapAll {
			r.waitOwn(p)
		}
		<-p.reaped
		deadline := time.NewTimer(outputGrace)
		defer deadline.Stop()
		expired := false
		for _, ch := range drained {
			if !expired {
				select {
				case <-ch:
					continue
				case <-deadline.C:
				}
				expired = true
				// A pipe in the runtime poller returns from Read once its
				// deadline passes; its log goroutine then closes it and ends.
				for _, f := range readers {
					_ = f.SetReadDeadline(time.Now())
				}
			}
			<-ch
		}
		_ = osp.Release()
		log.Debug("exited", "status", describe(p.status))
		close(p.done)
	}()
	return p, nil
}

// logLines turns a child's output into log records, one per line. Lines
// longer than the buffer are logged in pieces rather than growing memory.
func logLines(f *os.File, log *slog.Logger, level func([]byte) slog.Level, done chan<- struct{}) {
	defer close(done)
	defer f.Close()
	br := bufio.NewReaderSize(f, 4096)
	for {
		line, err := br.ReadSlice('\n')
		line = bytes.TrimRight(line, "\r\n")
		if len(line) > 0 {
			log.Log(context.Background(), level(line), string(line))
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// Pid returns the child's process id (also its process group id).
func (p *Process) Pid() int { return p.pid }

// Done is closed when the child has been reaped and its output drained.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err returns the exit status once Done is closed: nil for exit 0, otherwise
// an *ExitError. Before Done it returns nil.
func (p *Process) Err() error {
	select {
	case <-p.done:
	default:
		return nil
	}
	if p.status.Exited() && p.status.ExitStatus() == 0 {
		return nil
	}
	return &ExitError{Name: p.name, Pid: p.pid, Status: syscall.WaitStatus(p.status)}
}

// Signal sends sig to the child's process group. It returns os.ErrProcessDone
// once the child has been reaped: its pid may then belong to someone else.
func (p *Process) Signal(sig os.Signal) error {
	s, ok := sig.(syscall.Signal)
	if !ok {
		return fmt.Errorf("signal %s (pid %d): unsupported signal %v", p.name, p.pid, sig)
	}
	p.r.mu.Lock()
	defer p.r.mu.Unlock()
	select {
	case <-p.reaped:
		return os.ErrProcessDone
	default:
	}
	if err := unix.Kill(-p.pid, s); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return os.ErrProcessDone
		}
		return fmt.Errorf("signal %s (pid %d): %w", p.name, p.pid, err)
	}
	return nil
}

// Stop sends SIGTERM to the child's group, SIGKILL after grace, and waits for
// Done. A child that already exited is not an error. SIGCONT follows the
// TERM: a stopped child (SIGSTOP, a debugger gone) would otherwise hold the
// TERM pending and only die at the KILL, without its own cleanup.
func (p *Process) Stop(grace time.Duration) error {
	if err := p.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	if err := p.Signal(syscall.SIGCONT); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return nil
	case <-t.C:
	}
	if err := p.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	<-p.done
	return nil
}
