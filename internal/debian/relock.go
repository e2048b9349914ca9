package debian

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// DefaultSuites are the Debian 12 suites an image is locked against: the
// release, its stable updates and its security updates.
func DefaultSuites() []SuiteRef {
	return []SuiteRef{
		{Archive: "debian", Suite: "bookworm"},
		{Archive: "debian", Suite: "bookworm-updates"},
		{Archive: "debian-security", Suite: "bookworm-security"},
	}
}

// RelockOptions are the inputs of the `imagectl lock` subcommand.
type RelockOptions struct {
	LockPath string // where the lock is written
	KeysDir  string // directory of pinned armored keys
	Archs    []string
	// Mirror and SecurityMirror override the base URLs of the "debian" and
	// "debian-security" archives; empty means "from AptRoot's sources".
	Mirror         string
	SecurityMirror string
	AptRoot        string // root of the apt configuration to read, "/" normally
	Suites         []SuiteRef
	Roots          []string
	Exclude        []string
	AllowExpired   bool
	HTTP           *http.Client
	Now            time.Time
	Log            io.Writer // progress lines; nil for none
}

// RegisterFlags binds the flags of `imagectl lock` to o, with their
// defaults. With ff's IMAGECTL environment prefix, --mirror and
// --security-mirror also read IMAGECTL_MIRROR and IMAGECTL_SECURITY_MIRROR.
// Roots and Exclude come from the image spec, not from flags.
func (o *RelockOptions) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.LockPath, "lock", "image/debian.lock.json", "lock file to write")
	fs.StringVar(&o.KeysDir, "keys", "image/keys", "directory of pinned armored archive keys (*.asc)")
	fs.Func("arch", "comma-separated image architectures (default amd64)", func(s string) error {
		o.Archs = nil
		for _, a := range strings.Split(s, ",") {
			if a = strings.TrimSpace(a); a != "" {
				o.Archs = append(o.Archs, a)
			}
		}
		if len(o.Archs) == 0 {
			return fmt.Errorf("no architecture in %q", s)
		}
		return nil
	})
	fs.StringVar(&o.Mirror, "mirror", "", "base URL of the debian archive (default: from apt sources)")
	fs.StringVar(&o.SecurityMirror, "security-mirror", "", "base URL of the debian-security archive (default: from apt sources)")
	fs.StringVar(&o.AptRoot, "apt-root", "/", "root directory whose etc/apt sources give the default mirrors")
	fs.BoolVar(&o.AllowExpired, "allow-expired", false, "accept Releases past Valid-Until (old snapshots)")
}

// Relock resolves the closure and writes the lock to o.LockPath.
func Relock(ctx context.Context, o RelockOptions) (*Lock, error) {
	keyring, err := LoadKeyring(o.KeysDir)
	if err != nil {
		return nil, err
	}
	mirrors, err := o.mirrors()
	if err != nil {
		return nil, err
	}
	archs := o.Archs
	if len(archs) == 0 {
		archs = []string{"amd64"}
	}
	suites := o.Suites
	if len(suites) == 0 {
		suites = DefaultSuites()
	}
	now := o.Now
	if now.IsZero() {
		// The lock records when it was made; this is the one place the
		// wall clock is an input, and it is written down.
		now = time.Now()
	}
	logf(o.Log, "locking %s for %s against %d suites", strings.Join(o.Roots, " "), strings.Join(archs, ","), len(suites))
	l, err := ResolveLock(ctx, Options{
		Mirrors:      mirrors,
		Suites:       suites,
		Archs:        archs,
		Roots:        o.Roots,
		Exclude:      o.Exclude,
		Keyring:      keyring,
		HTTP:         o.HTTP,
		Now:          now,
		AllowExpired: o.AllowExpired,
	})
	if err != nil {
		return nil, err
	}
	if err := WriteLock(o.LockPath, l); err != nil {
		return nil, err
	}
	for _, arch := range archs {
		pkgs := l.PackagesFor(arch)
		var size int64
		for _, p := range pkgs {
			size += p.Size
		}
		logf(o.Log, "%s: %d packages, %.1f MiB of .debs", arch, len(pkgs), float64(size)/(1<<20))
	}
	logf(o.Log, "wrote %s", o.LockPath)
	return l, nil
}

// mirrors merges the explicit mirror URLs over the apt sources' ones. apt
// sources are read only when a URL is missing, so an explicit
// configuration works on machines without apt.
func (o RelockOptions) mirrors() (map[string]string, error) {
	m := map[string]string{}
	if o.Mirror == "" || o.SecurityMirror == "" {
		root := o.AptRoot
		if root == "" {
			root = "/"
		}
		suites := o.Suites
		if len(suites) == 0 {
			suites = DefaultSuites()
		}
		apt, err := MirrorsFromAptSourcesFor(root, suites)
		if err != nil {
			return nil, fmt.Errorf("reading apt sources for default mirrors: %w", err)
		}
		m = apt
	}
	if o.Mirror != "" {
		m["debian"] = strings.TrimSuffix(o.Mirror, "/")
	}
	if o.SecurityMirror != "" {
		m["debian-security"] = strings.TrimSuffix(o.SecurityMirror, "/")
	}
	return m, nil
}

func logf(w io.Writer, format string, args ...any) {
	if w != nil {
		fmt.Fprintf(w, format+"\n", args...)
	}
}
