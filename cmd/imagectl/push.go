package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/peterbourgon/ff/v3"
	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/pulse-sidecar/pulse-sidecar/internal/oci"
)

func pushCommand(stdout, stderr io.Writer) *ffcli.Command {
	var (
		repo string
		tags stringList
	)
	fs := flag.NewFlagSet("imagectl push", flag.ContinueOnError)
	fs.StringVar(&repo, "repository", "", "registry repository, e.g. registry.example/team/pulse-sidecar")
	fs.Var(&tags, "tag", "tag to point at the pushed digest (repeatable)")
	return &ffcli.Command{
		Name:       "push",
		ShortUsage: "imagectl push SRC --repository REPO [--tag T ...]",
		ShortHelp:  "push an OCI layout, OCI archive or docker archive by digest, then tag it; prints REPO@sha256:...",
		LongHelp:   "Credentials come from the docker/podman configuration and credential helpers.",
		FlagSet:    fs,
		Options:    []ff.Option{ff.WithEnvVarPrefix("IMAGECTL")},
		Exec: func(ctx context.Context, args []string) error {
			// Go's flag package stops at the first argument; allow flags
			// after SRC too, as the usage line shows.
			if len(args) > 1 {
				if err := fs.Parse(args[1:]); err != nil {
					return usagef("%v", err)
				}
				args = append(args[:1], fs.Args()...)
			}
			if len(args) != 1 {
				return usagef("push takes exactly one SRC, got %q", args)
			}
			if repo == "" {
				return usagef("push: --repository is required")
			}
			img, err := oci.Load(args[0])
			if err != nil {
				return err
			}
			ref, err := oci.Push(ctx, img, repo, tags)
			if err != nil {
				return err
			}
			fmt.Fprintln(stdout, ref)
			return nil
		},
	}
}
