package frontends

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/pulse-sidecar/pulse-sidecar/internal/debian"
	"github.com/pulse-sidecar/pulse-sidecar/internal/testenv"
)

// flakeExpr evaluates flake.nix's outputs against testdata/stub-nixpkgs.nix
// and returns, per system, what the flake asked the builders for.
const flakeExpr = `{ flakeDir, stub, override }:
let
  flake = import (/. + flakeDir + "/flake.nix");
  self = { outPath = flakeDir; shortRev = "abc1234"; rev = "abc1234def"; };
  nixpkgs.legacyPackages = builtins.listToAttrs (map (system: {
    name = system;
    value = import (/. + stub) system;
  }) [ "x86_64-linux" "aarch64-linux" ]);
  out = flake.outputs { inherit self nixpkgs; };
  names = map (d: d.pname or d.name);
in builtins.mapAttrs (system: p: let image = p.image.override (builtins.fromJSON override); in {
  packages = builtins.attrNames p;
  default = p.default.name;
  image = {
    inherit (image) name SOURCE_DATE_EPOCH buildPhase installPhase;
    nativeBuildInputs = names image.nativeBuildInputs;
    # Forces every fetchurl's urls, as instantiating the derivation would.
    urls = map (d: d.file.urls) image.passthru.pinned.debs;
  };
  go = map (d: { inherit (d) pname vendorHash subPackages ldflags env; }) [ p.pulse-sidecar p.imagectl ];
  push = { inherit (out.apps.${system}.push) type program; };
  checks = builtins.attrNames out.checks.${system};
  goTest = let g = out.checks.${system}.go-test; in { inherit (g) doCheck checkFlags; subPackages = g.subPackages or null; };
  policy = out.checks.${system}.policy.script;
  shell = names out.devShells.${system}.default.packages;
}) out.packages`

type flakeSystem struct {
	Packages []string `json:"packages"`
	Default  string   `json:"default"`
	Image    struct {
		Name              string     `json:"name"`
		SourceDateEpoch   string     `json:"SOURCE_DATE_EPOCH"`
		BuildPhase        string     `json:"buildPhase"`
		NativeBuildInputs []string   `json:"nativeBuildInputs"`
		URLs              [][]string `json:"urls"`
	} `json:"image"`
	Go []struct {
		Pname       string            `json:"pname"`
		VendorHash  string            `json:"vendorHash"`
		SubPackages []string          `json:"subPackages"`
		Ldflags     []string          `json:"ldflags"`
		Env         map[string]string `json:"env"`
	} `json:"go"`
	Push   map[string]string `json:"push"`
	Checks []string          `json:"checks"`
	GoTest struct {
		DoCheck     bool     `json:"doCheck"`
		CheckFlags  []string `json:"checkFlags"`
		SubPackages []string `json:"subPackages"`
	} `json:"goTest"`
	Policy string   `json:"policy"`
	Shell  []string `json:"shell"`
}

// evalFlake copies flake.nix and image/debs.nix next to the synthetic lock
// (the flake reads image/debian.lock.json) and evaluates the outputs.
func evalFlake(t *testing.T, override map[string]any, env ...string) (map[string]flakeSystem, error) {
	t.Helper()
	bin := testenv.Tool(t, "nix-instantiate")
	root := repoRoot(t)
	dir := t.TempDir()
	for dst, src := range map[string]string{
		"flake.nix":              filepath.Join(root, "flake.nix"),
		"image/debs.nix":         filepath.Join(root, "image", "debs.nix"),
		"image/spec.json":        filepath.Join(root, "image", "spec.json"),
		"image/debian.lock.json": filepath.Join("testdata", "lock.json"),
	} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(dst)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, dst), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	stub, err := filepath.Abs(filepath.Join("testdata", "stub-nixpkgs.nix"))
	if err != nil {
		t.Fatal(err)
	}
	ov, err := json.Marshal(override)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), nixTimeout)
	defer cancel()
	out, err := run(ctx, dir, env, bin, "--eval", "--strict", "--json", "--readonly-mode",
		"--argstr", "flakeDir", dir, "--argstr", "stub", stub, "--argstr", "override", string(ov), "--expr", flakeExpr)
	if err != nil {
		return nil, err
	}
	var got map[string]flakeSystem
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("flake outputs: %v\n%s", err, out)
	}
	return got, nil
}

