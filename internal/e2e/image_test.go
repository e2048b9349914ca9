package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pulse-sidecar/pulse-sidecar/internal/testenv"
)

// imageArchiveEnv names the OCI archive under test. CI builds the image once
// and shares it between the image checks and these tests.
const imageArchiveEnv = "PULSE_SIDECAR_IMAGE_ARCHIVE"

// imageArchive returns the archive to test. Without one a developer gets the
// real thing built from the working tree, which takes minutes; in CI a
// missing archive is a broken pipeline, not a reason to build twice.
func imageArchive(t *testing.T) string {
	t.Helper()
	if p := os.Getenv(imageArchiveEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s: %v", imageArchiveEnv, err)
		}
		return p
	}
	if testenv.CI() {
		t.Fatalf("%s is not set: CI must build the image once (imagectl build --oci-archive FILE) and export its path", imageArchiveEnv)
	}
	goBin := testenv.Tool(t, "go")
	root := moduleRoot(t, goBin)
	archive := filepath.Join(t.TempDir(), "image.tar")
	t.Logf("%s is not set: building the image with imagectl (minutes; set it to reuse an archive)", imageArchiveEnv)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "run", "./cmd/imagectl", "build", "--oci-archive", archive)
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("imagectl build in %s: %v\n%s", root, err, out.String())
	}
	t.Logf("built %s in %s", archive, time.Since(start).Round(time.Second))
	return archive
}

func moduleRoot(t *testing.T, goBin string) string {
	t.Helper()
	out, err := exec.Command(goBin, "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		t.Fatalf("go env GOMOD: %q, %v: not inside the module", gomod, err)
	}
	return filepath.Dir(gomod)
}
