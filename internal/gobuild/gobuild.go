// Package gobuild compiles the daemon the way the image ships it, isolated
// from the machine and from the user's Go release: the go tool sees no
// workspace, no GOFLAGS or code-generation settings from the environment or
// its env file, and runs the one Go release go.mod's toolchain line names
// (GOTOOLCHAIN set to it; a user whose go differs gets that release from the
// Go module proxy, checked against the checksum database like any module).
// What is left is what must not matter, and imagectl verify varies it:
// umask, TZ, locale, working and temp directories, GOMAXPROCS and a cold
// build cache.
package gobuild

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// Daemon says how to compile the pulse-sidecar binary.
type Daemon struct {
	ModuleRoot string // directory holding go.mod
	Package    string // "./cmd/pulse-sidecar"
	Arch       string // GOARCH
	VersionVar string // "main.version"; empty to skip -X
	Version    string
	// GoCache is the build cache to use; empty for the user's. verify's
	// second build passes a fresh one, so a poisoned or stale cache
	// cannot make two builds agree.
	GoCache string
	Stderr  io.Writer // the go tool's output
}

// Compile builds the daemon: static (CGO_ENABLED=0), without paths, VCS
// stamps or build IDs, with the pinned Go release, so its bytes depend only
// on the source. Nix and Bazel compile with their own pinned Go and pass
// --daemon-binary instead.
func (d Daemon) Compile(ctx context.Context) ([]byte, error) {
	toolchain, err := Toolchain(d.ModuleRoot)
	if err != nil {
		return nil, err
	}
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
	place, err := d.place(ctx)
	if err != nil {
		return nil, err
	}
	if d.GoCache != "" {
		place["GOCACHE"] = d.GoCache
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags="+ldflags, "-o", out, d.Package)
	cmd.Dir = d.ModuleRoot
	cmd.Env = compileEnv(os.Environ(), place, d.Arch, toolchain)
	cmd.Stdout, cmd.Stderr = d.Stderr, d.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go build %s for linux/%s with %s in %s: %w", d.Package, d.Arch, toolchain, d.ModuleRoot, err)
	}
	return os.ReadFile(out)
}

// placeGoVars are the GO* settings that say where the go tool finds and keeps
// things (caches, module proxy), not what code it generates. GOROOT and
// GOTOOLCHAIN are not among them: the release is go.mod's, and each
// release knows its own root.
func placeGoVars() []string {
	return []string{
		"GOPATH", "GOCACHE", "GOMODCACHE", "GOTMPDIR",
		"GOPROXY", "GOPRIVATE", "GONOPROXY", "GONOSUMDB", "GONOSUMCHECK", "GOSUMDB", "GOINSECURE", "GOAUTH",
	}
}

// place asks the go tool for its effective place settings (from the
// environment or the `go env -w` file) so they survive GOENV=off, which
// the build needs: an empty GOFLAGS in the environment would otherwise fall
// back to a GOFLAGS the user set with `go env -w`. The question is put to the
// local go, so it downloads nothing.
func (d Daemon) place(ctx context.Context) (map[string]string, error) {
	cmd := exec.CommandContext(ctx, "go", append([]string{"env", "-json"}, placeGoVars()...)...)
	cmd.Dir = d.ModuleRoot
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local", "GOWORK=off")
	cmd.Stderr = d.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go env in %s: %w", d.ModuleRoot, err)
	}
	var place map[string]string
	if err := json.Unmarshal(out, &place); err != nil {
		return nil, fmt.Errorf("go env in %s: %w", d.ModuleRoot, err)
	}
	return place, nil
}

// compileEnv is environ without any GO* or CGO_* variable but GOMAXPROCS,
// plus the place settings and fixed values for everything that changes the
// generated code (GOFLAGS, GOAMD64, GOARM64, GOEXPERIMENT, ...): GOAMD64=v3
// on one machine must not change the image digest. GOMAXPROCS stays: it
// sets the compile's parallelism, which verify varies on purpose.
func compileEnv(environ []string, place map[string]string, goarch, toolchain string) []string {
	env := make([]string, 0, len(environ)+len(place)+14)
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if k == "GOMAXPROCS" || !strings.HasPrefix(k, "GO") && !strings.HasPrefix(k, "CGO_") {
			env = append(env, kv)
		}
	}
	for _, k := range placeGoVars() {
		if v := place[k]; v != "" {
			env = append(env, k+"="+v)
		}
	}
	return append(env,
		"GOTOOLCHAIN="+toolchain, "GOWORK=off",
		"GOENV=off", "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch,
		"GOFLAGS=", "GOEXPERIMENT=", "GODEBUG=",
		// Each architecture's baseline, which is also the go tool's default.
		"GOAMD64=v1", "GOARM64=v8.0", "GO386=sse2", "GOARM=7",
	)
}

var toolchainLine = regexp.MustCompile(`^toolchain\s+(go1\.\d+(?:\.\d+)?)\s*(?://.*)?$`)

// Toolchain is the Go release go.mod's toolchain line pins, "go1.26.8".
// A module without one is refused: the daemon's bytes depend on the
// release, so the release must be part of the source.
func Toolchain(moduleRoot string) (string, error) {
	gomod := filepath.Join(moduleRoot, "go.mod")
	b, err := os.ReadFile(gomod)
	if err != nil {
		return "", err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if m := toolchainLine.FindStringSubmatch(strings.TrimSpace(sc.Text())); m != nil {
			return m[1], nil
		}
	}
	return "", fmt.Errorf("%s has no toolchain line (\"toolchain go1.X.Y\"): the daemon's Go release must be pinned", gomod)
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
