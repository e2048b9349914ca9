package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pulse-sidecar/pulse-sidecar/internal/testenv"
)

// engine runs podman against a storage root, run root and temp dir of its
// own, so the tests neither see nor touch the machine's images, containers
// and volumes, and removing that one directory removes all they made.
type engine struct {
	bin    string
	global []string
	env    []string
}

// containersConf follows the recipe for these machines: crun does not work
// with their hybrid cgroups, runc does; without default ulimits runc refuses
// to start containers. Nothing runs systemd or journald here.
const containersConf = `[containers]
default_ulimits = ["nofile=20000:20000", "nproc=1024:1024"]
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
`

func newEngine(t *testing.T) *engine {
	t.Helper()
	bin := testenv.Tool(t, "podman")
	testenv.Tool(t, "runc")
	// A short path: overlay mount options carry every layer's path and are
	// limited to a page.
	dir, err := os.MkdirTemp("", "e2e-podman-")
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "containers.conf")
	if err := os.WriteFile(conf, []byte(containersConf), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"root", "run", "tmp"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	e := &engine{
		bin: bin,
		global: []string{
			"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run"),
			"--tmpdir", filepath.Join(dir, "tmp"),
		},
		env: append(os.Environ(), "CONTAINERS_CONF="+conf),
	}
	t.Cleanup(func() {
		// Whatever a failed test left behind: pods first (they own
		// containers), then containers, volumes and images, then the store.
		for _, args := range [][]string{
			{"pod", "rm", "--all", "--force", "--time", "0"},
			{"rm", "--all", "--force", "--time", "0"},
			{"volume", "rm", "--all", "--force"},
			{"rmi", "--all", "--force"},
		} {
			if out, err := e.try(context.Background(), 2*time.Minute, args...); err != nil {
				t.Logf("cleanup: %v\n%s", err, out)
			}
		}
		unmountUnder(t, dir)
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("cleanup of the podman store %s: %v", dir, err)
		}
	})
	return e
}

func (e *engine) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, e.bin, append(append([]string{}, e.global...), args...)...)
	cmd.Env = e.env
	// A killed podman must not leave the test waiting on its children's
	// pipes.
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// try runs podman with a deadline and returns its trimmed stdout; the error
// names the command and carries stderr.
func (e *engine) try(ctx context.Context, timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := e.command(ctx, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return strings.TrimSpace(out.String()), fmt.Errorf("podman %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

// must is try that fails the test.
func (e *engine) must(t *testing.T, args ...string) string {
	t.Helper()
	out, err := e.try(context.Background(), 2*time.Minute, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// loadImage loads an OCI archive and tags it with a name no other test run
// uses; the tag is removed at the end.
func (e *engine) loadImage(t *testing.T, archive string) string {
	t.Helper()
	out := e.must(t, "load", "--quiet", "--input", archive)
	loaded := loadedName(out)
	if loaded == "" {
		t.Fatalf("podman load -i %s: no image name in its output %q", archive, out)
	}
	ref := "localhost/pulse-sidecar-e2e:" + randomHex(t, 6)
	e.must(t, "tag", loaded, ref)
	t.Cleanup(func() {
		if out, err := e.try(context.Background(), time.Minute, "rmi", "--force", ref, loaded); err != nil {
			t.Logf("cleanup: %v\n%s", err, out)
		}
	})
	return ref
}

// loadedName picks the first image of podman load's "Loaded image(s): a, b"
// line; an archive without a reference name gives a bare ID there.
func loadedName(out string) string {
	for _, line := range strings.Split(out, "\n") {
		if _, names, ok := strings.Cut(line, ": "); ok && strings.HasPrefix(line, "Loaded image") {
			return strings.TrimSpace(strings.Split(names, ",")[0])
		}
	}
	return ""
}

// unmountUnder detaches mounts a killed podman may have left in its store, so
// the directory can be removed.
func unmountUnder(t *testing.T, dir string) {
	mounts, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return
	}
	var under []string
	for _, line := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], dir+"/") {
			under = append(under, f[1])
		}
	}
	// Deepest first.
	for i := len(under) - 1; i >= 0; i-- {
		if err := unix.Unmount(under[i], unix.MNT_DETACH); err != nil {
			t.Logf("cleanup: unmount %s: %v", under[i], err)
		}
	}
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
