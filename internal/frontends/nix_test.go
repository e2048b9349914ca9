package frontends

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pulse-sidecar/pulse-sidecar/internal/debian"
	"github.com/pulse-sidecar/pulse-sidecar/internal/testenv"
)

const nixTimeout = 2 * time.Minute

// nixEval evaluates a Nix expression taking string arguments with Debian's
// nix-bin (2.8): no nixpkgs, no store writes, no network.
func nixEval(t *testing.T, expr string, args map[string]string) ([]byte, error) {
	t.Helper()
	bin := testenv.Tool(t, "nix-instantiate")
	argv := []string{"--eval", "--strict", "--json", "--readonly-mode"}
	keys := make([]string, 0, len(args))
	for k := range args {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		argv = append(argv, "--argstr", k, args[k])
	}
	ctx, cancel := context.WithTimeout(context.Background(), nixTimeout)
	defer cancel()
	return run(ctx, t.TempDir(), nil, bin, append(argv, "--expr", expr)...)
}

func TestNixFilesParse(t *testing.T) {
	bin := testenv.Tool(t, "nix-instantiate")
	root := repoRoot(t)
	files := repoFiles(t, root, func(rel string) bool { return strings.HasSuffix(rel, ".nix") })
	if !containsAll(files, "flake.nix", "image/debs.nix") {
		t.Fatalf("found %v, want flake.nix and image/debs.nix among them", files)
	}
	for _, f := range files {
		ctx, cancel := context.WithTimeout(context.Background(), nixTimeout)
		_, err := run(ctx, root, nil, bin, "--parse", f)
		cancel()
		if err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// debsExpr calls image/debs.nix as the flake does, with a stand-in fetchurl
// that accepts only the arguments nixpkgs' fetchurl takes and returns them.
const debsExpr = `{ debsNix, lockFile, config }:
let
  fetchurl = { urls, hash ? null, sha256 ? null, name ? null }: { inherit urls hash sha256 name; };
  c = builtins.fromJSON config;
in import (/. + debsNix) ({
  inherit fetchurl;
  lock = builtins.fromJSON (builtins.readFile (/. + lockFile));
} // c)`

// nixDebs is what debs.nix returns, read back through JSON.
type nixDebs struct {
	Debs []struct {
		Name     string `json:"name"`
		Version  string `json:"version"`
		FileName string `json:"fileName"`
		SHA256   string `json:"sha256"`
		File     struct {
			URLs   []string `json:"urls"`
			Hash   *string  `json:"hash"`
			SHA256 *string  `json:"sha256"`
			Name   string   `json:"name"`
		} `json:"file"`
	} `json:"debs"`
	SourceDateEpoch int64 `json:"sourceDateEpoch"`
}

// evalDebs evaluates debs.nix over a lock file with the given arguments.
func evalDebs(t *testing.T, lockFile string, config map[string]any) (nixDebs, error) {
	t.Helper()
	cfg, err := json.Marshal(config)
	if err != nil {
		t.Fatal(err)
	}
	out, err := nixEval(t, debsExpr, map[string]string{
		"debsNix":  filepath.Join(repoRoot(t), "image", "debs.nix"),
		"lockFile": lockFile,
		"config":   string(cfg),
	})
	if err != nil {
		return nixDebs{}, err
	}
	var d nixDebs
	if err := json.Unmarshal(out, &d); err != nil {
		t.Fatalf("debs.nix result: %v\n%s", err, out)
	}
	return d, nil
}

// storeName is what Nix accepts as a store path name.
var storeName = regexp.MustCompile(`^[A-Za-z0-9+\-_?=][A-Za-z0-9+\-._?=]*$`)

// checkDebs compares debs.nix's result with the mapping stated in Go: one
// pinned download per lock entry, the lock's hash, the expected URLs in order.
func checkDebs(t *testing.T, l *debian.Lock, arch string, m Mirrors, got nixDebs) {
	t.Helper()
	want, err := Downloads(l, arch, m)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Debs) != len(want) {
		t.Fatalf("%s: debs.nix gives %d downloads, the lock lists %d packages", arch, len(got.Debs), len(want))
	}
	for i, w := range want {
		g := got.Debs[i]
		id := w.Name + " " + w.Version + " (" + arch + ")"
		if g.Name != w.Name || g.Version != w.Version || g.FileName != w.FileName {
			t.Errorf("%s: debs.nix entry %d is %s %s as %q, want file %q", id, i, g.Name, g.Version, g.FileName, w.FileName)
		}
		if h := pinnedHex(t, g.File.Hash, g.File.SHA256); h != w.SHA256 {
			t.Errorf("%s: fetchurl pinned to %q, the lock says %s", id, h, w.SHA256)
		}
		if !reflect.DeepEqual(g.File.URLs, w.URLs) {
			t.Errorf("%s: urls\n got %q\nwant %q", id, g.File.URLs, w.URLs)
		}
		if !storeName.MatchString(g.File.Name) {
			t.Errorf("%s: %q is not a valid store path name", id, g.File.Name)
		}
	}
	epoch, err := debian.SourceDateEpoch(l)
	if err != nil {
		t.Fatal(err)
	}
	if got.SourceDateEpoch != epoch {
		t.Errorf("debs.nix sourceDateEpoch = %d, imagectl derives %d from the same lock", got.SourceDateEpoch, epoch)
	}
}

// pinnedHex returns the sha256 a fetchurl call pins, in hex, whether it was
// given as sha256 (hex) or as an SRI hash; exactly one must be set.
func pinnedHex(t *testing.T, hash, sha256 *string) string {
	t.Helper()
	switch {
	case hash != nil && sha256 == nil:
		b64, ok := strings.CutPrefix(*hash, "sha256-")
		if !ok {
			return "not sha256: " + *hash
		}
		raw, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return "bad SRI: " + *hash
		}
		return hex.EncodeToString(raw)
	case sha256 != nil && hash == nil:
		return *sha256
	}
	return "neither or both of hash and sha256"
}

