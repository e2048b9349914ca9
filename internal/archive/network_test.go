package archive

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pulse-sidecar/pulse-sidecar/internal/debian"
	"github.com/pulse-sidecar/pulse-sidecar/internal/testenv"
)

// networkTest gates tests that reach the real archive: they run when asked
// for, and under CI a failure to reach the mirror fails instead of skipping.
func networkTest(t *testing.T) (ci bool) {
	t.Helper()
	ci = testenv.CI()
	if !ci && os.Getenv("IMAGECTL_NETWORK_TESTS") != "1" {
		t.Skip("set IMAGECTL_NETWORK_TESTS=1 to run against the mirror from the apt sources")
	}
	return ci
}

var audioRoots = []string{"pulseaudio", "pulseaudio-utils", "ffmpeg", "libnss-extrausers"}

func TestRealArchiveLock(t *testing.T) {
	networkTest(t)
	mirrors, err := Mirrors("/", debian.DefaultSuites(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if mirrors["debian"] == "" || mirrors["debian-security"] == "" {
		t.Fatalf("apt sources name no debian and debian-security mirrors: %v", mirrors)
	}
	keys, err := debian.LoadKeys("../../image/keys")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c := &Client{Mirrors: mirrors, Keys: keys, Now: time.Now()}
	l, err := c.Lock(ctx, LockOptions{Suites: debian.DefaultSuites(), Archs: []string{"amd64"}, Roots: audioRoots})
	if err != nil {
		t.Fatal(err) // under CI a network failure fails too, as it should
	}
	pkgs := l.PackagesFor("amd64")
	var size int64
	inLock := map[string]bool{}
	for _, p := range pkgs {
		size += p.Size
		inLock[p.Name] = true
	}
	t.Logf("%d packages, %.1f MiB", len(pkgs), float64(size)/(1<<20))
	// CONTRACTS.md section 6 measured 285 packages and ~160 MiB; allow for
	// point releases moving the closure a little.
	if len(pkgs) < 260 || len(pkgs) > 310 {
		t.Errorf("closure has %d packages, want about 285", len(pkgs))
	}
	for _, want := range append([]string{"libpulse0", "libavcodec59", "libc6", "libblas3", "liblapack3"}, audioRoots...) {
		if !inLock[want] {
			t.Errorf("closure lacks %s", want)
		}
	}
	if len(l.Suites) != 3 {
		t.Errorf("suites = %v", l.Suites)
	}
	compareWithApt(t, inLock)
}

// compareWithApt cross-checks the closure with what apt would install on an
// empty system, when apt and its package lists are on this machine. apt's
// lists may be older than the mirror, so only names are compared.
func compareWithApt(t *testing.T, names map[string]bool) {
	t.Helper()
	// Under CI the cross-check is part of what the test proves, so it
	// must not quietly disappear.
	ci := os.Getenv("CI") == "true"
	if _, err := exec.LookPath("apt-get"); err != nil {
		if ci {
			t.Fatalf("CI=true but no apt-get for the cross-check: %v", err)
		}
		t.Log("no apt-get: skipping the cross-check")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := append([]string{"install", "--simulate", "-o", "Dir::State::Status=/dev/null", "-o", "APT::Install-Recommends=false"}, audioRoots...)
	out, err := exec.CommandContext(ctx, "apt-get", args...).Output()
	if err != nil {
		if ci {
			t.Fatalf("CI=true and apt-get --simulate failed: %v\n%s", err, stderrOf(err))
		}
		t.Logf("apt-get --simulate failed (%v): skipping the cross-check", err)
		return
	}
	apt := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "Inst" {
			apt[f[1]] = true
		}
	}
	var onlyUs, onlyApt []string
	for n := range names {
		if !apt[n] {
			onlyUs = append(onlyUs, n)
		}
	}
	for n := range apt {
		if !names[n] {
			onlyApt = append(onlyApt, n)
		}
	}
	sort.Strings(onlyUs)
	sort.Strings(onlyApt)
	if len(onlyUs)+len(onlyApt) > 0 {
		t.Errorf("closure differs from apt's choice: only in ours %v, only in apt's %v", onlyUs, onlyApt)
	}
}

// stderrOf returns what a failed command printed, which says why apt failed.
func stderrOf(err error) []byte {
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.Stderr
	}
	return nil
}
