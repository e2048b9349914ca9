package testenv

import (
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// stopGrace is how long a helper process gets to exit after SIGTERM; a
// loaded 2-core machine can take seconds to schedule it.
const stopGrace = 10 * time.Second

// startProcess starts cmd, whose output goes to log, and stops it by its PID
// when the test ends (SIGTERM, SIGKILL after a grace), logging that output if
// the test failed. The returned channel is closed once the process exited, so
// a caller waiting for readiness can notice an early death.
func startProcess(t testing.TB, what string, cmd *exec.Cmd, log *SyncBuffer) <-chan struct{} {
	t.Helper()
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s (%s): %v", what, cmd.Path, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(stopGrace):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("%s (pid %d) output:\n%s", what, cmd.Process.Pid, log.String())
		}
	})
	return exited
}

// waitUntil polls ready until it holds, failing the test with the process's
// output when the process exits first or the deadline passes.
func waitUntil(t testing.TB, what string, exited <-chan struct{}, log *SyncBuffer, timeout time.Duration, ready func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := ready()
		if err == nil {
			return
		}
		select {
		case <-exited:
			t.Fatalf("%s exited before it was ready (last check: %v):\n%s", what, err, log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready within %v (last check: %v):\n%s", what, timeout, err, log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
