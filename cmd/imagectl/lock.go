package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"time"

	"github.com/peterbourgon/ff/v3"
	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/pulse-sidecar/pulse-sidecar/internal/archive"
	"github.com/pulse-sidecar/pulse-sidecar/internal/debian"
	"github.com/pulse-sidecar/pulse-sidecar/internal/fetch"
	"github.com/pulse-sidecar/pulse-sidecar/internal/spec"
)

// archiveFlags say where the signed archive is and how to trust it: shared
// by lock and outdated. With ff's IMAGECTL environment prefix, --mirror and
// --security-mirror also read IMAGECTL_MIRROR and IMAGECTL_SECURITY_MIRROR.
type archiveFlags struct {
	spec, lock, keys       string // spec: lock only
	mirror, securityMirror string
	aptRoot                string
	allowExpired           bool
	stall                  time.Duration
}

func (f *archiveFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.keys, "keys", "image/keys", "directory of pinned armored archive keys, one subdirectory per archive (<archive>/*.asc)")
	fs.StringVar(&f.mirror, "mirror", "", "base URL of the debian archive (default: from apt sources)")
	fs.StringVar(&f.securityMirror, "security-mirror", "", "base URL of the debian-security archive (default: from apt sources)")
	fs.StringVar(&f.aptRoot, "apt-root", "/", "root directory whose etc/apt sources give the default mirrors")
	fs.BoolVar(&f.allowExpired, "allow-expired", false, "accept Releases past Valid-Until (old snapshots)")
	registerTimeout(fs, &f.stall, "mirror")
}

// client builds the archive client the flags describe.
func (f *archiveFlags) client(suites []debian.SuiteRef, stderr io.Writer, now time.Time) (*archive.Client, error) {
	keys, err := debian.LoadKeys(f.keys)
	if err != nil {
		return nil, err
	}
	mirrors, err := archive.Mirrors(f.aptRoot, suites, map[string]string{"debian": f.mirror, "debian-security": f.securityMirror})
	if err != nil {
		return nil, err
	}
	return &archive.Client{
		Mirrors: mirrors, Keys: keys, Now: now, AllowExpired: f.allowExpired, Log: stderr,
		HTTP:     &fetch.Client{Timeouts: timeouts(f.stall)},
		Progress: fetch.NewProgress(stderr, isTerminal(stderr)),
	}, nil
}

func specSuites(s *spec.Spec) []debian.SuiteRef {
	out := make([]debian.SuiteRef, 0, len(s.Suites))
	for _, su := range s.Suites {
		out = append(out, debian.SuiteRef{Archive: su.Archive, Suite: su.Suite})
	}
	return out
}

func lockCommand(stderr io.Writer) *ffcli.Command {
	var (
		f         archiveFlags
		archs     string
		downgrade stringList
	)
	flags := flag.NewFlagSet("imagectl lock", flag.ContinueOnError)
	f.register(flags)
	flags.StringVar(&f.spec, "spec", "image/spec.json", "image spec: the packages to lock, those to exclude, the suites and the architectures")
	flags.StringVar(&f.lock, "lock", "image/debian.lock.json", "lock file to write")
	flags.StringVar(&archs, "arch", "", "comma-separated image architectures (default: the spec's)")
	flags.Var(&downgrade, "allow-downgrade", "accept an older Release than the current lock's, or one dated in the future, for this suite (repeatable); never used by CI")
	return &ffcli.Command{
		Name:       "lock",
		ShortUsage: "imagectl lock [flags]",
		ShortHelp:  "resolve the spec's packages against the signed archive and write the lock",
		LongHelp: "Fetches InRelease for each suite, verifies it against the key pinned for\n" +
			"its archive, refuses a Release older than the current lock's (a replayed\n" +
			"one) or dated more than a day ahead, checks each Packages index against\n" +
			"the Release and writes every package of the closure, pinned by sha256,\n" +
			"with the digests of the InRelease and indexes it came from.\n" +
			"--mirror and --security-mirror also read IMAGECTL_MIRROR and\n" +
			"IMAGECTL_SECURITY_MIRROR.",
		FlagSet: flags,
		Options: []ff.Option{ff.WithEnvVarPrefix("IMAGECTL")},
		Exec: func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return usagef("lock takes no arguments, got %q", args)
			}
			s, err := spec.Load(f.spec)
			if err != nil {
				return err
			}
			arches := s.Architectures
			if archs != "" {
				arches = nil
				for _, a := range strings.Split(archs, ",") {
					if a = strings.TrimSpace(a); a != "" {
						arches = append(arches, a)
					}
				}
				if len(arches) == 0 {
					return usagef("--arch: no architecture in %q", archs)
				}
			}
			// The previous lock is the reference for rollback: an
			// unreadable one must not silently disable the check.
			prev, err := debian.ReadLock(f.lock)
			if errors.Is(err, fs.ErrNotExist) {
				prev, err = nil, nil
			}
			if err != nil {
				return fmt.Errorf("reading the current lock (the reference for rollback checks): %w", err)
			}
			suites := specSuites(s)
			// The lock records when it was made; this is the one place the
			// wall clock is an input, and it is written down.
			c, err := f.client(suites, stderr, time.Now())
			if err != nil {
				return err
			}
			l, err := c.Lock(ctx, archive.LockOptions{
				Suites: suites, Archs: arches, Roots: s.Packages, Exclude: s.Exclude,
				Fresh: archive.Freshness{Previous: prev, AllowDowngrade: downgrade},
			})
			if err != nil {
				return err
			}
			if err := debian.WriteLock(f.lock, l); err != nil {
				return err
			}
			for _, arch := range arches {
				pkgs := l.PackagesFor(arch)
				var size int64
				for _, p := range pkgs {
					size += p.Size
				}
				fmt.Fprintf(stderr, "%s: %d packages, %.1f MiB of .debs\n", arch, len(pkgs), float64(size)/(1<<20))
			}
			fmt.Fprintf(stderr, "wrote %s\n", f.lock)
			return nil
		},
	}
}
