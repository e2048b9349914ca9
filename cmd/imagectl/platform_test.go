package main

import (
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestSBOMFileNames(t *testing.T) {
	arm := v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
	for _, c := range []struct {
		output string
		p      *v1.Platform
		want   string
	}{
		{"out/image", nil, "out/image.spdx.json"},
		{"out/image/", nil, "out/image.spdx.json"},
		{"out/image", &arm, "out/image.linux-arm64-v8.spdx.json"},
		{"out/img.oci.tar", &v1.Platform{OS: "linux", Architecture: "amd64"}, "out/img.oci.tar.linux-amd64.spdx.json"},
		{"sbom.spdx.json", &arm, "sbom.linux-arm64-v8.spdx.json"}, // --sbom of an index
	} {
		if got := sbomFile(c.output, c.p); got != c.want {
			t.Errorf("sbomFile(%q, %v) = %q, want %q", c.output, c.p, got, c.want)
		}
	}
}

func TestDaemonBinariesAndPlatforms(t *testing.T) {
	got, err := daemonBinaries("amd64=/a,arm64=/b", []string{"amd64", "arm64"})
	if err != nil || got["amd64"] != "/a" || got["arm64"] != "/b" {
		t.Fatalf("pairs: %v, %v", got, err)
	}
	if got, err := daemonBinaries("/one", []string{"arm64"}); err != nil || got["arm64"] != "/one" {
		t.Fatalf("one path for one platform: %v, %v", got, err)
	}
	for _, bad := range []string{"/one", "amd64=/a", "amd64=", "=/a"} {
		if _, err := daemonBinaries(bad, []string{"amd64", "arm64"}); err == nil {
			t.Errorf("%q accepted for an index of amd64 and arm64", bad)
		}
	}
	for in, want := range map[string]string{"linux/amd64": "amd64", "linux/arm64": "arm64", "linux/arm64/v8": "arm64"} {
		if got, err := debianArch(in); err != nil || got != want {
			t.Errorf("debianArch(%q) = %q, %v; want %s", in, got, err, want)
		}
	}
	// arm/v7: the spec has no multiarch triplet for armhf and the daemon
	// is not compiled for it, so it is refused here, not half-way through
	// a build.
	for _, bad := range []string{"linux/arm64/v9", "windows/amd64", "linux/s390x", "linux/arm/v7"} {
		if _, err := debianArch(bad); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("debianArch(%q): %v", bad, err)
		}
	}
}
