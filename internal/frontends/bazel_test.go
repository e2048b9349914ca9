package frontends

import (
	"bytes"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func isBuildFile(rel string) bool {
	b := path.Base(rel)
	return b == "BUILD.bazel" || b == "BUILD"
}

func isStarlark(rel string) bool {
	return isBuildFile(rel) || path.Base(rel) == "MODULE.bazel" || strings.HasSuffix(rel, ".bzl")
}

// Gazelle owns the BUILD files of the Go packages: running it must change
// nothing, or a Go import was added without regenerating them.
func TestGazelleLeavesBuildFilesUnchanged(t *testing.T) {
	root := repoRoot(t)
	work := t.TempDir()
	// Gazelle reads the Go sources, go.mod, the BUILD files and MODULE.bazel
	// (for the rules_go repository name) and needs to see testdata dirs.
	copyTree(t, root, work, func(rel string) bool {
		return strings.HasSuffix(rel, ".go") || isStarlark(rel) || rel == "go.mod" || rel == "go.sum" ||
			strings.Contains("/"+rel, "/testdata/")
	})
	if _, err := goRun(t, work, gazelleTool, "update", "-repo_root", work); err != nil {
		t.Fatal(err)
	}

	before := map[string]bool{}
	for _, rel := range repoFiles(t, root, isBuildFile) {
		before[rel] = true
	}
	var changed []string
	for _, rel := range repoFiles(t, work, isBuildFile) {
		got, err := os.ReadFile(filepath.Join(work, filepath.FromSlash(rel)))
		if err != nil {
			t.Fatal(err)
		}
		have, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(rel)))
		delete(before, rel)
		if err == nil && bytes.Equal(got, have) {
			continue
		}
		changed = append(changed, rel)
		if *update {
			dst := filepath.Join(root, filepath.FromSlash(rel))
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := writeFileAtomic(dst, got); err != nil {
				t.Fatal(err)
			}
		}
	}
	for rel := range before {
		t.Errorf("%s: Gazelle would delete it", rel)
	}
	switch {
	case len(changed) == 0:
	case *update:
		t.Logf("Gazelle rewrote %s", strings.Join(changed, ", "))
	default:
		t.Errorf("Gazelle would change %s; run: go test ./internal/frontends -run Gazelle -update", strings.Join(changed, ", "))
	}
}

// buildifier's formatter and linter pass on every Starlark file.
func TestBuildifierClean(t *testing.T) {
	root := repoRoot(t)
	files := repoFiles(t, root, isStarlark)
	if !containsAll(files, "MODULE.bazel", "BUILD.bazel", "image/BUILD.bazel", "image/debs.bzl", "image/image.bzl") {
		t.Fatalf("found %v, want the front end's Starlark files among them", files)
	}
	out, err := goRun(t, root, buildifierTool, append([]string{"-mode=check", "-lint=warn"}, files...)...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}

// go_deps creates a repository per module, but the root module sees only
// those MODULE.bazel imports with use_repo: exactly the ones BUILD files use.
func TestModuleImportsTheGoRepositoriesBuildFilesUse(t *testing.T) {
	root := repoRoot(t)
	module, err := os.ReadFile(filepath.Join(root, "MODULE.bazel"))
	if err != nil {
		t.Fatal(err)
	}
	imported, err := UseRepos(module, "go_deps")
	if err != nil {
		t.Fatal(err)
	}
	// Repositories that come from bazel_dep or our own extension.
	notGoDeps := map[string]bool{"rules_go": true, "gazelle": true, "platforms": true, "bazel_tools": true, "debian_debs": true}
	used := map[string]bool{}
	for _, rel := range repoFiles(t, root, isBuildFile) {
		b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(rel)))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range ExternalRepos(b) {
			if !notGoDeps[r] {
				used[r] = true
			}
		}
	}
	if want := sortedKeys(used); !reflect.DeepEqual(imported, want) {
		t.Errorf("MODULE.bazel use_repo(go_deps, ...) lists\n %q\nBUILD files use\n %q", imported, want)
	}
}

