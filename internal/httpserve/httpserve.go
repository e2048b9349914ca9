// Package httpserve runs an http.Server for as long as a context lives and
// stops it promptly: every server of the daemon (speaker, microphone, ops)
// serves and shuts down the same way.
package httpserve

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Grace is how long stopping waits for requests in flight. The daemon's
// handlers answer at once (websockets are hijacked and tracked by their
// owner), so it is short: a long one would only wait out connections that
// never sent a request, which Shutdown counts as busy, and hold SIGTERM up
// for nothing.
const Grace = 200 * time.Millisecond

// Run serves srv on ln until ctx ends, then shuts it down within Grace,
// closing whatever is left. It returns nil after a stop and an error naming
// the address when serving fails on its own.
func Run(ctx context.Context, srv *http.Server, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	var err error
	select {
	case err = <-errc:
		return fmt.Errorf("serving %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), Grace)
	defer cancel()
	if srv.Shutdown(sctx) != nil {
		_ = srv.Close()
	}
	if err = <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving %s: %w", ln.Addr(), err)
	}
	return nil
}
