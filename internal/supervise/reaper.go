// Package supervise runs child processes for a daemon that may be PID 1 in a
// container: one Reaper owns every wait of child processes, and a Supervisor
// keeps one child running, restarting it with capped exponential backoff.
package supervise

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrClosed is returned by Start once the Reaper's Run has returned: nobody
// would wait for a child started then.
var ErrClosed = errors.New("supervise: reaper is closed")

// Reaper owns every wait of child processes. With reapAll (the daemon is PID 1
// or a child subreaper) it waits with wait4(-1, WNOHANG) on SIGCHLD, hands
// statuses to the processes it started and reaps orphans that were re-parented
// to the daemon. Without reapAll it waits for each of its own pids only, so
// in-process tests that also use os/exec are not disturbed.
//
// In reapAll mode nothing else in the process may wait for children (os/exec's
// Cmd.Wait would see ECHILD): the Reaper takes every status.
type Reaper struct {
	log     *slog.Logger
	reapAll bool

	// Drain bounds how long Run keeps reaping after its context is cancelled
	// while started children are still alive (their supervisors are stopping
	// them). After Drain the rest are killed, so shutdown always ends.
	Drain time.Duration

	// mu makes "wait4 reaped pid N" and "pid N is marked exited" one step, as
	// seen by Start (registering) and Signal (checking the child is not reaped),
	// so a status is never lost before its Process is registered and a signal
	// never goes to a pid the kernel may already have handed to someone else.
	mu     sync.Mutex
	procs  map[int]*Process
	closed bool
	// changed is signalled (non-blocking) whenever procs shrinks, so a draining
	// Run notices that the last child is gone.
	changed chan struct{}
}

// NewReaper returns a Reaper. reapAll must only be true when the process is
// PID 1 or a child subreaper (see ReapAllWanted).
func NewReaper(log *slog.Logger, reapAll bool) *Reaper {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Reaper{
		log:     log,
		reapAll: reapAll,
		Drain:   15 * time.Second,
		procs:   make(map[int]*Process),
		changed: make(chan struct{}, 1),
	}
}

// ReapAllWanted reports whether this process inherits orphans (it is PID 1 or
// a child subreaper) and therefore has to reap every child it is handed.
func ReapAllWanted() (bool, error) {
	if os.Getpid() == 1 {
		return true, nil
	}
	return subreaper(func(flag *int32) error {
		// PR_GET_CHILD_SUBREAPER stores the flag through its second argument.
		return unix.Prctl(unix.PR_GET_CHILD_SUBREAPER, uintptr(unsafe.Pointer(flag)), 0, 0, 0)
	})
}

// subreaper interprets PR_GET_CHILD_SUBREAPER as get answers it. EINVAL means
// the option is unknown to whoever answered: qemu-user (7.2) answers every
// subreaper prctl so, which is how the arm64 image runs on an amd64 host
// without binfmt, and kernels before 3.4 have no subreapers at all. Such a
// process cannot have made itself a subreaper, so it is not one (only a
// parent that set the flag before exec'ing qemu could make it one; its
// orphans would then stay zombies until the daemon exits, which is harmless).
func subreaper(get func(flag *int32) error) (bool, error) {
	var flag int32
	err := get(&flag)
	if errors.Is(err, unix.EINVAL) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("prctl(PR_GET_CHILD_SUBREAPER): %w", err)
	}
	return flag != 0, nil
}

// Run reaps until ctx is cancelled, then keeps reaping until every child it
// started has exited (at most Drain, then they are killed) and returns
// ctx.Err(). It is an oklog/run actor body. Without reapAll there is nothing to
// reap centrally, but Run still drains so that shutdown order does not matter.
func (r *Reaper) Run(ctx context.Context) error {
	var sigs chan os.Signal
	if r.reapAll {
		sigs = make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGCHLD)
		defer signal.Stop(sigs)
		// A child may have exited before Notify was installed; its SIGCHLD is
		// gone but its status is not.
		r.sweep()
	}
	for {
		select {
		case <-sigs:
			r.sweep()
			continue
		case <-ctx.Done():
		}
		break
	}

	drain := time.NewTimer(r.Drain)
	defer drain.Stop()
	killed := false
	for {
		r.mu.Lock()
		left := len(r.procs)
		if left == 0 {
			r.closed = true
		}
		r.mu.Unlock()
		if left == 0 {
			return ctx.Err()
		}
		select {
		case <-sigs:
			r.sweep()
		case <-r.changed:
		case <-drain.C:
			if killed {
				r.log.Error("children did not exit after SIGKILL; giving up", "count", left)
				r.mu.Lock()
				r.closed = true
				r.mu.Unlock()
				return ctx.Err()
			}
			r.log.Warn("children still running after drain timeout; killing them", "count", left)
			r.killAll()
			killed = true
			drain.Reset(5 * time.Second)
		}
	}
}

func (r *Reaper) killAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for pid := range r.procs {
		_ = unix.Kill(-pid, unix.SIGKILL)
	}
}

// sweep collects every status that is ready. Orphans (pids the Reaper did not
// start) are logged at debug and forgotten.
func (r *Reaper) sweep() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return // ECHILD: no children at all; 0: none exited yet
		}
		p, ok := r.procs[pid]
		if !ok {
			r.log.Debug("reaped orphan", "pid", pid, "status", describe(ws))
			continue
		}
		r.exitedLocked(p, ws)
	}
}

// exitedLocked records a reaped status; r.mu is held.
func (r *Reaper) exitedLocked(p *Process, ws unix.WaitStatus) {
	delete(r.procs, p.pid)
	p.status = ws
	close(p.reaped)
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// waitOwn is the per-child wait used without reapAll. waitid(WNOWAIT) blocks
// until the child is a zombie without reaping it, so that the reap itself can
// happen under r.mu (the same trick os/exec uses against pid reuse).
func (r *Reaper) waitOwn(p *Process) {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, p.pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err == nil || !errors.Is(err, unix.EINTR) {
			break
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(p.pid, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || pid != p.pid {
			// Someone else reaped it (a reapAll Reaper in the same process,
			// which is a programming error); report it as an unknown exit.
			r.log.Error("child status lost", "process", p.name, "pid", p.pid, "err", err)
			ws = unix.WaitStatus(0xff << 8) // "exit status 255"
		}
		r.exitedLocked(p, ws)
		return
	}
}

func describe(ws unix.WaitStatus) string {
	switch {
	case ws.Exited():
		return fmt.Sprintf("exit status %d", ws.ExitStatus())
	case ws.Signaled():
		return "killed by " + unix.SignalName(ws.Signal())
	default:
		return fmt.Sprintf("wait status %#x", uint32(ws))
	}
}
