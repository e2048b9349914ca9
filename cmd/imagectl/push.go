package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/peterbourgon/ff/v3"
	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/pulse-sidecar/pulse-sidecar/internal/oci/sink"
	"github.com/pulse-sidecar/pulse-sidecar/internal/oci/source"
	"github.com/pulse-sidecar/pulse-sidecar/internal/sbom"
)

// noSBOM is the --sbom value that pushes the image alone.
const noSBOM = "none"

func pushCommand(stdout, stderr io.Writer) *ffcli.Command {
	var (
		repo, sbomFile string
		tags           stringList
		timeout        time.Duration
	)
	fs := flag.NewFlagSet("imagectl push", flag.ContinueOnError)
	fs.StringVar(&repo, "repository", "", "registry repository, e.g. registry.example/team/pulse-sidecar")
	fs.Var(&tags, "tag", "tag to point at the pushed digest (repeatable)")
	registerTimeout(fs, &timeout, "registry")
	fs.StringVar(&sbomFile, "sbom", "", "SPDX SBOM to attach as a referrer of the image (default: SRC.spdx.json when it exists, and for an index SRC.<os>-<arch>[-<variant>].spdx.json per platform, where FILE names the prefix the same way; \""+noSBOM+"\" for none)")
	return &ffcli.Command{
		Name:       "push",
		ShortUsage: "imagectl push SRC --repository REPO [--tag T ...] [--sbom FILE]",
		ShortHelp:  "push an OCI layout, OCI archive or docker archive (an image index or one image) by digest with its SBOMs, then tag it; prints REPO@sha256:...",
		LongHelp: "Every blob of SRC is checked against its digest before anything is sent.\n" +
			"An image index is pushed with every platform's image, each platform's\n" +
			"SBOM attached to that platform's manifest, never to the index.\n" +
			"The SBOM is attached as an OCI 1.1 referrer of the image (through the\n" +
			"registry's referrers API, or the sha256-<hex> tag fallback where it has\n" +
			"none) before the tags are set. Credentials come from the docker/podman\n" +
			"configuration and credential helpers.",
		FlagSet: fs,
		Options: []ff.Option{ff.WithEnvVarPrefix("IMAGECTL")},
		Exec: func(ctx context.Context, args []string) error {
			args, err := interspersed(fs, args)
			if err != nil {
				return err
			}
			if len(args) != 1 {
				return usagef("push takes exactly one SRC, got %q", args)
			}
			if repo == "" {
				return usagef("push: --repository is required")
			}
			a, err := source.LoadAny(args[0])
			if err != nil {
				return err
			}
			defer a.Close()
			var referrers []sink.Referrer
			if a.Index == nil {
				referrers, err = sbomReferrer(args[0], sbomFile, a.Platforms[0].Image, stderr)
			} else {
				referrers, err = platformReferrers(args[0], sbomFile, a, stderr)
			}
			if err != nil {
				return err
			}
			ref, err := sink.Push(ctx, a.Value(), repo, tags, referrers, registryOptions(timeout)...)
			if err != nil {
				return err
			}
			fmt.Fprintln(stdout, ref)
			return nil
		},
	}
}

// platformReferrers reads each platform's SBOM of an index (build wrote
// them beside SRC, named by platform) and makes it a referrer of that
// platform's manifest.
func platformReferrers(src, file string, a *source.Artifact, stderr io.Writer) ([]sink.Referrer, error) {
	if file == noSBOM {
		return nil, nil
	}
	base := src
	if file != "" {
		base = file
	}
	var out []sink.Referrer
	for _, p := range a.Platforms {
		f := sbomFile(base, &p.Platform)
		if _, err := os.Stat(f); errors.Is(err, fs.ErrNotExist) && file == "" {
			fmt.Fprintf(stderr, "push: no SBOM for %s at %s; pushing that platform without one\n", p.Name(), f)
			continue
		}
		r, err := sbomReferrer(src, f, p.Image, stderr)
		if err != nil {
			return nil, err
		}
		out = append(out, r...)
	}
	return out, nil
}

// sbomReferrer reads the SBOM to attach: --sbom, else the file the build
// wrote beside SRC. An SBOM that names another image is refused: it was
// left beside an output that has been rebuilt since.
func sbomReferrer(src, file string, img v1.Image, stderr io.Writer) ([]sink.Referrer, error) {
	explicit := file != ""
	if file == noSBOM {
		return nil, nil
	}
	if !explicit {
		file = filepath.Clean(src) + ".spdx.json"
	}
	doc, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) && !explicit {
		fmt.Fprintf(stderr, "push: no SBOM at %s; pushing the image without one\n", file)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sbom %s: %w", file, err)
	}
	desc, err := partial.Descriptor(img)
	if err != nil {
		return nil, err
	}
	about, err := sbom.Describes(doc)
	if err != nil {
		return nil, fmt.Errorf("sbom %s: %w", file, err)
	}
	if about != desc.Digest {
		if desc.MediaType != types.DockerManifestSchema2 {
			return nil, fmt.Errorf("sbom %s describes image %s, but %s is %s (pass --sbom for the right document, or --sbom %s)", file, about, src, desc.Digest, noSBOM)
		}
		// A docker archive keeps no manifest: it is pushed under a new
		// Docker one, while the SBOM names the OCI manifest of the build.
		fmt.Fprintf(stderr, "push: %s names the OCI manifest %s; attaching it to %s, the same image as a docker archive holds it\n", file, about, desc.Digest)
	}
	a, err := sbom.NewArtifact(*desc, doc)
	if err != nil {
		return nil, err
	}
	return []sink.Referrer{{Manifest: a.Manifest, Blobs: a.Blobs}}, nil
}
