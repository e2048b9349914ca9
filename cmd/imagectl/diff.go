package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/pulse-sidecar/pulse-sidecar/internal/imgdiff"
	"github.com/pulse-sidecar/pulse-sidecar/internal/oci/source"
)

func diffCommand(stdout io.Writer) *ffcli.Command {
	var (
		opts    imgdiff.Options
		format  string
		timeout time.Duration
	)
	fs := flag.NewFlagSet("imagectl diff", flag.ContinueOnError)
	fs.StringVar(&format, "format", "text", "output format: text or json")
	fs.BoolVar(&opts.IgnoreTimestamps, "ignore-timestamps", false, "report timestamps but do not count them as differences")
	registerTimeout(fs, &timeout, "registry")
	fs.BoolVar(&opts.PerLayer, "per-layer", false, "also compare layer by layer, to tell which layer a difference came from")
	return &ffcli.Command{
		Name:       "diff",
		ShortUsage: "imagectl diff [flags] A B",
		ShortHelp:  "compare two images: config fields, then files by path; exit 0 identical, 1 different",
		LongHelp: "A and B are OCI layout directories, OCI or docker archives, or registry\n" +
			"references (credentials from the docker/podman configuration). Image\n" +
			"indexes are compared platform by platform, each report under its\n" +
			"platform's name; a platform only one side has is a difference. One\n" +
			"image against an index is compared with the index's image of its platform.",
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
			a, err := source.OpenAny(ctx, args[0], registryOptions(timeout)...)
			if err != nil {
				return err
			}
			defer a.Close()
			b, err := source.OpenAny(ctx, args[1], registryOptions(timeout)...)
			if err != nil {
				return err
			}
			defer b.Close()
			if a.Index == nil && b.Index == nil {
				code, err := imgdiff.Run(a.Platforms[0].Image, b.Platforms[0].Image, opts, format, stdout)
				if err != nil {
					return err
				}
				return exitWith(code)
			}
			code, err := diffPlatforms(args[0], args[1], a, b, opts, format, stdout)
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

// diffPlatforms compares two sources of which at least one is an index.
func diffPlatforms(nameA, nameB string, a, b *source.Artifact, opts imgdiff.Options, format string, w io.Writer) (int, error) {
	pairs := pairPlatforms(a, b)
	names := make([]string, len(pairs))
	for i, p := range pairs {
		names[i] = p.name
	}
	return perPlatform(format, w, names, func(i int, w io.Writer) (int, error) {
		p := pairs[i]
		switch {
		case p.b == nil:
			return writeOnlyIn(w, format, nameA)
		case p.a == nil:
			return writeOnlyIn(w, format, nameB)
		}
		return imgdiff.Run(p.a.Image, p.b.Image, opts, format, w)
	})
}

func writeOnlyIn(w io.Writer, format, name string) (int, error) {
	if format == "json" {
		b, _ := json.Marshal(map[string]string{"only_in": name})
		_, err := fmt.Fprintf(w, "%s\n", b)
		return exitError, err
	}
	_, err := fmt.Fprintf(w, "platform only in %s\n", name)
	return exitError, err
}
