package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pulse-sidecar/pulse-sidecar/internal/debian"
	"github.com/pulse-sidecar/pulse-sidecar/internal/oci/source"
	"github.com/pulse-sidecar/pulse-sidecar/internal/testenv"
)

// syft is the scanner run over the image, pinned: its reading of
// os-release and status.d is what the test holds the image to.
const syft = "github.com/anchore/syft/cmd/syft@v1.57.1"

// syftReport is the part of `syft -o json` the test reads.
type syftReport struct {
	Distro struct {
		ID              string `json:"id"`
		VersionID       string `json:"versionID"`
		VersionCodename string `json:"versionCodename"`
	} `json:"distro"`
	Artifacts []struct {
		Name      string `json:"name"`
		Version   string `json:"version"`
		Type      string `json:"type"`
		PURL      string `json:"purl"`
		Locations []struct {
			Path string `json:"path"`
		} `json:"locations"`
	} `json:"artifacts"`
}

// TestScannerSeesDebian12 runs a real scanner, anchore's syft, offline
// over the OCI archive CI built from this commit, as a reviewer or a
// vulnerability scanner would: it must name the distribution (Debian 12,
// from /etc/os-release) so advisories can match, and list exactly the
// locked packages of the image's architecture with their versions (from
// /var/lib/dpkg/status.d/ and the .md5sums beside each entry). The first
// `go run` of syft compiles it (minutes); later runs hit the build cache.
func TestScannerSeesDebian12(t *testing.T) {
	archive := os.Getenv(imageArchiveEnv)
	if archive == "" {
		if testenv.CI() {
			t.Fatalf("%s is not set: CI builds the image first and scans that archive", imageArchiveEnv)
		}
		t.Skipf("set %s to an OCI archive built by imagectl to scan it with syft", imageArchiveEnv)
	}
	goTool := testenv.Tool(t, "go")
	img, err := source.Load(archive)
	if err != nil {
		t.Fatalf("%s: %v", archive, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	lock, err := debian.ReadLock("../../image/debian.lock.json")
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool, "run", syft, "oci-archive:"+archive, "-o", "json", "-q")
	cmd.Dir = t.TempDir() // outside this module: `go run pkg@version` builds syft's own
	// Offline: no update check; nothing else syft does by default reaches out.
	cmd.Env = append(os.Environ(), "SYFT_CHECK_FOR_APP_UPDATE=false", "GOFLAGS=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("go run %s: %v\n%s", syft, err, tail(stderr.String(), 40))
	}
	t.Logf("syft (compile and scan) in %s", time.Since(start).Round(time.Second))
	var rep syftReport
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("syft output: %v\n%s", err, tail(stdout.String(), 10))
	}
	// syft takes VERSION_ID from /etc/debian_version when it is finer
	// ("12.15", the point release), as on any Debian 12 system.
	major, _, _ := strings.Cut(rep.Distro.VersionID, ".")
	if rep.Distro.ID != "debian" || major != "12" || rep.Distro.VersionCodename != "bookworm" {
		t.Errorf("syft sees distro %q %q %q, want debian 12 bookworm", rep.Distro.ID, rep.Distro.VersionID, rep.Distro.VersionCodename)
	}

	want := map[string]string{}
	for _, p := range lock.PackagesFor(cf.Architecture) {
		want[p.Name] = p.Version
	}
	got := map[string]string{}
	withSums := 0
	for _, a := range rep.Artifacts {
		if a.Type != "deb" {
			continue // the daemon's Go modules
		}
		if v, dup := got[a.Name]; dup {
			t.Errorf("syft lists %s twice (%s, %s)", a.Name, v, a.Version)
		}
		got[a.Name] = a.Version
		if !strings.Contains(a.PURL, "distro=debian-12") {
			t.Errorf("%s: purl %q names no Debian 12 distro: advisories would not match", a.Name, a.PURL)
		}
		for _, l := range a.Locations {
			if l.Path == "/var/lib/dpkg/status.d/"+a.Name+".md5sums" {
				withSums++
			}
		}
	}
	// The md5sums beside the status.d entries give syft each package's
	// files (every Debian 12 package in the lock ships an md5sums).
	if withSums != len(got) {
		t.Errorf("syft read the .md5sums of %d of %d packages", withSums, len(got))
	}
	var diffs []string
	for n, v := range want {
		if got[n] != v {
			diffs = append(diffs, "lock "+n+" "+v+", syft "+orNone(got[n]))
		}
	}
	for n, v := range got {
		if _, ok := want[n]; !ok {
			diffs = append(diffs, "syft "+n+" "+v+", not in the lock")
		}
	}
	sort.Strings(diffs)
	for _, d := range diffs {
		t.Error(d)
	}
	t.Logf("syft: %s %s, %d Debian packages (lock: %d for %s), %d with their .md5sums", rep.Distro.ID, rep.Distro.VersionID, len(got), len(want), cf.Architecture, withSums)
}

func orNone(v string) string {
	if v == "" {
		return "none"
	}
	return v
}
