// Command imagectl builds, pushes and checks the pulse-sidecar image from
// the declarative spec and the Debian lock under image/. Each subcommand is
// flag wiring around one internal package; the pipeline itself lives there.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/pulse-sidecar/pulse-sidecar/internal/fetch"
)

// Exit codes: CI tells "re-lock" (3) apart from any other failure (1).
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
	exitGone  = 3
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := &ffcli.Command{
		Name:       "imagectl",
		ShortUsage: "imagectl <subcommand> [flags]",
		ShortHelp:  "lock, build, publish and check the pulse-sidecar image",
		FlagSet:    flag.NewFlagSet("imagectl", flag.ContinueOnError),
		Subcommands: []*ffcli.Command{
			lockCommand(stderr),
			outdatedCommand(stdout, stderr),
			buildCommand(stdout, stderr),
			pushCommand(stdout, stderr),
			verifyCommand(stdout, stderr),
			diffCommand(stdout),
			policyCommand(stdout),
		},
	}
	root.Exec = func(_ context.Context, args []string) error {
		if len(args) > 0 {
			return usagef("unknown subcommand %q\n\n%s", args[0], ffcli.DefaultUsageFunc(root))
		}
		return usagef("a subcommand is required\n\n%s", ffcli.DefaultUsageFunc(root))
	}
	root.FlagSet.SetOutput(stderr)
	for _, c := range root.Subcommands {
		c.FlagSet.SetOutput(stderr)
	}
	err := root.ParseAndRun(ctx, args)
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK // the flag package has printed the usage
	}
	var status exitStatus
	if errors.As(err, &status) {
		return int(status) // the command has written its verdict
	}
	var gone *fetch.GoneError
	fmt.Fprintf(stderr, "imagectl: %v\n", err)
	if errors.As(err, &gone) {
		return exitGone
	}
	var usage usageError
	if errors.As(err, &usage) {
		return exitUsage
	}
	return exitError
}

// exitStatus ends a command that has already reported its outcome (diff,
// policy and verify print their findings, then exit 1) without another
// error line.
type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// exitWith turns a command's exit code into Exec's error.
func exitWith(code int) error {
	if code == exitOK {
		return nil
	}
	return exitStatus(code)
}

// usageError marks bad command lines (exit 2) apart from failed work (exit 1).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return usageError{fmt.Sprintf(format, args...)}
}

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error {
	*s = append(*s, v)
	return nil
}
