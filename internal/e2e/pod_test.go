package e2e

import (
	"context"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Container ports of the sidecar, as the original image had them.
const (
	speakerPort    = "29788/tcp"
	microphonePort = "29789/tcp"
	opsPort        = "29780/tcp"
	pulseTCPPort   = "4713/tcp"
)

// pod is what a Kubernetes pod of the product looks like, made with podman:
// one network namespace (the pod's), the sidecar, a desktop container from
// the same image, and /tmp shared between them as a tmpfs volume.
type pod struct {
	e       *engine
	image   string
	name    string
	sidecar string
	desktop string
	volume  string
	// feed is a host directory mounted at /feed in the desktop: FIFOs the
	// tests play through, files they record into.
	feed   string
	cookie string
	// Host addresses of the published ports, all on 127.0.0.1.
	speaker, microphone, ops, pulseTCP string
}

// newPod creates the pod with its desktop container running; the sidecar is
// started separately so tests can time it.
func newPod(t *testing.T, e *engine, image string) *pod {
	t.Helper()
	id := randomHex(t, 4)
	p := &pod{
		e: e, image: image, name: "e2e-" + id,
		sidecar: "e2e-" + id + "-sidecar", desktop: "e2e-" + id + "-desktop",
		volume: "e2e-" + id + "-tmp", cookie: randomHex(t, 16),
	}
	feed, err := os.MkdirTemp("", "e2e-feed-")
	if err != nil {
		t.Fatal(err)
	}
	// The desktop runs as 102:104 and writes recordings here.
	if err := os.Chmod(feed, 0o777); err != nil {
		t.Fatal(err)
	}
	p.feed = feed
	t.Cleanup(func() { os.RemoveAll(feed) })

	t.Cleanup(func() {
		if t.Failed() {
			for _, c := range []string{p.sidecar, p.desktop} {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				out, _ := e.command(ctx, "logs", c).CombinedOutput()
				cancel()
				t.Logf("podman logs %s:\n%s", c, out)
			}
		}
		for _, args := range [][]string{
			{"pod", "rm", "--force", "--time", "0", p.name},
			{"volume", "rm", "--force", p.volume},
		} {
			if out, err := e.try(context.Background(), time.Minute, args...); err != nil {
				t.Logf("cleanup: %v\n%s", err, out)
			}
		}
	})
	e.must(t, "pod", "create", "--name", p.name,
		"--publish", "127.0.0.1::"+speakerPort, "--publish", "127.0.0.1::"+microphonePort,
		"--publish", "127.0.0.1::"+opsPort, "--publish", "127.0.0.1::"+pulseTCPPort)
	// Podman's "size" volume option means an XFS project quota, not the
	// tmpfs size; mode makes it a real /tmp.
	e.must(t, "volume", "create", "--opt", "type=tmpfs", "--opt", "device=tmpfs",
		"--opt", "o=uid=102,gid=104,mode=1777", p.volume)
	// The desktop only has to hold the pod and the volume: an ffmpeg reading
	// silence in real time is the idlest long-running program in the image.
	e.must(t, "run", "--detach", "--pod", p.name, "--name", p.desktop, "--user", "102:104",
		"--volume", p.volume+":/tmp", "--volume", p.feed+":/feed",
		"--entrypoint", "/usr/bin/ffmpeg", image,
		"-nostdin", "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-f", "null", "-")

	infra := e.must(t, "pod", "inspect", "--format", "{{.InfraContainerID}}", p.name)
	for _, port := range []struct {
		dst  *string
		port string
	}{{&p.speaker, speakerPort}, {&p.microphone, microphonePort}, {&p.ops, opsPort}, {&p.pulseTCP, pulseTCPPort}} {
		*port.dst = e.must(t, "port", infra, port.port)
		if !strings.HasPrefix(*port.dst, "127.0.0.1:") {
			t.Fatalf("port %s of pod %s published on %q, want 127.0.0.1 only", port.port, p.name, *port.dst)
		}
	}
	return p
}

// sidecarArgs is the hardened way to run the image, as the README shows it.
func (p *pod) sidecarArgs(daemonArgs ...string) []string {
	args := []string{
		"run", "--detach", "--pod", p.name, "--name", p.sidecar,
		"--user", "102:104", "--read-only", "--cap-drop=ALL", "--security-opt=no-new-privileges",
		"--volume", p.volume + ":/tmp",
		// U: owned by the container's user (podman 4.3 rejects uid=/gid=).
		"--tmpfs", "/container:rw,size=1m,mode=0750,U",
		"--tmpfs", "/var/run/desktop:rw,size=16m,mode=0750,U",
		"--tmpfs", "/var/log/desktop:rw,size=16m,mode=0750,U",
		"--env", "PULSEAUDIO_COOKIE=" + p.cookie,
		// Podman 4.3 ignores the image config's healthcheck. The exec form:
		// the image has no shell.
		"--health-cmd", `["/usr/bin/pulse-sidecar","healthcheck"]`, "--health-interval", "disable",
		"--stop-timeout", "10",
		p.image,
	}
	return append(args, daemonArgs...)
}

// startSidecar runs the sidecar and waits until /readyz says it is ready.
func (p *pod) startSidecar(t *testing.T, daemonArgs ...string) {
	t.Helper()
	p.e.must(t, p.sidecarArgs(daemonArgs...)...)
	p.waitReady(t, 60*time.Second)
}

// readyz returns the HTTP status of /readyz, 0 when unreachable.
func (p *pod) readyz() int {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + p.ops + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (p *pod) waitReady(t *testing.T, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if p.readyz() == http.StatusOK {
			return
		}
		if state := p.state(); state != "running" && state != "created" && state != "" {
			t.Fatalf("sidecar %s is %s before it became ready", p.sidecar, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("sidecar %s not ready within %s", p.sidecar, within)
}

func (p *pod) state() string {
	s, _ := p.e.try(context.Background(), 30*time.Second, "inspect", "--format", "{{.State.Status}}", p.sidecar)
	return s
}

// hostPIDs returns the host PIDs of the processes named comm in container c.
// The tests are root on the host, so they can signal them directly: the
// image has no kill program to exec.
func (p *pod) hostPIDs(t *testing.T, c, comm string) []int {
	t.Helper()
	out := p.e.must(t, "top", c, "hpid", "comm")
	var pids []int
	for _, line := range strings.Split(out, "\n")[1:] {
		f := strings.Fields(line)
		if len(f) == 2 && f[1] == comm {
			if pid, err := strconv.Atoi(f[0]); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// tmpEntries lists the shared /tmp from the host side of the volume.
func (p *pod) tmpEntries(t *testing.T) []string {
	t.Helper()
	dir := p.e.must(t, "volume", "inspect", "--format", "{{.Mountpoint}}", p.volume)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("shared /tmp of pod %s: %v", p.name, err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

// desktopExec starts a program in the desktop container as its user.
func (p *pod) desktopExec(env []string, args ...string) []string {
	out := []string{"exec", "--user", "102:104"}
	for _, kv := range env {
		out = append(out, "--env", kv)
	}
	return append(append(out, p.desktop), args...)
}

// desktopRun runs a program in the desktop container to completion.
func (p *pod) desktopRun(t *testing.T, timeout time.Duration, env []string, args ...string) (string, error) {
	t.Helper()
	return p.e.try(context.Background(), timeout, p.desktopExec(env, args...)...)
}

// cookieFile writes the cookie as PulseAudio clients read it (the 32 hex
// digits eight times, 256 bytes) into the feed directory and returns its
// path inside the desktop.
func (p *pod) cookieFile(t *testing.T, name, hex32 string) string {
	t.Helper()
	if err := os.WriteFile(p.feed+"/"+name, []byte(strings.Repeat(hex32, 8)), 0o644); err != nil {
		t.Fatal(err)
	}
	return "/feed/" + name
}
