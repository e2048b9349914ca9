// Package policy checks hardening rules over any image: ours, a pulled one,
// a Nix or Bazel result. Each rule is one function over an image read once.
package policy

import (
	"fmt"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/pulse-sidecar/pulse-sidecar/internal/debian"
	"github.com/pulse-sidecar/pulse-sidecar/internal/imgdiff"
)

// Options parameterise the rules. The zero value checks any image against
// the generic rules with default thresholds.
type Options struct {
	// WantUser, when set, is the exact config user ("102:104").
	WantUser string
	// UserDirs must exist, belong to the config user and grant nothing to others.
	UserDirs []string
	// SecretPaths, when present in the image, must not be readable by others.
	SecretPaths []string
	// WallClockWindow is how close to Now a created time may not be
	// (default 10 minutes).
	WallClockWindow time.Duration
	// Now is the check's notion of the present (default time.Now()).
	Now time.Time
	// SourceDateEpoch, when set, is the exact created time expected. It
	// replaces the wall-clock window, which would misfire when a build runs
	// minutes after the commit it takes its epoch from.
	SourceDateEpoch time.Time
	// Lock, when set, is what the image's dpkg status entries must match.
	Lock *debian.Lock
	// RequiredLabels default to DefaultLabels when nil.
	RequiredLabels []string
	// Skip names rules not to run.
	Skip []string
	// MaxPerRule bounds how many violations one rule lists before
	// summarising the rest, so a wall-clock image gives a readable report
	// rather than one line per file (default 50).
	MaxPerRule int
}

// DefaultLabels are the OCI annotation keys an image must carry, in its
// config labels or its manifest annotations.
func DefaultLabels() []string {
	return []string{
		"org.opencontainers.image.title",
		"org.opencontainers.image.description",
		"org.opencontainers.image.version",
		"org.opencontainers.image.source",
		"org.opencontainers.image.revision",
		"org.opencontainers.image.licenses",
		"org.opencontainers.image.created",
	}
}

// Violation is one broken rule, naming the path or field at fault.
type Violation struct {
	Rule    string `json:"rule"`
	Path    string `json:"path,omitempty"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

func (v Violation) String() string {
	where := v.Path
	if where == "" {
		where = v.Field
	}
	if where == "" {
		return v.Rule + ": " + v.Message
	}
	return v.Rule + ": " + where + ": " + v.Message
}

// subject is the image as the rules see it, read once.
type subject struct {
	manifest *v1.Manifest
	config   *v1.ConfigFile
	scan     *imgdiff.Scan
}

type rule struct {
	name  string
	check func(*subject, *Options) []Violation
}

// rules lists every rule in report order.
func rules() []rule {
	return []rule{
		{"user", checkUser},
		{"world-writable", checkWorldWritable},
		{"setuid", checkSetuid},
		{"device", checkDevices},
		{"user-dirs", checkUserDirs},
		{"secret-paths", checkSecretPaths},
		{"timestamps", checkTimestamps},
		{"created", checkCreated},
		{"base", checkBase},
		{"dpkg-lock", checkDpkgLock},
		{"os-release", checkOSRelease},
		{"labels", checkLabels},
		{"env-secrets", checkEnvSecrets},
		{"history-secrets", checkHistorySecrets},
	}
}

// RuleNames lists the rules, for --skip help and validation.
func RuleNames() []string {
	var out []string
	for _, r := range rules() {
		out = append(out, r.name)
	}
	return out
}

// Check runs every rule not skipped and returns the violations in rule
// order; an empty result means img passes.
func Check(img v1.Image, opts Options) ([]Violation, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	s := subject{}
	if s.manifest, err = img.Manifest(); err != nil {
		return nil, fmt.Errorf("reading manifest: %w", err)
	}
	if s.config, err = img.ConfigFile(); err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	if s.scan, err = imgdiff.ScanImage(img, keptContent); err != nil {
		return nil, err
	}
	skip := map[string]bool{}
	for _, n := range o.Skip {
		skip[n] = true
	}
	var out []Violation
	for _, r := range rules() {
		if skip[r.name] {
			continue
		}
		vs := r.check(&s, &o)
		for i := range vs {
			vs[i].Rule = r.name
		}
		out = append(out, capped(r.name, vs, o.MaxPerRule)...)
	}
	return out, nil
}

func (o Options) withDefaults() (Options, error) {
	known := map[string]bool{}
	for _, n := range RuleNames() {
		known[n] = true
	}
	for _, n := range o.Skip {
		if !known[n] {
			return o, fmt.Errorf("unknown policy rule %q to skip (rules: %s)", n, strings.Join(RuleNames(), ", "))
		}
	}
	if o.WallClockWindow == 0 {
		o.WallClockWindow = 10 * time.Minute
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.RequiredLabels == nil {
		o.RequiredLabels = DefaultLabels()
	}
	if o.MaxPerRule <= 0 {
		o.MaxPerRule = 50
	}
	return o, nil
}

func capped(name string, vs []Violation, n int) []Violation {
	if len(vs) <= n {
		return vs
	}
	sort.SliceStable(vs, func(i, j int) bool { return vs[i].Path < vs[j].Path })
	rest := len(vs) - n
	return append(vs[:n:n], Violation{Rule: name, Message: fmt.Sprintf("and %d more like these", rest)})
}
