package main

import (
	"context"
	"flag"
	"io"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/pulse-sidecar/pulse-sidecar/internal/imgdiff"
	"github.com/pulse-sidecar/pulse-sidecar/internal/oci/source"
)

func diffCommand(stdout io.Writer) *ffcli.Command {
	var (
		opts   imgdiff.Options
		format string
	)
	fs := flag.NewFlagSet("imagectl diff", flag.ContinueOnError)
	fs.StringVar(&format, "format", "text", "output format: text or json")
	fs.BoolVar(&opts.IgnoreTimestamps, "ignore-timestamps", false, "report timestamps but do not count them as differences")
	fs.BoolVar(&opts.PerLayer, "per-layer", false, "also compare layer by layer, to tell which layer a difference came from")
	return &ffcli.Command{
		Name:       "diff",
		ShortUsage: "imagectl diff [flags] A B",
		ShortHelp:  "compare two images: config fields, then files by path; exit 0 identical, 1 different",
		LongHelp: "A and B are OCI layout directories, OCI or docker archives, or registry\n" +
			"references (credentials from the docker/podman configuration).",
		FlagSet: fs,
		Exec: func(ctx context.Context, args []string) error {
			args, err := interspersed(fs, args)
			if err != nil {
				return err
			}
			if len(args) != 2 {
				return usagef("diff takes two images, got %q", args)
			}
			if format != "text" && format != "json" {
				return usagef("--format %q: want text or json", format)
			}
			a, err := source.Open(ctx, args[0])
			if err != nil {
				return err
			}
			defer a.Close()
			b, err := source.Open(ctx, args[1])
			if err != nil {
				return err
			}
			defer b.Close()
			code, err := imgdiff.Run(a, b, opts, format, stdout)
			if err != nil {
				return err
			}
			return exitWith(code)
		},
	}
}

// interspersed lets flags follow the positional arguments, as the usage
// lines show; Go's flag package stops at the first non-flag.
func interspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			return nil, usagef("%v", err)
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	return pos, nil
}
