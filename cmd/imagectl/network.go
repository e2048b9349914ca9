package main

import (
	"flag"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/pulse-sidecar/pulse-sidecar/internal/fetch"
)

// registerTimeout is --timeout, the same flag and default wherever
// imagectl talks to a mirror or a registry.
func registerTimeout(fs *flag.FlagSet, d *time.Duration, peer string) {
	fs.DurationVar(d, "timeout", 60*time.Second, "give up on a "+peer+" connection that answers nothing for this long (connect, header, or a pause in a body); retried a few times where resending is safe")
}

// timeouts applies --timeout to every wait.
func timeouts(d time.Duration) fetch.Timeouts {
	return fetch.Timeouts{Connect: d, Header: d, Stall: d}
}

// registryOptions are what push, diff, policy and verify --against give
// go-containerregistry: the mirror's transport, bounded by --timeout.
func registryOptions(timeout time.Duration) []remote.Option {
	return []remote.Option{remote.WithTransport(timeouts(timeout).Transport())}
}
