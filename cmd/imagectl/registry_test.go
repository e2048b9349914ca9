package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/pulse-sidecar/pulse-sidecar/internal/oci/ocitest"
	"github.com/pulse-sidecar/pulse-sidecar/internal/oci/sink"
)

// How the stalled-registry tests bound imagectl: IMAGECTL_TIMEOUT (read
// as --timeout where the flag exists; ignored where it does not, so a
// build without the bound hangs and the test's own deadline fails it).
const (
	stallTimeout  = "2s"
	stallDeadline = 90 * time.Second // retries included: a few timeouts and backoffs, with a wide margin for a loaded machine
	stallAfter    = 64 << 10         // bytes of a blob a mid-blob stall lets through
)

// stalledRegistry is a real registry (go-containerregistry's) behind two
// fronts: Host serves it as it is, Stalled serves it through stall.
type stalledRegistry struct {
	Host, Stalled string
}

// newStalledRegistry starts the registry. mode "header": the stalled front
// accepts connections and never answers. mode "blob": it answers, but a
// blob body, uploaded or downloaded, stops after stallAfter bytes.
func newStalledRegistry(t *testing.T, mode string) stalledRegistry {
	t.Helper()
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	release := make(chan struct{})
	wait := func(r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}
	stalled := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case mode == "header":
			wait(r)
			return
		case strings.Contains(r.URL.Path, "/blobs/uploads/") && r.Body != nil:
			r.Body = io.NopCloser(&stallingReader{r: r.Body, left: stallAfter, wait: func() { wait(r) }})
		case r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:"):
			w = &stallingWriter{ResponseWriter: w, left: stallAfter, wait: func() { wait(r) }}
		}
		reg.ServeHTTP(w, r)
	})
	plain := httptest.NewServer(reg)
	front := httptest.NewServer(stalled)
	t.Cleanup(plain.Close)
	t.Cleanup(front.Close)
	// Released before the servers' Close waits for their handlers: one
	// blocked on a body it never read does not notice the client leave.
	t.Cleanup(func() { close(release) })
	return stalledRegistry{Host: strings.TrimPrefix(plain.URL, "http://"), Stalled: strings.TrimPrefix(front.URL, "http://")}
}

// stallingReader passes left bytes of an upload through, then waits.
type stallingReader struct {
	r    io.Reader
	left int
	wait func()
}

func (s *stallingReader) Read(p []byte) (int, error) {
	if s.left <= 0 {
		s.wait()
		return 0, errors.New("stalled on purpose")
	}
	if len(p) > s.left {
		p = p[:s.left]
	}
	n, err := s.r.Read(p)
	s.left -= n
	return n, err
}

// stallingWriter passes left bytes of a download through, then waits.
type stallingWriter struct {
	http.ResponseWriter
	left int
	wait func()
}

func (s *stallingWriter) Write(p []byte) (int, error) {
	if len(p) <= s.left {
		s.left -= len(p)
		return s.ResponseWriter.Write(p)
	}
	n, _ := s.ResponseWriter.Write(p[:s.left])
	s.left = 0
	s.ResponseWriter.(http.Flusher).Flush()
	s.wait()
	return n, errors.New("stalled on purpose")
}

// bigLayerImage is a layout whose second layer (random, so incompressible)
// is several times stallAfter; it returns the layout and that layer's digest.
func bigLayerImage(t *testing.T) (dir string, big v1.Hash) {
	t.Helper()
	noise := make([]byte, 4*stallAfter)
	rand.Read(noise)
	img := ocitest.Image(t, hex.EncodeToString(noise))
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if big, err = ls[1].Digest(); err != nil {
		t.Fatal(err)
	}
	dir = filepath.Join(t.TempDir(), "layout")
	if err := sink.WriteLayout(dir, img, ""); err != nil {
		t.Fatal(err)
	}
	return dir, big
}

// runBounded runs imagectl and fails the test if it is still running at
// the deadline.
func runBounded(t *testing.T, args ...string) (code int, stderr string) {
	t.Helper()
	type result struct {
		code   int
		stderr string
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		code, _, stderr := runCmd(t, args...)
		done <- result{code, stderr}
	}()
	select {
	case r := <-done:
		t.Logf("imagectl %s: exit %d after %s:\n%s", args[0], r.code, time.Since(start).Round(time.Millisecond), r.stderr)
		return r.code, r.stderr
	case <-time.After(stallDeadline):
		t.Fatalf("imagectl %s still running after %s against a stalled registry", strings.Join(args, " "), stallDeadline)
		return 0, ""
	}
}

// TestPushStalledRegistry: a registry that accepts and never answers, and
// one that stops taking a blob mid-way, fail the push within the bound,
// naming the registry (and the blob); one that answers takes it.
func TestPushStalledRegistry(t *testing.T) {
	lay, big := bigLayerImage(t)
	for _, mode := range []string{"header", "blob"} {
		t.Run(mode, func(t *testing.T) {
			reg := newStalledRegistry(t, mode)
			t.Setenv("IMAGECTL_TIMEOUT", stallTimeout)
			code, stderr := runBounded(t, "push", lay, "--repository", reg.Stalled+"/stalled", "--sbom", noSBOM)
			if code != exitError || !strings.Contains(stderr, reg.Stalled) || !strings.Contains(stderr, "no progress for "+stallTimeout) {
				t.Errorf("exit %d, want %d and an error naming %s and the stall", code, exitError, reg.Stalled)
			}
			if mode == "blob" && !strings.Contains(stderr, "blob "+big.String()) {
				t.Errorf("the error does not name the stalled blob %s", big)
			}
			// The same push under the same bound to a registry that
			// answers (another one: the stalled upload holds this one's lock).
			fine := newStalledRegistry(t, mode).Host
			code, stdout, stderr := runCmd(t, "push", lay, "--repository", fine+"/fine", "--sbom", noSBOM)
			if code != 0 || !strings.HasPrefix(stdout, fine+"/fine@sha256:") {
				t.Fatalf("push to a registry that answers: exit %d\n%s%s", code, stdout, stderr)
			}
		})
	}
}

// TestVerifyAgainstStalledRegistry: verify --against a registry image
// (the pull path of diff, policy and verify) fails within the bound when
// the registry never answers or stops sending a blob mid-way, naming the
// registry and the blob.
func TestVerifyAgainstStalledRegistry(t *testing.T) {
	t.Setenv(asImagectlEnv, "1")
	lockPath, debs, daemon := offlineFixture(t)
	lay, big := bigLayerImage(t)
	for _, mode := range []string{"header", "blob"} {
		t.Run(mode, func(t *testing.T) {
			reg := newStalledRegistry(t, mode)
			// Pushed through the unstalled front, pulled through the other.
			if code, _, stderr := runCmd(t, "push", lay, "--repository", reg.Host+"/img", "--tag", "t", "--sbom", noSBOM); code != 0 {
				t.Fatal(stderr)
			}
			t.Setenv("IMAGECTL_TIMEOUT", stallTimeout)
			ref := reg.Stalled + "/img:t"
			code, stderr := runBounded(t, "verify", "--spec", repoSpec, "--lock", lockPath, "--debs", debs, "--daemon-binary", daemon, "--against", ref)
			if code != exitError || !strings.Contains(stderr, reg.Stalled) || !strings.Contains(stderr, "no progress for "+stallTimeout) {
				t.Errorf("exit %d, want %d and an error naming %s and the stall", code, exitError, reg.Stalled)
			}
			if mode == "blob" && !strings.Contains(stderr, "blob "+big.String()) {
				t.Errorf("the error does not name the stalled blob %s", big)
			}
		})
	}
}
