package frontends

import (
	"bytes"
	"context"
	"flag"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pulse-sidecar/pulse-sidecar/internal/testenv"
)

// -update rewrites the generated parts of the front ends (vendorHash in
// flake.nix, the Gazelle BUILD files) instead of failing on a mismatch:
//
//	go test ./internal/frontends -run 'VendorHash|Gazelle' -update
var update = flag.Bool("update", false, "rewrite flake.nix's vendorHash and the Gazelle BUILD files")

// The two Go programs CI runs without Bazel. Gazelle v0.53.0 is the newest
// release that builds with `go run` (v0.54 needs its go.work); MODULE.bazel
// pins the matching rules_go.
const (
	gazelleTool    = "github.com/bazelbuild/bazel-gazelle/cmd/gazelle@v0.53.0"
	buildifierTool = "github.com/bazelbuild/buildtools/buildifier@v0.0.0-20260904073137-eaa4d125b423"
)

// Module downloads and first builds of the tools are slow on a loaded CI
// machine; this bounds them without making them flaky.
const toolTimeout = 10 * time.Minute

// repoRoot is the directory holding go.mod, found upwards from the test's
// working directory (the package directory under go test).
func repoRoot(t testing.TB) string {
	t.Helper()
	if os.Getenv("TEST_SRCDIR") != "" {
		// Under `bazel test` the package runs in a runfiles tree, not the
		// source tree these checks are about.
		t.Skip("checks the source tree; run with go test")
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		dir = filepath.Dir(dir)
	}
	t.Fatal("go.mod not found above the test's directory")
	return ""
}

// run executes a tool and returns its stdout; on failure the error carries
// the command line and stderr.
func run(ctx context.Context, dir string, env []string, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), &cmdError{cmd: strings.Join(append([]string{name}, args...), " "), err: err, stderr: stderr.String()}
	}
	return stdout.Bytes(), nil
}

type cmdError struct {
	cmd, stderr string
	err         error
}

func (e *cmdError) Error() string { return e.cmd + ": " + e.err.Error() + "\n" + e.stderr }

// goRun runs a Go program by module version, the way CI runs Gazelle and
// buildifier without Bazel. -mod=mod lets it resolve the tool's own
// dependencies; neither tool is added to this module's go.mod.
func goRun(t *testing.T, dir, tool string, args ...string) ([]byte, error) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the Go module proxy; skipped with -short")
	}
	goBin := testenv.Tool(t, "go")
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	return run(ctx, dir, []string{"GOFLAGS=-mod=mod", "GOTOOLCHAIN=local"}, goBin, append([]string{"run", tool}, args...)...)
}

// skipDir names directories no front end file lives in: VCS data, build
// outputs and the Nix result link.
func skipDir(name string) bool {
	return strings.HasPrefix(name, ".") || strings.HasPrefix(name, "bazel-") ||
		name == "out" || name == "result" || name == "vendor" || name == "node_modules"
}

// repoFiles lists the files under root (relative, slash-separated) that match.
func repoFiles(t testing.TB, root string, match func(rel string) bool) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			if rel != "." && skipDir(d.Name()) {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() && match(filepath.ToSlash(rel)) {
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// copyTree copies the regular files of the repository into dst, so a tool
// that rewrites files in place can run without touching the working tree.
func copyTree(t testing.TB, src, dst string, match func(rel string) bool) {
	t.Helper()
	for _, rel := range repoFiles(t, src, match) {
		b, err := os.ReadFile(filepath.Join(src, rel))
		if err != nil {
			t.Fatal(err)
		}
		to := filepath.Join(dst, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// writeFileAtomic replaces a repository file through a temp file and a
// rename, so an interrupted -update never leaves half a file.
func writeFileAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
