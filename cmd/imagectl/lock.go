package main

import (
	"context"
	"flag"
	"io"

	"github.com/peterbourgon/ff/v3"
	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/pulse-sidecar/pulse-sidecar/internal/debian"
	"github.com/pulse-sidecar/pulse-sidecar/internal/spec"
)

func lockCommand(stderr io.Writer) *ffcli.Command {
	var (
		o        debian.RelockOptions
		specPath string
	)
	fs := flag.NewFlagSet("imagectl lock", flag.ContinueOnError)
	o.RegisterFlags(fs)
	fs.StringVar(&specPath, "spec", "image/spec.json", "image spec: the packages to lock, those to exclude, the suites and the default architectures")
	return &ffcli.Command{
		Name:       "lock",
		ShortUsage: "imagectl lock [flags]",
		ShortHelp:  "resolve the spec's packages against the signed archive and write the lock",
		LongHelp: "Fetches InRelease for each suite, verifies it against the pinned keys,\n" +
			"checks each Packages index against the Release and writes every package\n" +
			"of the closure, pinned by sha256. --mirror and --security-mirror also\n" +
			"read IMAGECTL_MIRROR and IMAGECTL_SECURITY_MIRROR.",
		FlagSet: fs,
		Options: []ff.Option{ff.WithEnvVarPrefix("IMAGECTL")},
		Exec: func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return usagef("lock takes no arguments, got %q", args)
			}
			s, err := spec.Load(specPath)
			if err != nil {
				return err
			}
			o.Roots, o.Exclude = s.Packages, s.Exclude
			o.Suites = make([]debian.SuiteRef, 0, len(s.Suites))
			for _, su := range s.Suites {
				o.Suites = append(o.Suites, debian.SuiteRef{Archive: su.Archive, Suite: su.Suite})
			}
			if len(o.Archs) == 0 {
				o.Archs = s.Architectures
			}
			o.Log = stderr
			_, err = debian.Relock(ctx, o)
			return err
		},
	}
}
