package debian

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/pulse-sidecar/pulse-sidecar/internal/atomicfile"
	"github.com/pulse-sidecar/pulse-sidecar/internal/spec"
)

// LockVersion is bumped whenever the lock's meaning changes, so an old imagectl
// refuses a lock it would misread instead of building something else.
const LockVersion = 1

// Lock pins the whole package closure. It is the only input that names
// package versions; everything downstream (imagectl build, the Nix and Bazel
// front ends) reads it and nothing else.
type Lock struct {
	Version       int      `json:"version"`
	Distribution  string   `json:"distribution"` // "debian-12"
	Architectures []string `json:"architectures"`
	// Requested lists the package names the closure was computed from, so a
	// reader can tell roots from dependencies.
	Requested []string `json:"requested"`
	// SpecSHA256 is InputsDigest of the spec the lock was made from
	// (packages, exclude, suites): build refuses a lock whose spec has
	// changed since. Empty in locks made before it was recorded.
	SpecSHA256 string          `json:"spec_sha256,omitempty"`
	Suites     []LockSuite     `json:"suites"`
	Packages   []LockedPackage `json:"packages"`
}

// LockSuite records which signed Release a part of the closure came from.
type LockSuite struct {
	Archive string `json:"archive"` // "debian" or "debian-security": the archive's path on a mirror
	Suite   string `json:"suite"`   // "bookworm", "bookworm-updates", "bookworm-security"
	// Date is the Release file's Date field (RFC 3339, UTC).
	Date string `json:"date"`
	// Snapshot is the Debian snapshot archive timestamp (YYYYMMDDTHHMMSSZ) at which
	// the locked versions are known to be in the archive; the fallback URL is
	// <snapshot base>/archive/<Archive>/<Snapshot>/<Filename>.
	Snapshot string `json:"snapshot"`
	// InReleaseSHA256 is the digest of the signed InRelease the suite's
	// packages were resolved from, and Indexes the Packages index of each
	// architecture that Release vouched for: together they say exactly
	// which archive state the lock describes. The next `imagectl lock`
	// refuses a Release dated before Date (a replayed, older one).
	InReleaseSHA256 string      `json:"inrelease_sha256,omitempty"`
	Indexes         []LockIndex `json:"indexes,omitempty"`
}

// LockIndex is the Packages index of one architecture of a suite.
type LockIndex struct {
	Architecture string `json:"architecture"`
	Path         string `json:"path"` // relative to dists/<suite>/, "main/binary-amd64/Packages.xz"
	SHA256       string `json:"sha256"`
	Size         int64  `json:"size"`
}

// LockedPackage is one .deb, pinned by content.
type LockedPackage struct {
	Name         string `json:"name"`
	Version      string `json:"version"`
	Architecture string `json:"architecture"` // "amd64", "arm64" or "all"
	// ForArch is the image architecture this entry belongs to (an "all" package
	// appears once per image architecture that needs it).
	ForArch       string `json:"for_arch"`
	Archive       string `json:"archive"`
	Suite         string `json:"suite"`
	Filename      string `json:"filename"` // pool path, "pool/main/..."
	Size          int64  `json:"size"`
	SHA256        string `json:"sha256"`
	Source        string `json:"source,omitempty"`
	SourceVersion string `json:"source_version,omitempty"`
}

