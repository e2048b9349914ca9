// Package frontends holds what CI checks about the Nix and Bazel front ends
// (flake.nix, image/debs.nix, MODULE.bazel, the BUILD files), which cannot
// build here. Its tests run the real checkers (nix-instantiate, nix hash,
// Gazelle, buildifier); this file states, in Go, what their output must be.
package frontends

import (
	"bytes"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/pulse-sidecar/pulse-sidecar/internal/debian"
)

// Mirrors are the base URLs a front end is configured with. The repository
// names no hosts, so every one of them comes from the user.
type Mirrors struct {
	Debian   []string // the "debian" archive
	Security []string // the "debian-security" archive
	Snapshot string   // base of a snapshot archive service; "" for none
}

// Download is one pinned fetch of a locked package.
type Download struct {
	Name     string
	Version  string
	FileName string // pool file name, the name imagectl --debs looks for
	SHA256   string // hex, as in the lock
	URLs     []string
}

// Downloads is the mapping both front ends implement: every package the lock
// lists for arch, fetched from each mirror of its archive in order, then from
// the snapshot archive at the lock's timestamp for its suite.
func Downloads(l *debian.Lock, arch string, m Mirrors) ([]Download, error) {
	var out []Download
	for _, p := range l.PackagesFor(arch) {
		var bases []string
		switch p.Archive {
		case "debian":
			bases = m.Debian
		case "debian-security":
			bases = m.Security
		default:
			return nil, fmt.Errorf("lock package %s %s: unknown archive %q", p.Name, p.Version, p.Archive)
		}
		var urls []string
		for _, b := range bases {
			urls = append(urls, strings.TrimRight(b, "/")+"/"+p.Filename)
		}
		s, ok := l.Suite(p.Archive, p.Suite)
		if !ok {
			return nil, fmt.Errorf("lock package %s %s: suite %s/%s is not listed", p.Name, p.Version, p.Archive, p.Suite)
		}
		if m.Snapshot != "" && s.Snapshot != "" {
			urls = append(urls, fmt.Sprintf("%s/archive/%s/%s/%s", strings.TrimRight(m.Snapshot, "/"), p.Archive, s.Snapshot, p.Filename))
		}
		if len(urls) == 0 {
			return nil, fmt.Errorf("lock package %s %s: no base URL serves the %s archive", p.Name, p.Version, p.Archive)
		}
		out = append(out, Download{Name: p.Name, Version: p.Version, FileName: path.Base(p.Filename), SHA256: p.SHA256, URLs: urls})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("lock has no packages for %s", arch)
	}
	return out, nil
}

// vendorHashLine matches the one vendorHash assignment in flake.nix.
var vendorHashLine = regexp.MustCompile(`(?m)^(\s*vendorHash\s*=\s*)"([^"]*)";`)

// VendorHash returns the vendorHash flake.nix declares.
func VendorHash(flake []byte) (string, error) {
	m := vendorHashLine.FindAllSubmatch(flake, -1)
	if len(m) != 1 {
		return "", fmt.Errorf("flake.nix: want exactly one `vendorHash = \"...\";` line, found %d", len(m))
	}
	return string(m[0][2]), nil
}

// SetVendorHash returns flake with its vendorHash replaced, everything else
// byte for byte the same.
func SetVendorHash(flake []byte, hash string) ([]byte, error) {
	if _, err := VendorHash(flake); err != nil {
		return nil, err
	}
	if !strings.HasPrefix(hash, "sha256-") {
		return nil, fmt.Errorf("vendorHash %q is not an SRI sha256", hash)
	}
	return vendorHashLine.ReplaceAll(flake, []byte(`${1}"`+hash+`";`)), nil
}

// externalLabel matches the repository of an external label, "@repo//...".
var externalLabel = regexp.MustCompile(`"@([A-Za-z0-9_.\-]+)//`)

// ExternalRepos lists the external repositories a BUILD file refers to.
func ExternalRepos(build []byte) []string {
	seen := map[string]bool{}
	for _, m := range externalLabel.FindAllSubmatch(build, -1) {
		seen[string(m[1])] = true
	}
	return sortedKeys(seen)
}

var lineComment = regexp.MustCompile(`#[^\n]*`)

var useRepoCall = regexp.MustCompile(`(?s)use_repo\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*,(.*?)\)`)

// UseRepos returns the repositories MODULE.bazel imports from the extension
// bound to ext (use_repo(ext, "a", "b", ...)), sorted.
func UseRepos(module []byte, ext string) ([]string, error) {
	var out []string
	found := false
	for _, m := range useRepoCall.FindAllSubmatch(module, -1) {
		if string(m[1]) != ext {
			continue
		}
		found = true
		args := lineComment.ReplaceAll(m[2], nil)
		for _, field := range bytes.Split(args, []byte(",")) {
			name := strings.TrimSpace(string(field))
			if name == "" {
				continue
			}
			unq := strings.Trim(name, `"`)
			if len(unq) != len(name)-2 {
				return nil, fmt.Errorf("MODULE.bazel: use_repo(%s, ...): %s is not a plain string", ext, name)
			}
			out = append(out, unq)
		}
	}
	if !found {
		return nil, fmt.Errorf("MODULE.bazel: no use_repo(%s, ...)", ext)
	}
	sort.Strings(out)
	return out, nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
