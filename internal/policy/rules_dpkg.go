package policy

import (
	"fmt"
	"sort"
	"strings"

	"github.com/pulse-sidecar/pulse-sidecar/internal/debian"
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
