package policy

import (
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/pulse-sidecar/pulse-sidecar/internal/debian"
	"github.com/pulse-sidecar/pulse-sidecar/internal/imgdiff"
)

const (
	dpkgStatusDir  = "/var/lib/dpkg/status.d/"
	dpkgStatusFile = "/var/lib/dpkg/status"
)

// isDpkgStatus selects the files that describe installed packages: the
// distroless status.d entries and a classic status database.
func isDpkgStatus(p string) bool {
	if p == dpkgStatusFile {
		return true
	}
	return strings.HasPrefix(p, dpkgStatusDir) && !strings.HasSuffix(p, ".md5sums")
}

// installed is one package paragraph of a dpkg status entry.
type installed struct {
	where                       string
	name, version, arch, sha256 string
}

// checkDpkgLock: the packages an image says it holds must be the ones the
// lock pinned. Status entries carry no .deb digest of their own, so a build
// that knows it records it in a SHA256 field, which is compared when present.
func checkDpkgLock(s *subject, o *Options) []Violation {
	if o.Lock == nil {
		return nil
	}
	pkgs, bad := installedPackages(s.scan.Content)
	if len(pkgs) == 0 && len(bad) == 0 {
		return []Violation{{Path: dpkgStatusDir, Message: "image has no dpkg status entries to match against the lock"}}
	}
	locked := o.Lock.PackagesFor(s.config.Architecture)
	if len(locked) == 0 {
		locked = o.Lock.Packages
	}
	byName := map[string][]debian.LockedPackage{}
	for _, p := range locked {
		byName[p.Name] = append(byName[p.Name], p)
	}
	out := bad
	for _, p := range pkgs {
		if v := matchLock(p, byName[p.name]); v != "" {
			out = append(out, Violation{Path: p.where, Message: v})
		}
	}
	return out
}

func matchLock(p installed, candidates []debian.LockedPackage) string {
	if len(candidates) == 0 {
		return fmt.Sprintf("package %s %s is not in the lock", p.name, p.version)
	}
	var seen []string
	for _, c := range candidates {
		if c.Version != p.version || (p.arch != "" && c.Architecture != p.arch) {
			seen = append(seen, c.Version+" "+c.Architecture)
			continue
		}
		if p.sha256 != "" && !strings.EqualFold(p.sha256, c.SHA256) {
			return fmt.Sprintf("package %s %s has sha256 %s, the lock pins %s", p.name, p.version, p.sha256, c.SHA256)
		}
		return ""
	}
	return fmt.Sprintf("package %s %s %s does not match the lock (%s)", p.name, p.version, p.arch, strings.Join(seen, ", "))
}

// installedPackages parses every kept status file; unparseable ones become
// violations, as a scanner would misread them too.
func installedPackages(content map[string][]byte) ([]installed, []Violation) {
	paths := make([]string, 0, len(content))
	for p := range content {
		if isDpkgStatus(p) {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	var pkgs []installed
	var bad []Violation
	for _, p := range paths {
		err := debian.ParseParagraphs(p, string(content[p]), func(para debian.Paragraph) error {
			in := installed{
				where:   p,
				name:    para.Value("Package"),
				version: para.Value("Version"),
				arch:    para.Value("Architecture"),
				sha256:  para.Value("SHA256"),
			}
			if in.name == "" || in.version == "" {
				return fmt.Errorf("paragraph without Package or Version")
			}
			pkgs = append(pkgs, in)
			return nil
		})
		if err != nil {
			bad = append(bad, Violation{Path: p, Message: fmt.Sprintf("unreadable dpkg status entry: %v", err)})
		}
	}
	return pkgs, bad
}

// The os-release(5) files: /etc/os-release, usually a relative symlink to
// /usr/lib/os-release.
const (
	etcOSRelease = "/etc/os-release"
	libOSRelease = "/usr/lib/os-release"
)

// keptContent selects the files whose bytes the rules read.
func keptContent(p string) bool {
	return isDpkgStatus(p) || p == etcOSRelease || p == libOSRelease
}

// checkOSRelease: an image with dpkg packages must say which distribution
// release they come from, in /etc/os-release. Scanners (trivy, syft, grype)
// match advisories by the distribution it names; without it they report
// "OS is not detected" and match none, however complete status.d is. With
// a lock, ID and VERSION_ID must be the lock's distribution ("debian-12").
func checkOSRelease(s *subject, o *Options) []Violation {
	pkgs, _ := installedPackages(s.scan.Content)
	if len(pkgs) == 0 {
		return nil
	}
	file, err := resolveOSRelease(s.scan.Files)
	if err != nil {
		return []Violation{{Path: etcOSRelease, Message: err.Error() + ": scanners cannot tell the distribution, so no advisory matches"}}
	}
	b, ok := s.scan.Content[file]
	if !ok {
		return []Violation{{Path: file, Message: "not a regular file small enough to read"}}
	}
	fields := parseOSRelease(string(b))
	if fields["ID"] == "" || fields["VERSION_ID"] == "" {
		return []Violation{{Path: file, Message: "names no ID and VERSION_ID"}}
	}
	if o.Lock != nil && o.Lock.Distribution != "" {
		if got := fields["ID"] + "-" + fields["VERSION_ID"]; got != o.Lock.Distribution {
			return []Violation{{Path: file, Message: fmt.Sprintf("says %s, the lock's packages are from %s", got, o.Lock.Distribution)}}
		}
	}
	return nil
}

// resolveOSRelease follows /etc/os-release to the file it names, allowing
// one symlink inside the image as os-release(5) describes.
func resolveOSRelease(files []imgdiff.File) (string, error) {
	byPath := map[string]imgdiff.File{}
	for _, f := range files {
		byPath[f.Path] = f
	}
	f, ok := byPath[etcOSRelease]
	if !ok {
		return "", fmt.Errorf("missing")
	}
	if f.Type == "symlink" {
		target := f.Link
		if !path.IsAbs(target) {
			target = path.Join(path.Dir(etcOSRelease), target)
		}
		target = path.Clean(target)
		if f, ok = byPath[target]; !ok {
			return "", fmt.Errorf("a symlink to %s, which is missing", target)
		}
	}
	if f.Type != "file" {
		return "", fmt.Errorf("%s is a %s, not a file", f.Path, f.Type)
	}
	return f.Path, nil
}

// parseOSRelease reads os-release(5) assignments, unquoting values.
func parseOSRelease(s string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok || strings.HasPrefix(k, "#") {
			continue
		}
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		out[k] = v
	}
	return out
}