// The flake wires the lock, the two Go builds and imagectl together the way
// the README says; this checks the wiring without nixpkgs.
func TestFlakeOutputs(t *testing.T) {
	l, err := debian.ReadLock(filepath.Join("testdata", "lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	epoch, err := debian.SourceDateEpoch(l)
	if err != nil {
		t.Fatal(err)
	}
	flake, err := os.ReadFile(filepath.Join(repoRoot(t), "flake.nix"))
	if err != nil {
		t.Fatal(err)
	}
	vendorHash, err := VendorHash(flake)
	if err != nil {
		t.Fatal(err)
	}
	got, err := evalFlake(t, map[string]any{"securityMirrors": []string{"https://mirror.test/debian-security"}})
	if err != nil {
		t.Fatal(err)
	}
	for system, arch := range map[string]string{"x86_64-linux": "amd64", "aarch64-linux": "arm64"} {
		s, ok := got[system]
		if !ok {
			t.Errorf("no packages for %s", system)
			continue
		}
		if want := "default image imagectl pulse-sidecar"; strings.Join(s.Packages, " ") != want {
			t.Errorf("%s: packages %q, want %s", system, s.Packages, want)
		}
		if s.Default != s.Image.Name {
			t.Errorf("%s: default is %s, want the image", system, s.Default)
		}
		if s.Image.SourceDateEpoch != fmt.Sprint(epoch) {
			t.Errorf("%s: SOURCE_DATE_EPOCH %s, imagectl derives %d from the lock", system, s.Image.SourceDateEpoch, epoch)
		}
		bp := s.Image.BuildPhase
		for _, want := range []string{
			"imagectl build", "--arch " + arch, "--debs debs", "--lock debian.lock.json", "--spec spec.json",
			"--daemon-binary /nix/store/00000000000000000000000000000000-pulse-sidecar/bin/pulse-sidecar",
			`--source-date-epoch "$SOURCE_DATE_EPOCH"`, "--oci-archive ", "--version abc1234",
		} {
			if !strings.Contains(bp, want) {
				t.Errorf("%s: buildPhase lacks %q:\n%s", system, want, bp)
			}
		}
		links := regexp.MustCompile(`(?m)^ln -s /nix/store/\S+ debs/'([^']+)'$`).FindAllStringSubmatch(bp, -1)
		pkgs := l.PackagesFor(arch)
		if len(links) != len(pkgs) {
			t.Errorf("%s: buildPhase links %d .debs, the lock lists %d for %s", system, len(links), len(pkgs), arch)
		}
		for i := 0; i < len(links) && i < len(pkgs); i++ {
			if links[i][1] != filepath.Base(pkgs[i].Filename) {
				t.Errorf("%s: link %d is %q, want %q", system, i, links[i][1], filepath.Base(pkgs[i].Filename))
			}
		}
		want, err := Downloads(l, arch, Mirrors{Debian: []string{"mirror://debian"}, Security: []string{"https://mirror.test/debian-security"}})
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Image.URLs) != len(want) {
			t.Errorf("%s: %d downloads, want %d", system, len(s.Image.URLs), len(want))
		}
		for i := 0; i < len(want) && i < len(s.Image.URLs); i++ {
			if strings.Join(s.Image.URLs[i], " ") != strings.Join(want[i].URLs, " ") {
				t.Errorf("%s: %s from %q, want %q", system, want[i].Name, s.Image.URLs[i], want[i].URLs)
			}
		}
		if strings.Join(s.Image.NativeBuildInputs, " ") != "imagectl" {
			t.Errorf("%s: image build inputs %q, want imagectl alone", system, s.Image.NativeBuildInputs)
		}
		for _, g := range s.Go {
			if g.VendorHash != vendorHash || g.Env["CGO_ENABLED"] != "0" || len(g.SubPackages) != 1 || g.SubPackages[0] != "cmd/"+g.Pname {
				t.Errorf("%s: %s built with %+v", system, g.Pname, g)
			}
		}
		if len(s.Go) == 2 && !containsAll(s.Go[0].Ldflags, "-X main.version=abc1234") {
			t.Errorf("%s: pulse-sidecar ldflags %q do not stamp the version", system, s.Go[0].Ldflags)
		}
		if s.Push["type"] != "app" || !strings.HasPrefix(s.Push["program"], "/nix/store/") {
			t.Errorf("%s: apps.push = %v", system, s.Push)
		}
		if strings.Join(s.Checks, " ") != "go-test policy" || !s.GoTest.DoCheck ||
			!containsAll(s.GoTest.CheckFlags, "-short") || s.GoTest.SubPackages != nil {
			t.Errorf("%s: checks %q, go-test %+v", system, s.Checks, s.GoTest)
		}
		if !strings.Contains(s.Policy, "imagectl policy --spec /nix/store/") || !strings.Contains(s.Policy, "--lock /nix/store/") ||
			!strings.Contains(s.Policy, "--source-date-epoch ") {
			t.Errorf("%s: policy check runs %q", system, s.Policy)
		}
		if want := "go gopls pulseaudio ffmpeg"; strings.Join(s.Shell, " ") != want {
			t.Errorf("%s: devShell has %q, want %s", system, s.Shell, want)
		}
	}
}

// Without a security mirror the locked security updates have no URL: the
// evaluation must say so, and an impure evaluation takes the mirror from the
// environment.
func TestFlakeSecurityMirrors(t *testing.T) {
	_, err := evalFlake(t, map[string]any{})
	if err == nil || !strings.Contains(err.Error(), "pass securityMirrors") {
		t.Fatalf("evaluating without a security mirror gave %v, want an error asking for securityMirrors", err)
	}
	got, err := evalFlake(t, map[string]any{}, "PULSE_SIDECAR_SECURITY_MIRRORS=https://mirror.test/debian-security", "PULSE_SIDECAR_SNAPSHOT_BASE=https://snapshot.test")
	if err != nil {
		t.Fatal(err)
	}
	urls := got["x86_64-linux"].Image.URLs
	want := []string{
		"https://mirror.test/debian-security/pool/updates/main/f/foo/libfoo1_2.3~rc1-1+deb12u1_amd64.deb",
		"https://snapshot.test/archive/debian-security/20240301T090000Z/pool/updates/main/f/foo/libfoo1_2.3~rc1-1+deb12u1_amd64.deb",
	}
	if len(urls) != 3 || strings.Join(urls[1], " ") != strings.Join(want, " ") {
		t.Errorf("with base URLs from the environment the downloads are %q; want libfoo1 from %q", urls, want)
	}
}
