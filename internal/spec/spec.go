// Package spec reads the declarative image description (image/spec.json).
//
// The spec is JSON rather than a Go literal so that the Nix and Bazel front
// ends can read the same facts (package names, daemon path) natively; all image
// logic still lives in Go. Decoding is strict: an unknown or misspelt field is
// an error naming it, because a silently ignored field in an image spec is a
// security setting that never took effect.
package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Spec is the whole image description.
type Spec struct {
	Name          string   `json:"name"`
	Suites        []Suite  `json:"suites"`
	Architectures []string `json:"architectures"`
	// Packages are the roots of the Debian closure.
	Packages []string `json:"packages"`
	// Exclude names packages left out of the closure: those that exist only
	// for maintainer scripts, and heavy libraries never on the audio path.
	Exclude      []string      `json:"exclude"`
	Paths        PathRules     `json:"paths"`
	Users        []User        `json:"users"`
	Groups       []Group       `json:"groups"`
	Directories  []Directory   `json:"directories"`
	Files        []File        `json:"files"`
	Alternatives []Alternative `json:"alternatives"`
	Daemon       Daemon        `json:"daemon"`
	Config       Config        `json:"config"`
	// Annotations are the static org.opencontainers.image.* values; the
	// build adds version, revision and created, which depend on the build.
	Annotations map[string]string `json:"annotations"`

	// dir is the directory of the spec file: File.Source is relative to it.
	dir string
}

// Suite is one Debian suite the closure may draw from.
type Suite struct {
	Archive string `json:"archive"` // path of the archive on a mirror: "debian", "debian-security"
	Suite   string `json:"suite"`
}

// PathRules decide which package paths reach the image (rootfs.PathFilter
// applies them). Patterns are absolute, "*" matches within one path element,
// and a trailing "/**" matches a directory and everything below it. Keep
// wins over Drop so that licences survive the documentation purge.
type PathRules struct {
	Drop []string `json:"drop"`
	Keep []string `json:"keep"`
	// Only restricts the named packages to the paths these patterns match
	// (and the directories leading to them), on top of Drop and Keep: the
	// image takes the OS identity files from base-files, not its skeleton
	// of a whole system.
	Only map[string][]string `json:"only,omitempty"`
}

// User is one /etc/passwd entry.
type User struct {
	Name  string `json:"name"`
	UID   int    `json:"uid"`
	GID   int    `json:"gid"`
	Home  string `json:"home"`
	Shell string `json:"shell"`
	Gecos string `json:"gecos,omitempty"`
}

// Group is one /etc/group entry.
type Group struct {
	Name    string   `json:"name"`
	GID     int      `json:"gid"`
	Members []string `json:"members,omitempty"`
}

// Directory is created (or re-owned) in the configuration layer.
type Directory struct {
	Path string `json:"path"`
	UID  int    `json:"uid"`
	GID  int    `json:"gid"`
	Mode Mode   `json:"mode"`
}

// File is copied from the repository into the image.
type File struct {
	Path   string `json:"path"`
	Source string `json:"source"` // relative to the spec file
	UID    int    `json:"uid"`
	GID    int    `json:"gid"`
	Mode   Mode   `json:"mode"`
}

// Alternative re-creates what update-alternatives would have done:
// Link -> /etc/alternatives/Name -> Target. "${multiarch}" in any field is
// replaced by the target architecture's triplet.
type Alternative struct {
	Name   string `json:"name"`
	Link   string `json:"link"`
	Target string `json:"target"`
}

// Daemon says where the pulse-sidecar binary comes from and goes.
type Daemon struct {
	Package    string `json:"package"`     // Go package path relative to the module root, "./cmd/pulse-sidecar"
	Path       string `json:"path"`        // where it is installed in the image
	VersionVar string `json:"version_var"` // -X target for the version, "main.version"
}

