package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// Pulse is a throwaway PulseAudio daemon owned by one test.
type Pulse struct {
	// Server is the address clients pass to -s/--server, "unix:" + socket.
	Server string
	// Home is the daemon's HOME and XDG_RUNTIME_DIR; clients given the same
	// find its cookie and write their own state there, not in the user's.
	Home string
}

// Env is the environment for a client of p: only HOME and XDG_RUNTIME_DIR,
// so the test's PULSE_* variables cannot redirect it to another server.
func (p Pulse) Env() []string {
	return []string{"HOME=" + p.Home, "XDG_RUNTIME_DIR=" + p.Home}
}

// PulseAudio starts a PulseAudio daemon whose startup script is lines (each
// one command: "load-module ...", "set-default-sink ...") followed by the
// unix protocol on a private socket with anonymous auth, waits until it
// answers, and stops it when the test ends.
func PulseAudio(t testing.TB, lines ...string) Pulse {
	t.Helper()
	pulseaudio := Tool(t, "pulseaudio")
	pactl := Tool(t, "pactl")
	// The socket lives here too, hence the short path.
	dir := ShortTempDir(t)
	sock := filepath.Join(dir, "s")
	p := Pulse{Server: "unix:" + sock, Home: dir}
	script := filepath.Join(dir, "default.pa")
	text := strings.Join(append(slices.Clone(lines),
		"load-module module-native-protocol-unix socket="+sock+" auth-anonymous=1"), "\n") + "\n"
	if err := os.WriteFile(script, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	// -n skips the system default.pa, so the test's lines are all that loads.
	// As root PulseAudio warns that it is not meant to run so, and runs.
	cmd := exec.Command(pulseaudio, "-n", "--file="+script, "--daemonize=no", "--system=no",
		"--exit-idle-time=-1", "--disallow-exit", "--use-pid-file=no", "--realtime=no",
		"--high-priority=no", "--no-cpu-limit", "--log-target=stderr")
	cmd.Env = p.Env()
	var log SyncBuffer
	exited := startProcess(t, "pulseaudio", cmd, &log)
	// The script runs completely before the daemon serves clients, so an
	// answer also means every module in it loaded.
	waitUntil(t, "pulseaudio at "+p.Server, exited, &log, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c := exec.CommandContext(ctx, pactl, "-s", p.Server, "info")
		c.Env = p.Env()
		if out, err := c.CombinedOutput(); err != nil {
			return fmt.Errorf("pactl info: %v: %s", err, strings.TrimSpace(string(out)))
		}
		return nil
	})
	return p
}
