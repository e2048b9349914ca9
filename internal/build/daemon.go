package build

import (
	"context"
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
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+d.Arch)
	cmd.Stdout, cmd.Stderr = d.Stderr, d.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go build %s for linux/%s in %s: %w", d.Package, d.Arch, d.ModuleRoot, err)
	}
	return os.ReadFile(out)
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
