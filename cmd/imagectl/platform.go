package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/pulse-sidecar/pulse-sidecar/internal/oci"
)

// debianPlatforms maps the Debian architectures the lock may hold to the
// OCI platforms of their images (variant as Docker and containerd write it).
var debianPlatforms = map[string]v1.Platform{
	"amd64": {OS: "linux", Architecture: "amd64"},
	"arm64": {OS: "linux", Architecture: "arm64", Variant: "v8"},
}

// debianArch reads --platform (os/arch[/variant]; arm64's v8 may be left out).
func debianArch(platform string) (string, error) {
	want, err := v1.ParsePlatform(platform)
	if err != nil {
		return "", usagef("--platform %q: %v", platform, err)
	}
	for arch, p := range debianPlatforms {
		if p.OS == want.OS && p.Architecture == want.Architecture && (want.Variant == "" || want.Variant == p.Variant) {
			return arch, nil
		}
	}
	return "", usagef("--platform %q: not one of the platforms imagectl builds (linux/amd64, linux/arm64)", platform)
}

// hostPlatform is what podman or docker on this machine would pick from an
// index: what --docker-archive holds unless --platform names another.
func hostPlatform() string { return "linux/" + runtime.GOARCH }

// sbomFile is where the SBOM of one platform's image goes beside output:
// <output>.spdx.json for a single-platform output, and
// <output>.<os>-<arch>[-<variant>].spdx.json per platform beside an index
// (one SBOM over all platforms would describe one architecture's packages
// and mislead scanners). An output path ending in .spdx.json (--sbom) has
// the platform put before that suffix.
func sbomFile(output string, p *v1.Platform) string {
	output = filepath.Clean(output)
	if p == nil {
		if strings.HasSuffix(output, ".spdx.json") {
			return output
		}
		return output + ".spdx.json"
	}
	base := strings.TrimSuffix(output, ".spdx.json")
	return base + "." + strings.ReplaceAll(oci.PlatformString(*p), "/", "-") + ".spdx.json"
}

// daemonBinaries reads --daemon-binary: one path for a single-platform build,
// or ARCH=PATH pairs separated by commas, one per architecture built.
func daemonBinaries(v string, archs []string) (map[string]string, error) {
	out := map[string]string{}
	if v == "" {
		return out, nil
	}
	if !strings.Contains(v, "=") {
		if len(archs) != 1 {
			return nil, usagef("--daemon-binary %s: building %s, name one binary per architecture (ARCH=PATH,ARCH=PATH)", v, strings.Join(archs, ", "))
		}
		out[archs[0]] = v
		return out, nil
	}
	for _, pair := range strings.Split(v, ",") {
		arch, path, ok := strings.Cut(pair, "=")
		if !ok || arch == "" || path == "" {
			return nil, usagef("--daemon-binary %q: want PATH or ARCH=PATH,...", v)
		}
		out[arch] = path
	}
	for _, a := range archs {
		if out[a] == "" {
			return nil, usagef("--daemon-binary %q names no binary for %s", v, a)
		}
	}
	return out, nil
}

// absDaemonBinaries makes the paths of --daemon-binary absolute for verify's
// builds, which run in other directories.
func absDaemonBinaries(v string) (string, error) {
	if v == "" {
		return "", nil
	}
	var parts []string
	for _, pair := range strings.Split(v, ",") {
		arch, path, ok := strings.Cut(pair, "=")
		if !ok {
			arch, path = "", pair
		}
		abs, err := filepath.Abs(path)
		if err != nil {
			return "", fmt.Errorf("--daemon-binary %s: %w", path, err)
		}
		if _, err := os.Stat(abs); err != nil {
			return "", fmt.Errorf("--daemon-binary: %w", err)
		}
		if ok {
			abs = arch + "=" + abs
		}
		parts = append(parts, abs)
	}
	return strings.Join(parts, ","), nil
}
