package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/peterbourgon/ff/v3"
	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/pulse-sidecar/pulse-sidecar/internal/debian"
)

// outdatedReport is `imagectl outdated --format json`.
type outdatedReport struct {
	Lock     string          `json:"lock"`
	Updates  []debian.Update `json:"updates"`
	Security int             `json:"security_updates"`
}

func outdatedCommand(stdout, stderr io.Writer) *ffcli.Command {
	var (
		f      archiveFlags
		format string
	)
	flags := flag.NewFlagSet("imagectl outdated", flag.ContinueOnError)
	f.register(flags)
	flags.StringVar(&f.lock, "lock", "image/debian.lock.json", "lock to compare with the archive")
	flags.StringVar(&format, "format", "text", "output format: text or json")
	return &ffcli.Command{
		Name:       "outdated",
		ShortUsage: "imagectl outdated [flags]",
		ShortHelp:  "list locked packages with a newer version in the signed archive; exit 1 if any is a security update",
		LongHelp: "Fetches and verifies the lock's suites as `imagectl lock` does (the\n" +
			"archive may not be older than the lock) and lists every locked package\n" +
			"a re-lock would update, marking those from the security archive.\n" +
			"Exits 1 when there is a security update, 0 otherwise: `imagectl lock`\n" +
			"picks them all up.",
		FlagSet: flags,
		Options: []ff.Option{ff.WithEnvVarPrefix("IMAGECTL")},
		Exec: func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return usagef("outdated takes no arguments, got %q", args)
			}
			if format != "text" && format != "json" {
				return usagef("--format %q: want text or json", format)
			}
			l, err := debian.ReadLock(f.lock)
			if err != nil {
				return err
			}
			suites := make([]debian.SuiteRef, 0, len(l.Suites))
			for _, s := range l.Suites {
				suites = append(suites, debian.SuiteRef{Archive: s.Archive, Suite: s.Suite})
			}
			c, err := f.client(suites, stderr, time.Now())
			if err != nil {
				return err
			}
			c.Log = nil // only the report on stdout
			updates, err := c.Outdated(ctx, l)
			if err != nil {
				return err
			}
			rep := outdatedReport{Lock: f.lock, Updates: updates}
			if rep.Updates == nil {
				rep.Updates = []debian.Update{}
			}
			for _, u := range updates {
				if u.Security {
					rep.Security++
				}
			}
			if format == "json" {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else if err := writeOutdatedTable(stdout, rep); err != nil {
				return err
			}
			if rep.Security > 0 {
				return exitWith(exitError)
			}
			return nil
		},
	}
}

func writeOutdatedTable(w io.Writer, rep outdatedReport) error {
	if len(rep.Updates) == 0 {
		_, err := fmt.Fprintf(w, "%s: every locked package is current\n", rep.Lock)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PACKAGE\tARCH\tLOCKED\tAVAILABLE\tFROM\tSECURITY")
	for _, u := range rep.Updates {
		mark := ""
		if u.Security {
			mark = "security"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s/%s\t%s\n", u.Name, u.ForArch, u.Locked, u.Available, u.Archive, u.Suite, mark)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d update(s), %d from the security archive; `imagectl lock` picks them up\n", len(rep.Updates), rep.Security)
	return err
}