func TestDebsNixMapsEveryLockEntry(t *testing.T) {
	lockFile, err := filepath.Abs(filepath.Join("testdata", "lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := debian.ReadLock(lockFile)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		arch   string
		config map[string]any
		m      Mirrors
	}{{
		name:   "security mirror and snapshot",
		arch:   "amd64",
		config: map[string]any{"securityMirrors": []string{"https://mirror.test/debian-security/"}, "snapshotBase": "https://snapshot.test/"},
		m:      Mirrors{Debian: []string{"mirror://debian"}, Security: []string{"https://mirror.test/debian-security"}, Snapshot: "https://snapshot.test"},
	}, {
		name:   "own debian mirrors, snapshot only for security",
		arch:   "amd64",
		config: map[string]any{"debianMirrors": []string{"https://a.test/debian", "https://b.test/debian"}, "snapshotBase": "https://snapshot.test"},
		m:      Mirrors{Debian: []string{"https://a.test/debian", "https://b.test/debian"}, Snapshot: "https://snapshot.test"},
	}, {
		name:   "nixpkgs mirror list alone",
		arch:   "arm64",
		config: map[string]any{},
		m:      Mirrors{Debian: []string{"mirror://debian"}},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.config["arch"] = c.arch
			got, err := evalDebs(t, lockFile, c.config)
			if err != nil {
				t.Fatal(err)
			}
			checkDebs(t, l, c.arch, c.m, got)
		})
	}
}

// The real lock, once it exists, must map as cleanly as the synthetic one.
func TestDebsNixRealLock(t *testing.T) {
	lockFile := filepath.Join(repoRoot(t), "image", "debian.lock.json")
	if _, err := os.Stat(lockFile); os.IsNotExist(err) && !testenv.CI() {
		t.Skip("image/debian.lock.json is not generated yet")
	}
	l, err := debian.ReadLock(lockFile)
	if err != nil {
		t.Fatal(err)
	}
	m := Mirrors{Debian: []string{"mirror://debian"}, Security: []string{"https://mirror.test/debian-security"}, Snapshot: "https://snapshot.test"}
	for _, arch := range l.Architectures {
		got, err := evalDebs(t, lockFile, map[string]any{"arch": arch, "securityMirrors": m.Security, "snapshotBase": m.Snapshot})
		if err != nil {
			t.Fatal(err)
		}
		checkDebs(t, l, arch, m, got)
	}
}

// Every way the mapping can go wrong must stop the evaluation with a message
// naming the package or setting at fault, never produce an unpinned fetch.
func TestDebsNixRejects(t *testing.T) {
	good, err := os.ReadFile(filepath.Join("testdata", "lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, old, new string
		config         map[string]any
		wantErr        string
	}{
		{"security package without a base URL", "", "", map[string]any{"arch": "amd64"}, "libfoo1 1:2.3~rc1-1+deb12u1 (amd64) comes from the debian-security archive"},
		{"unknown architecture", "", "", map[string]any{"arch": "riscv64"}, "no packages for riscv64"},
		{"bad hash", `"sha256": "d6d4`, `"sha256": "D6D4`, map[string]any{"arch": "amd64", "securityMirrors": []string{"https://mirror.test/debian-security"}}, "is not 64 lowercase hex digits"},
		{"not a pool path", `"pool/main/h/hello/hello_2.10-3_arm64.deb"`, `"../hello.deb"`, map[string]any{"arch": "arm64"}, "is not a pool path"},
		{"unlisted suite", `"suite": "bookworm",
      "filename": "pool/main/h/hello/hello_2.10-3_arm64.deb"`, `"suite": "sid",
      "filename": "pool/main/h/hello/hello_2.10-3_arm64.deb"`, map[string]any{"arch": "arm64", "snapshotBase": "https://snapshot.test"}, "suite debian/sid is not listed"},
		{"unknown archive", `"archive": "debian",
      "suite": "bookworm",
      "filename": "pool/main/h/hello/hello_2.10-3_arm64.deb"`, `"archive": "ubuntu",
      "suite": "bookworm",
      "filename": "pool/main/h/hello/hello_2.10-3_arm64.deb"`, map[string]any{"arch": "arm64"}, `unknown archive "ubuntu"`},
		{"date with an offset", `"2024-02-10T10:41:37Z"`, `"2024-02-10T10:41:37+01:00"`, map[string]any{"arch": "arm64"}, "is not YYYY-MM-DDTHH:MM:SSZ"},
		{"newer lock format", `"version": 1,`, `"version": 2,`, map[string]any{"arch": "arm64"}, "lock version 2"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			lock := string(good)
			if c.old != "" {
				if !strings.Contains(lock, c.old) {
					t.Fatalf("testdata/lock.json does not contain %q", c.old)
				}
				lock = strings.Replace(lock, c.old, c.new, 1)
			}
			f := filepath.Join(t.TempDir(), "lock.json")
			if err := os.WriteFile(f, []byte(lock), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := evalDebs(t, f, c.config)
			if err == nil {
				t.Fatalf("evaluation succeeded with %+v, want an error containing %q", got, c.wantErr)
			}
			if !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("error %v\nwant it to contain %q", err, c.wantErr)
			}
		})
	}
}

