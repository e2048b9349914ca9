package build

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Daemon says how to compile the pulse-sidecar binary.
type Daemon struct {
	ModuleRoot string // directory holding go.mod
	Package    string // "./cmd/pulse-sidecar"
	Arch       string // GOARCH
	VersionVar string // "main.version"; empty to skip -X
	Version    string
	Stderr     io.Writer // the go tool's output
}

// Compile builds the daemon the way it ships: static (CGO_ENABLED=0),
// without paths, VCS stamps or build IDs, so its bytes depend only on the
// source and the Go release. The Go release is the one on PATH, honouring
// GOTOOLCHAIN; Nix and Bazel pin theirs and pass --daemon-binary instead.
func (d Daemon) Compile(ctx context.Context) ([]byte, error) {
	dir, err := os.MkdirTemp("", "imagectl-daemon-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "pulse-sidecar")
	ldflags := "-s -w -buildid="
	if d.VersionVar != "" && d.Version != "" {
		if strings.ContainsAny(d.Version, " '\"") {
			return nil, fmt.Errorf("daemon version %q must not contain spaces or quotes", d.Version)
		}
		ldflags += " -X " + d.VersionVar + "=" + d.Version
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags="+ldflags, "-o", out, d.Package)
	cmd.Dir = d.ModuleRoot
	env, err := d.env(ctx)
	if err != nil {
		return nil, err
	}
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = d.Stderr, d.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go build %s for linux/%s in %s: %w", d.Package, d.Arch, d.ModuleRoot, err)
	}
	return os.ReadFile(out)
}

// placeGoVars are the GO* settings that say where the go tool finds and keeps
// things (caches, module proxy, toolchain), not what code it generates.
func placeGoVars() []string {
	return []string{
		"GOPATH", "GOCACHE", "GOMODCACHE", "GOTMPDIR", "GOROOT", "GOTOOLCHAIN",
		"GOPROXY", "GOPRIVATE", "GONOPROXY", "GONOSUMDB", "GONOSUMCHECK", "GOSUMDB", "GOINSECURE", "GOAUTH",
	}
}

// env asks the go tool for its effective place settings (from the
// environment or the `go env -w` file) so they survive GOENV=off, which
// the build needs: an empty GOFLAGS in the environment would otherwise fall
// back to a GOFLAGS the user set with `go env -w`.
func (d Daemon) env(ctx context.Context) ([]string, error) {
	cmd := exec.CommandContext(ctx, "go", append([]string{"env", "-json"}, placeGoVars()...)...)
	cmd.Dir = d.ModuleRoot
	cmd.Stderr = d.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go env in %s: %w", d.ModuleRoot, err)
	}
	var place map[string]string
	if err := json.Unmarshal(out, &place); err != nil {
		return nil, fmt.Errorf("go env in %s: %w", d.ModuleRoot, err)
	}
	return compileEnv(os.Environ(), place, d.Arch), nil
}

// compileEnv is environ without any GO* or CGO_* variable, plus the place
// settings and fixed values for everything that changes the generated code
// (GOFLAGS, GOAMD64, GOARM64, GOEXPERIMENT, ...): GOAMD64=v3 on one machine
// must not change the image digest.
func compileEnv(environ []string, place map[string]string, goarch string) []string {
	env := make([]string, 0, len(environ)+len(place)+12)
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(k, "GO") && !strings.HasPrefix(k, "CGO_") {
			env = append(env, kv)
		}
	}
	for _, k := range placeGoVars() {
		if v := place[k]; v != "" {
			env = append(env, k+"="+v)
		}
	}
	return append(env,
		"GOENV=off", "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch,
		"GOFLAGS=", "GOEXPERIMENT=", "GODEBUG=",
		// Each architecture's baseline, which is also the go tool's default.
		"GOAMD64=v1", "GOARM64=v8.0", "GO386=sse2", "GOARM=7",
	)
}

// ModuleRoot finds the directory holding go.mod at or above start.
func ModuleRoot(start string) (string, error) {
	dir, err := filepath.Abs(start)
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod at or above %s: pass --daemon-binary", start)
		}
		dir = parent
	}
}