// Sort puts packages into the canonical order, so a lock update is a readable diff.
func (l *Lock) Sort() {
	sort.Strings(l.Architectures)
	sort.Strings(l.Requested)
	sort.Slice(l.Suites, func(i, j int) bool {
		a, b := l.Suites[i], l.Suites[j]
		if a.Archive != b.Archive {
			return a.Archive < b.Archive
		}
		return a.Suite < b.Suite
	})
	for _, s := range l.Suites {
		sort.Slice(s.Indexes, func(i, j int) bool { return s.Indexes[i].Architecture < s.Indexes[j].Architecture })
	}
	sort.Slice(l.Packages, func(i, j int) bool {
		a, b := l.Packages[i], l.Packages[j]
		if a.ForArch != b.ForArch {
			return a.ForArch < b.ForArch
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.Architecture < b.Architecture
	})
}

// PackagesFor returns the entries of one image architecture, in lock order.
func (l *Lock) PackagesFor(arch string) []LockedPackage {
	var out []LockedPackage
	for _, p := range l.Packages {
		if p.ForArch == arch {
			out = append(out, p)
		}
	}
	return out
}

// Suite returns the suite record a package came from.
func (l *Lock) Suite(archive, suite string) (LockSuite, bool) {
	for _, s := range l.Suites {
		if s.Archive == archive && s.Suite == suite {
			return s, true
		}
	}
	return LockSuite{}, false
}

// Validate checks what a reader relies on, naming the entry at fault.
func (l *Lock) Validate() error {
	if l.Version != LockVersion {
		return fmt.Errorf("lock version %d, this imagectl reads version %d", l.Version, LockVersion)
	}
	if len(l.Architectures) == 0 {
		return fmt.Errorf("lock names no architectures")
	}
	if l.SpecSHA256 != "" && !validSHA256(l.SpecSHA256) {
		return fmt.Errorf("lock spec_sha256 %q is not 64 hex digits", l.SpecSHA256)
	}
	for _, s := range l.Suites {
		id := s.Archive + "/" + s.Suite
		if _, err := time.Parse(time.RFC3339, s.Date); s.Date != "" && err != nil {
			return fmt.Errorf("lock suite %s: date: %w", id, err)
		}
		if s.InReleaseSHA256 != "" && !validSHA256(s.InReleaseSHA256) {
			return fmt.Errorf("lock suite %s: inrelease_sha256 %q is not 64 hex digits", id, s.InReleaseSHA256)
		}
		for _, ix := range s.Indexes {
			if !validSHA256(ix.SHA256) || ix.Architecture == "" || ix.Path == "" || ix.Size < 0 {
				return fmt.Errorf("lock suite %s: index %+v: architecture, path, size and a 64-hex-digit sha256 are required", id, ix)
			}
		}
	}
	seen := map[string]bool{}
	for i, p := range l.Packages {
		id := fmt.Sprintf("package %d (%s %s %s)", i, p.Name, p.Version, p.ForArch)
		switch {
		case p.Name == "" || p.Version == "" || p.Architecture == "" || p.ForArch == "":
			return fmt.Errorf("lock %s: name, version, architecture and for_arch are required", id)
		case !validSHA256(p.SHA256):
			return fmt.Errorf("lock %s: sha256 %q is not 64 hex digits", id, p.SHA256)
		case p.Size <= 0:
			return fmt.Errorf("lock %s: size %d", id, p.Size)
		case !validPoolPath(p.Filename):
			return fmt.Errorf("lock %s: filename %q is not a pool path", id, p.Filename)
		}
		if _, ok := l.Suite(p.Archive, p.Suite); !ok {
			return fmt.Errorf("lock %s: suite %s/%s is not listed in suites", id, p.Archive, p.Suite)
		}
		key := p.ForArch + "/" + p.Name
		if seen[key] {
			return fmt.Errorf("lock %s: listed twice for %s", id, p.ForArch)
		}
		seen[key] = true
	}
	return nil
}

// CheckSpec refuses a lock made from other inputs than s: other packages,
// excludes or suites (compared through SpecSHA256). Building from such a
// lock would silently ship a closure nobody asked for. Architectures are
// checked where one is built: a lock may cover fewer than the spec lists
// (`imagectl lock --arch`), and building one it lacks fails naming it.
func (l *Lock) CheckSpec(s *spec.Spec) error {
	refs := make([]SuiteRef, 0, len(s.Suites))
	for _, su := range s.Suites {
		refs = append(refs, SuiteRef{Archive: su.Archive, Suite: su.Suite})
	}
	switch want := InputsDigest(s.Packages, s.Exclude, refs); {
	case l.SpecSHA256 == "":
		return fmt.Errorf("the lock records no spec checksum (made by an older imagectl); run `imagectl lock` to re-lock it for this spec")
	case l.SpecSHA256 != want:
		return fmt.Errorf("the lock was made for another spec (its packages, exclude or suites have changed since: spec checksum %s, the lock's %s); run `imagectl lock` to re-lock", want, l.SpecSHA256)
	}
	return nil
}

// validSHA256 accepts exactly 64 lowercase hex digits. Digests name files
// in caches and --debs directories, so anything else (say a 64-character
// "../../..") must never reach a path join.
func validSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func validPoolPath(p string) bool {
	if len(p) < len("pool/") || p[:5] != "pool/" {
		return false
	}
	clean := filepath.Clean(p)
	return clean == p && !bytes.Contains([]byte(p), []byte(".."))
}

// Marshal renders the lock canonically: sorted, two-space indented, trailing newline.
func (l *Lock) Marshal() ([]byte, error) {
	c := *l
	c.Packages = append([]LockedPackage(nil), l.Packages...)
	c.Suites = append([]LockSuite(nil), l.Suites...)
	for i := range c.Suites {
		c.Suites[i].Indexes = append([]LockIndex(nil), c.Suites[i].Indexes...)
	}
	c.Sort()
	b, err := json.MarshalIndent(&c, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// ReadLock reads and validates a lock file.
func ReadLock(path string) (*Lock, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var l Lock
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := l.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &l, nil
}

// WriteLock writes the lock through a temp file and a rename, so a crash never
// leaves a half-written lock behind.
func WriteLock(path string, l *Lock) error {
	if err := l.Validate(); err != nil {
		return err
	}
	b, err := l.Marshal()
	if err != nil {
		return err
	}
	return atomicfile.WriteBytes(path, b, 0o644)
}