func TestFlakeLockPinsNixpkgs(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "flake.lock"))
	if err != nil {
		t.Fatal(err)
	}
	var lock struct {
		Version int    `json:"version"`
		Root    string `json:"root"`
		Nodes   map[string]struct {
			Inputs map[string]string `json:"inputs"`
			Locked struct {
				Type, Owner, Repo, Rev, NarHash string
				LastModified                    int64 `json:"lastModified"`
			} `json:"locked"`
			Original struct {
				Type, Owner, Repo, Ref string
			} `json:"original"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal(b, &lock); err != nil {
		t.Fatalf("flake.lock: %v", err)
	}
	if lock.Version != 7 {
		t.Errorf("flake.lock version %d, want 7", lock.Version)
	}
	input := lock.Nodes[lock.Root].Inputs["nixpkgs"]
	n, ok := lock.Nodes[input]
	if !ok {
		t.Fatalf("flake.lock: root input nixpkgs points at %q, which is not a node", input)
	}
	// The published nixos-25.11 entry (CONTRACTS.md section 5): Go 1.25.
	if n.Locked.Rev != "8fd9daa3db09ced9700431c5b7ad0e8ba199b575" ||
		n.Locked.NarHash != "sha256-Ti+ZBvW6yrWWAg2szExVTwCd4qOJ3KlVr1tFHfyfi8Q=" ||
		n.Locked.LastModified != 1778430510 ||
		n.Locked.Type != "github" || n.Locked.Owner != "NixOS" || n.Locked.Repo != "nixpkgs" {
		t.Errorf("flake.lock pins %+v, want NixOS/nixpkgs 8fd9daa3 with its narHash", n.Locked)
	}
	if n.Original.Ref != "nixos-25.11" {
		t.Errorf("flake.lock original ref %q, want nixos-25.11", n.Original.Ref)
	}
}

// The vendorHash must follow go.mod and go.sum, or `nix build` fails with a
// hash mismatch long after the dependency bump that caused it.
func TestFlakeVendorHash(t *testing.T) {
	if testing.Short() {
		t.Skip("go mod vendor needs the module cache or proxy; skipped with -short")
	}
	nixBin := testenv.Tool(t, "nix")
	goBin := testenv.Tool(t, "go")
	root := repoRoot(t)
	flakePath := filepath.Join(root, "flake.nix")
	flake, err := os.ReadFile(flakePath)
	if err != nil {
		t.Fatal(err)
	}
	have, err := VendorHash(flake)
	if err != nil {
		t.Fatal(err)
	}

	// Vendor from a copy: go mod vendor must not touch the working tree.
	mod := t.TempDir()
	copyTree(t, root, mod, func(rel string) bool {
		return rel == "go.mod" || rel == "go.sum" || strings.HasSuffix(rel, ".go")
	})
	vendor := filepath.Join(t.TempDir(), "vendor")
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	if _, err := run(ctx, mod, []string{"GOTOOLCHAIN=local", "GOFLAGS=-mod=readonly"}, goBin, "mod", "vendor", "-o", vendor); err != nil {
		t.Fatal(err)
	}
	out, err := run(ctx, mod, nil, nixBin, "--extra-experimental-features", "nix-command", "hash", "path", vendor)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.TrimSpace(string(out))
	if have == want {
		return
	}
	if !*update {
		t.Fatalf("flake.nix vendorHash = %s, go mod vendor hashes to %s; run: go test ./internal/frontends -run VendorHash -update", have, want)
	}
	b, err := SetVendorHash(flake, want)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(flakePath, b); err != nil {
		t.Fatal(err)
	}
	t.Logf("flake.nix: vendorHash %s -> %s", have, want)
}

func containsAll(list []string, want ...string) bool {
	for _, w := range want {
		found := false
		for _, l := range list {
			found = found || l == w
		}
		if !found {
			return false
		}
	}
	return true
}