// Config is the OCI image config the spec controls.
type Config struct {
	User         string            `json:"user"`
	Entrypoint   []string          `json:"entrypoint"`
	Cmd          []string          `json:"cmd,omitempty"`
	WorkingDir   string            `json:"working_dir,omitempty"`
	Env          []string          `json:"env"`
	ExposedPorts []string          `json:"exposed_ports"`
	StopSignal   string            `json:"stop_signal"`
	Healthcheck  *Healthcheck      `json:"healthcheck,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
}

// Healthcheck mirrors the Docker healthcheck; durations are Go duration strings.
type Healthcheck struct {
	Test        []string `json:"test"`
	Interval    Duration `json:"interval"`
	Timeout     Duration `json:"timeout"`
	StartPeriod Duration `json:"start_period"`
	Retries     int      `json:"retries"`
}

// Mode is a file mode written as an octal string ("0750", "1777") because a
// JSON number would be read as decimal by every human reviewer.
type Mode uint32

// UnmarshalJSON reads an octal string.
func (m *Mode) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("mode must be an octal string like \"0755\": %w", err)
	}
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil || v > 0o7777 {
		return fmt.Errorf("mode %q is not an octal mode between 0000 and 7777", s)
	}
	*m = Mode(v)
	return nil
}

// MarshalJSON writes the octal string form.
func (m Mode) MarshalJSON() ([]byte, error) {
	return json.Marshal(fmt.Sprintf("%04o", uint32(m)))
}

// Duration is a time.Duration written as "30s".
type Duration time.Duration

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"30s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration string form.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// multiarch maps Debian architectures to their library triplets.
var multiarch = map[string]string{
	"amd64": "x86_64-linux-gnu",
	"arm64": "aarch64-linux-gnu",
}

// Multiarch returns the multiarch triplet of a Debian architecture.
func Multiarch(arch string) (string, error) {
	t, ok := multiarch[arch]
	if !ok {
		return "", fmt.Errorf("architecture %q is not supported (known: amd64, arm64)", arch)
	}
	return t, nil
}

// Expand replaces ${multiarch} in s with the triplet of arch.
func Expand(s, arch string) (string, error) {
	if !strings.Contains(s, "${") {
		return s, nil
	}
	t, err := Multiarch(arch)
	if err != nil {
		return "", err
	}
	out := strings.ReplaceAll(s, "${multiarch}", t)
	if strings.Contains(out, "${") {
		return "", fmt.Errorf("%q: unknown placeholder (only ${multiarch} is defined)", s)
	}
	return out, nil
}

// Load reads, strictly decodes and validates a spec file.
func Load(file string) (*Spec, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	s, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	abs, err := filepath.Abs(filepath.Dir(file))
	if err != nil {
		return nil, err
	}
	s.dir = abs
	return s, nil
}

// Parse decodes and validates spec bytes. File sources are resolved against
// the working directory unless the spec came from Load.
func Parse(b []byte) (*Spec, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var s Spec
	if err := dec.Decode(&s); err != nil {
		return nil, describeJSONError(b, err)
	}
	if err := dec.Decode(new(json.RawMessage)); !errors.Is(err, io.EOF) {
		return nil, errors.New("trailing data after the spec object")
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// describeJSONError turns decoder errors into ones that name the field and line.
func describeJSONError(b []byte, err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Errorf("line %d: %w", lineOf(b, syn.Offset), err)
	case errors.As(err, &typ):
		return fmt.Errorf("line %d: field %q: %s is not a valid %s", lineOf(b, typ.Offset), typ.Field, typ.Value, typ.Type)
	}
	// DisallowUnknownFields errors read `json: unknown field "x"`: already named.
	return err
}

func lineOf(b []byte, off int64) int {
	if off > int64(len(b)) {
		off = int64(len(b))
	}
	return 1 + bytes.Count(b[:off], []byte("\n"))
}

// Source returns the absolute path of a File's source.
func (s *Spec) Source(f File) string {
	if filepath.IsAbs(f.Source) {
		return f.Source
	}
	return filepath.Join(s.dir, filepath.FromSlash(f.Source))
}

// Validate checks the spec, naming the field at fault.
func (s *Spec) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if s.Name == "" {
		bad("name", "required")
	}
	if len(s.Suites) == 0 {
		bad("suites", "at least one suite is required")
	}
	for i, su := range s.Suites {
		if !isWord(su.Archive) || !isWord(su.Suite) {
			bad(fmt.Sprintf("suites[%d]", i), "archive %q and suite %q must be simple names", su.Archive, su.Suite)
		}
	}
	if len(s.Architectures) == 0 {
		bad("architectures", "at least one architecture is required")
	}
	for i, a := range s.Architectures {
		if _, err := Multiarch(a); err != nil {
			bad(fmt.Sprintf("architectures[%d]", i), "%v", err)
		}
	}
	if len(s.Packages) == 0 {
		bad("packages", "at least one package is required")
	}
	checkNames := func(field string, names []string) {
		seen := map[string]bool{}
		for i, n := range names {
			if !isPackageName(n) {
				bad(fmt.Sprintf("%s[%d]", field, i), "%q is not a Debian package name", n)
			}
			if seen[n] {
				bad(fmt.Sprintf("%s[%d]", field, i), "%q listed twice", n)
			}
			seen[n] = true
		}
	}
	checkNames("packages", s.Packages)
	checkNames("exclude", s.Exclude)
	for i, n := range s.Exclude {
		for _, p := range s.Packages {
			if n == p {
				bad(fmt.Sprintf("exclude[%d]", i), "%q is also a root package", n)
			}
		}
	}
	for i, p := range s.Paths.Drop {
		if err := checkPattern(p); err != nil {
			bad(fmt.Sprintf("paths.drop[%d]", i), "%v", err)
		}
	}
	for i, p := range s.Paths.Keep {
		if err := checkPattern(p); err != nil {
			bad(fmt.Sprintf("paths.keep[%d]", i), "%v", err)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(s.Paths.Only)) {
		ps := s.Paths.Only[name]
		if !isPackageName(name) {
			bad("paths.only", "%q is not a Debian package name", name)
		}
		if len(ps) == 0 {
			bad("paths.only."+name, "no patterns: the package would contribute nothing")
		}
		for i, p := range ps {
			if err := checkPattern(p); err != nil {
				bad(fmt.Sprintf("paths.only.%s[%d]", name, i), "%v", err)
			}
		}
	}

	groups := map[int]bool{}
	groupNames := map[string]bool{}
	for i, g := range s.Groups {
		f := fmt.Sprintf("groups[%d]", i)
		if !isAccountName(g.Name) {
			bad(f+".name", "%q is not a valid group name", g.Name)
		}
		if g.GID < 0 || g.GID > 65535 {
			bad(f+".gid", "%d out of range 0-65535", g.GID)
		}
		if groups[g.GID] || groupNames[g.Name] {
			bad(f, "group %q (%d) defined twice", g.Name, g.GID)
		}
		groups[g.GID], groupNames[g.Name] = true, true
	}
	users := map[string]bool{}
	uids := map[int]bool{}
	for i, u := range s.Users {
		f := fmt.Sprintf("users[%d]", i)
		if !isAccountName(u.Name) {
			bad(f+".name", "%q is not a valid user name", u.Name)
		}
		if u.UID < 0 || u.UID > 65535 {
			bad(f+".uid", "%d out of range 0-65535", u.UID)
		}
		if !groups[u.GID] {
			bad(f+".gid", "%d is not a group defined in groups", u.GID)
		}
		if !isAbsClean(u.Home) {
			bad(f+".home", "%q must be an absolute, clean path", u.Home)
		}
		if !isAbsClean(u.Shell) {
			bad(f+".shell", "%q must be an absolute, clean path", u.Shell)
		}
		if strings.ContainsAny(u.Gecos, ":\n") {
			bad(f+".gecos", "must not contain ':' or a newline")
		}
		if users[u.Name] || uids[u.UID] {
			bad(f, "user %q (%d) defined twice", u.Name, u.UID)
		}
		users[u.Name], uids[u.UID] = true, true
	}
	for i, g := range s.Groups {
		for j, m := range g.Members {
			if !users[m] {
				bad(fmt.Sprintf("groups[%d].members[%d]", i, j), "%q is not a user defined in users", m)
			}
		}
	}

	paths := map[string]string{}
	claim := func(field, p string) {
		if prev, ok := paths[p]; ok {
			bad(field, "path %q is also set by %s", p, prev)
		}
		paths[p] = field
	}
	for i, d := range s.Directories {
		f := fmt.Sprintf("directories[%d]", i)
		if !isAbsClean(d.Path) || d.Path == "/" {
			bad(f+".path", "%q must be an absolute, clean path other than /", d.Path)
		}
		checkOwnerMode(bad, f, d.Path, d.UID, d.GID, d.Mode, uids, groups)
		claim(f+".path", d.Path)
	}
	for i, fl := range s.Files {
		f := fmt.Sprintf("files[%d]", i)
		if !isAbsClean(fl.Path) || fl.Path == "/" {
			bad(f+".path", "%q must be an absolute, clean path", fl.Path)
		}
		if fl.Source == "" || strings.Contains(filepath.ToSlash(fl.Source), "..") {
			bad(f+".source", "%q must be a path below the spec's directory", fl.Source)
		}
		checkOwnerMode(bad, f, fl.Path, fl.UID, fl.GID, fl.Mode, uids, groups)
		if fl.Mode&0o6000 != 0 {
			bad(f+".mode", "%04o: setuid/setgid files are not allowed", uint32(fl.Mode))
		}
		claim(f+".path", fl.Path)
	}
	for i, a := range s.Alternatives {
		f := fmt.Sprintf("alternatives[%d]", i)
		for _, arch := range s.Architectures {
			name, err1 := Expand(a.Name, arch)
			link, err2 := Expand(a.Link, arch)
			target, err3 := Expand(a.Target, arch)
			if err := errors.Join(err1, err2, err3); err != nil {
				bad(f, "%v", err)
				continue
			}
			if name == "" || strings.Contains(name, "/") {
				bad(f+".name", "%q must be a single path element", name)
			}
			if !isAbsClean(link) || !isAbsClean(target) {
				bad(f, "link %q and target %q must be absolute, clean paths", link, target)
			}
		}
		claim(f+".link", a.Link)
	}

	if s.Daemon.Package == "" || !strings.HasPrefix(s.Daemon.Package, "./") {
		bad("daemon.package", "%q must be a package path relative to the module root, like ./cmd/pulse-sidecar", s.Daemon.Package)
	}
	if !isAbsClean(s.Daemon.Path) {
		bad("daemon.path", "%q must be an absolute, clean path", s.Daemon.Path)
	}
	if s.Daemon.VersionVar != "" && !strings.Contains(s.Daemon.VersionVar, ".") {
		bad("daemon.version_var", "%q must be package.variable, like main.version", s.Daemon.VersionVar)
	}
	s.validateConfig(bad)
	for k := range s.Annotations {
		if k == "" {
			bad("annotations", "empty key")
		}
	}
	return errors.Join(errs...)
}

func (s *Spec) validateConfig(bad func(field, format string, args ...any)) {
	c := s.Config
	uid, gid, ok := strings.Cut(c.User, ":")
	if _, err := strconv.Atoi(uid); err != nil || !ok {
		bad("config.user", "%q must be numeric uid:gid so Kubernetes can verify runAsNonRoot", c.User)
	} else if _, err := strconv.Atoi(gid); err != nil {
		bad("config.user", "%q must be numeric uid:gid", c.User)
	}
	if len(c.Entrypoint) == 0 {
		bad("config.entrypoint", "required")
	}
	for i, e := range c.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			bad(fmt.Sprintf("config.env[%d]", i), "%q is not KEY=value", e)
		}
	}
	for i, p := range c.ExposedPorts {
		num, proto, ok := strings.Cut(p, "/")
		n, err := strconv.Atoi(num)
		if !ok || err != nil || n < 1 || n > 65535 || (proto != "tcp" && proto != "udp") {
			bad(fmt.Sprintf("config.exposed_ports[%d]", i), "%q is not PORT/tcp or PORT/udp", p)
		}
	}
	if c.StopSignal != "" && !strings.HasPrefix(c.StopSignal, "SIG") {
		bad("config.stop_signal", "%q must be a signal name like SIGTERM", c.StopSignal)
	}
	if h := c.Healthcheck; h != nil {
		if len(h.Test) < 2 || (h.Test[0] != "CMD" && h.Test[0] != "CMD-SHELL" && h.Test[0] != "NONE") {
			bad("config.healthcheck.test", "%q must start with CMD, CMD-SHELL or NONE", h.Test)
		}
		if h.Interval <= 0 || h.Timeout <= 0 || h.Retries <= 0 || h.StartPeriod < 0 {
			bad("config.healthcheck", "interval, timeout and retries must be positive")
		}
	}
}

func checkOwnerMode(bad func(field, format string, args ...any), field, p string, uid, gid int, mode Mode, uids, gids map[int]bool) {
	if !uids[uid] {
		bad(field+".uid", "%d is not a user defined in users", uid)
	}
	if !gids[gid] {
		bad(field+".gid", "%d is not a group defined in groups", gid)
	}
	// Only /tmp may be writable by others, and only with the sticky bit: the
	// original image's 0777 directories are the defect this guards against.
	if mode&0o002 != 0 && !(p == "/tmp" && mode&0o1000 != 0) {
		bad(field+".mode", "%04o: writable by others (only /tmp, with the sticky bit, may be)", uint32(mode))
	}
}

func checkPattern(p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("%q must be absolute", p)
	}
	trimmed := strings.TrimSuffix(p, "/**")
	if strings.Contains(trimmed, "**") {
		return fmt.Errorf("%q: ** is only allowed as a final /** element", p)
	}
	if _, err := path.Match(trimmed, trimmed); err != nil {
		return fmt.Errorf("%q: %v", p, err)
	}
	return nil
}

func isAbsClean(p string) bool {
	return strings.HasPrefix(p, "/") && path.Clean(p) == p
}

func isWord(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// isPackageName follows Debian policy 5.6.1: lower case, digits, + - .,
// at least two characters, starting alphanumerically.
func isPackageName(s string) bool {
	if len(s) < 2 || !(s[0] >= 'a' && s[0] <= 'z' || s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func isAccountName(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