func TestUseRepos(t *testing.T) {
	module := []byte(`go_deps = use_extension("@gazelle//:extensions.bzl", "go_deps")
use_repo(
    go_deps,
    # a comment, with a comma
    "org_golang_x_sys",
    "com_github_oklog_run",
)
use_repo(debs, "debian_debs")
`)
	got, err := UseRepos(module, "go_deps")
	if want := []string{"com_github_oklog_run", "org_golang_x_sys"}; err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("UseRepos = %q, %v; want %q", got, err, want)
	}
	if _, err := UseRepos(module, "go_sdk"); err == nil {
		t.Error("UseRepos found a use_repo for an extension that has none")
	}
	if _, err := UseRepos([]byte(`use_repo(go_deps, REPOS)`), "go_deps"); err == nil {
		t.Error("UseRepos accepted a non-literal repository name")
	}
}

func TestExternalRepos(t *testing.T) {
	build := []byte(`load("@rules_go//go:def.bzl", "go_library")
go_library(deps = ["//internal/oci", "@com_github_oklog_run//:run", "@org_golang_x_sys//unix", "@com_github_oklog_run//:run"])`)
	if got, want := ExternalRepos(build), []string{"com_github_oklog_run", "org_golang_x_sys", "rules_go"}; !reflect.DeepEqual(got, want) {
		t.Errorf("ExternalRepos = %q, want %q", got, want)
	}
}

// starlarkCall returns the text of the call `kind(name = "NAME", ...)` in a
// BUILD file, up to its closing parenthesis at the start of a line.
func starlarkCall(t *testing.T, build, kind, name string) string {
	t.Helper()
	for _, block := range strings.Split(build, "\n"+kind+"(\n")[1:] {
		body, _, _ := strings.Cut(block, "\n)\n")
		if strings.Contains(body, `name = "`+name+`"`) {
			return body
		}
	}
	t.Fatalf("no %s(name = %q) in the BUILD file", kind, name)
	return ""
}

// Bazel builds each platform of the image index as its own target: a
// transition to a platform with that CPU (issue 12), the daemon pure Go as
// imagectl and Nix build it (CGO_ENABLED=0), so it cross-compiles.
func TestBazelPlatformTargets(t *testing.T) {
	root := repoRoot(t)
	read := func(rel string) string {
		b, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	build, rules, daemon := read("image/BUILD.bazel"), read("image/image.bzl"), read("cmd/pulse-sidecar/BUILD.bazel")
	for arch, cpu := range map[string]string{"amd64": "x86_64", "arm64": "arm64"} {
		target := starlarkCall(t, build, "platform_image", "image_"+arch)
		if !strings.Contains(target, `image = ":image"`) || !strings.Contains(target, `platform = ":linux_`+arch+`"`) {
			t.Errorf("image_%s:\n%s", arch, target)
		}
		p := starlarkCall(t, build, "platform", "linux_"+arch)
		if !strings.Contains(p, `"@platforms//cpu:`+cpu+`"`) || !strings.Contains(p, `"@platforms//os:linux"`) {
			t.Errorf("linux_%s:\n%s", arch, p)
		}
		// The image's select maps that CPU to the same architecture.
		cs := starlarkCall(t, build, "config_setting", arch)
		if !strings.Contains(cs, `"@platforms//cpu:`+cpu+`"`) {
			t.Errorf("config_setting %s:\n%s", arch, cs)
		}
	}
	if !strings.Contains(rules, `outputs = ["//command_line_option:platforms"]`) || !strings.Contains(rules, "cfg = _platform_transition") {
		t.Error("image.bzl: platform_image does not transition its image to the platform")
	}
	if !strings.Contains(starlarkCall(t, daemon, "go_binary", "pulse-sidecar"), `pure = "on"`) {
		t.Error(`cmd/pulse-sidecar: go_binary is not pure = "on" (CGO_ENABLED=0)`)
	}
}
