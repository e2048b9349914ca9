package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/pulse-sidecar/pulse-sidecar/internal/debian"
	"github.com/pulse-sidecar/pulse-sidecar/internal/oci/source"
	"github.com/pulse-sidecar/pulse-sidecar/internal/policy"
	"github.com/pulse-sidecar/pulse-sidecar/internal/spec"
)

// ourSecret is where our image holds a secret at run time: the daemon
// writes the PulseAudio cookie there. The spec does not list it because the
// build creates no such file; if an image ever ships one, it must not be
// readable by others.
const ourSecret = "/var/run/desktop/cookie"

type policyFlags struct {
	format, spec, lock, user, sourceDateEpoch string
	userDirs, secrets, skip                   stringList
	timeout                                   time.Duration
}

func policyCommand(stdout io.Writer) *ffcli.Command {
	var f policyFlags
	fs := flag.NewFlagSet("imagectl policy", flag.ContinueOnError)
	fs.StringVar(&f.format, "format", "text", "output format: text or json")
	fs.StringVar(&f.spec, "spec", "image/spec.json", "image spec giving the expected user and the directories it must own; '' for any image")
	fs.StringVar(&f.lock, "lock", "image/debian.lock.json", "lock the image's dpkg status entries must match; '' to skip")
	fs.StringVar(&f.user, "user", "", "exact config user expected (default: the spec's)")
	fs.Var(&f.userDirs, "user-dir", "directory the config user must own (repeatable; added to the spec's)")
	fs.Var(&f.secrets, "secret", "path that must not be readable by others (repeatable; default with a spec: "+ourSecret+")")
	fs.Var(&f.skip, "skip", "rule not to run (repeatable): "+strings.Join(policy.RuleNames(), ", "))
	registerTimeout(fs, &f.timeout, "registry")
	fs.StringVar(&f.sourceDateEpoch, "source-date-epoch", "", "exact created time expected, Unix seconds (default $SOURCE_DATE_EPOCH, else the lock's)")
	return &ffcli.Command{
		Name:       "policy",
		ShortUsage: "imagectl policy [flags] IMAGE",
		ShortHelp:  "check an image's hardening rules; names every violation; exit 0 pass, 1 violations",
		LongHelp: "IMAGE is an OCI layout directory, an OCI or docker archive, or a registry\n" +
			"reference. Every platform of an image index is checked, its report under\n" +
			"its platform's name. --spec and --lock default to the repository's files when they\n" +
			"exist (run from the repository root); pass --spec '' --lock '' to check\n" +
			"someone else's image against the generic rules only.",
		FlagSet: fs,
		Exec: func(ctx context.Context, args []string) error {
			args, err := interspersed(fs, args)
			if err != nil {
				return err
			}
			if len(args) != 1 {
				return usagef("policy takes one IMAGE, got %q", args)
			}
			if f.format != "text" && f.format != "json" {
				return usagef("--format %q: want text or json", f.format)
			}
			opts, err := policyOptions(f, explicitFlags(fs))
			if err != nil {
				return err
			}
			a, err := source.OpenAny(ctx, args[0], registryOptions(f.timeout)...)
			if err != nil {
				return err
			}
			defer a.Close()
			if a.Index == nil {
				code, err := policy.Run(a.Platforms[0].Image, opts, f.format, stdout)
				if err != nil {
					return err
				}
				return exitWith(code)
			}
			// Every platform is checked, each against its own
			// architecture's packages in the lock.
			names := make([]string, len(a.Platforms))
			for i, p := range a.Platforms {
				names[i] = p.Name()
			}
			code, err := perPlatform(f.format, stdout, names, func(i int, w io.Writer) (int, error) {
				return policy.Run(a.Platforms[i].Image, opts, f.format, w)
			})
			if err != nil {
				return err
			}
			return exitWith(code)
		},
	}
}

// explicitFlags are the flags set on the command line or from the
// environment, as opposed to left at their defaults.
func explicitFlags(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	return set
}

// policyOptions turns the flags into rule parameters. A default spec or
// lock path that does not exist is no error: that is someone else's image
// checked from outside the repository.
func policyOptions(f policyFlags, explicit map[string]bool) (policy.Options, error) {
	opts := policy.Options{WantUser: f.user, UserDirs: f.userDirs, SecretPaths: f.secrets, Skip: f.skip}
	for _, r := range f.skip {
		if !validRule(r) {
			return opts, usagef("--skip %q: no such rule (rules: %s)", r, strings.Join(policy.RuleNames(), ", "))
		}
	}
	if f.spec != "" {
		s, err := spec.Load(f.spec)
		switch {
		case err == nil:
			applySpec(&opts, s, explicit["secret"])
		case errors.Is(err, fs.ErrNotExist) && !explicit["spec"]:
		default:
			return opts, err
		}
	}
	if f.lock != "" {
		l, err := debian.ReadLock(f.lock)
		switch {
		case err == nil:
			opts.Lock = l
		case errors.Is(err, fs.ErrNotExist) && !explicit["lock"]:
		default:
			return opts, err
		}
	}
	sde, err := expectedCreated(f.sourceDateEpoch, opts.Lock)
	if err != nil {
		return opts, err
	}
	opts.SourceDateEpoch = sde
	return opts, nil
}

// applySpec: the config user, every directory the spec gives to that user,
// and our secret paths unless --secret named others.
func applySpec(opts *policy.Options, s *spec.Spec, secretsGiven bool) {
	if opts.WantUser == "" {
		opts.WantUser = s.Config.User
	}
	uid, gid, ok := numericUser(opts.WantUser)
	for _, d := range s.Directories {
		if ok && d.UID == uid && d.GID == gid && uid != 0 {
			opts.UserDirs = append(opts.UserDirs, d.Path)
		}
	}
	if !secretsGiven {
		opts.SecretPaths = append(opts.SecretPaths, ourSecret)
	}
}

func numericUser(u string) (uid, gid int, ok bool) {
	a, b, found := strings.Cut(u, ":")
	if !found {
		return 0, 0, false
	}
	uid, err1 := strconv.Atoi(a)
	gid, err2 := strconv.Atoi(b)
	return uid, gid, err1 == nil && err2 == nil
}

func validRule(name string) bool {
	for _, r := range policy.RuleNames() {
		if r == name {
			return true
		}
	}
	return false
}

// expectedCreated is what the build used for SOURCE_DATE_EPOCH: the flag,
// the environment, else the lock's date, the build's own default. With none
// of them the policy falls back to its wall-clock window.
func expectedCreated(flagValue string, lock *debian.Lock) (time.Time, error) {
	if flagValue == "" && os.Getenv("SOURCE_DATE_EPOCH") == "" && lock == nil {
		return time.Time{}, nil
	}
	t, err := sourceDateEpoch(flagValue, lock)
	if err != nil {
		return time.Time{}, fmt.Errorf("policy: %w", err)
	}
	return t, nil
}
