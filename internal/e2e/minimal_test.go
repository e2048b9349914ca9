package e2e

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestMinimalReadOnly runs the image the smallest way README shows:
// `podman run --read-only --user 102:104` with nothing added but the
// desktop's /tmp. /container, /var/run/desktop and /var/log/desktop are then
// read-only directories of the image; the daemon must become ready with its
// FIFOs and state in a private directory under podman's /run tmpfs, say so
// once, and play.
func TestMinimalReadOnly(t *testing.T) {
	archive := imageArchive(t)
	e := newEngine(t)
	image := e.loadImage(t, archive)
	p := newPod(t, e, image)
	e.must(t, "run", "--detach", "--pod", p.name, "--name", p.sidecar,
		"--user", "102:104", "--read-only",
		"--volume", p.volume+":/tmp",
		"--env", "PULSEAUDIO_COOKIE="+p.cookie,
		image)
	p.waitReady(t, 60*time.Second)

	pl := startPlayer(t, p, tone(1000), 30, false)
	waitReached(t, pl, playRate, 60*time.Second)
	l := listen(t, p.speaker)
	l.waitBytes(t, 16<<10, 30*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, _ := e.command(ctx, "logs", p.sidecar).CombinedOutput()
	logs := string(out)
	if n := strings.Count(logs, "using a private directory instead"); n != 1 {
		t.Errorf("fallback announced %d times, want once:\n%s", n, logs)
	}
	if n := strings.Count(logs, "log directory not writable"); n != 1 {
		t.Errorf("log dir fallback announced %d times, want once:\n%s", n, logs)
	}
	if !strings.Contains(logs, "dir=/run/pulse-sidecar-") {
		t.Errorf("the private directory is not under /run:\n%s", logs)
	}
}
