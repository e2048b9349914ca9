package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Timeouts bound every wait of one HTTP exchange with a mirror or a
// registry. There is no overall deadline: a large blob on a slow link may
// take long, and that is fine while bytes move. What is bounded is each
// wait on the peer: connecting, the response header, and any pause in a
// body, sent or received.
type Timeouts struct {
	// Connect bounds the TCP and TLS handshakes; 30s when zero.
	Connect time.Duration
	// Header bounds the wait for the response header (a server that
	// accepts and never answers). For a request without a body it runs
	// from the start, so it also covers connecting; 60s when zero.
	Header time.Duration
	// Stall abandons an exchange whose body, the request's being sent or
	// the response's being read, moves nothing for this long; 60s when zero.
	Stall time.Duration
}

func dflt(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func (t Timeouts) withDefaults() Timeouts {
	return Timeouts{
		Connect: dflt(t.Connect, 30*time.Second),
		Header:  dflt(t.Header, 60*time.Second),
		Stall:   dflt(t.Stall, 60*time.Second),
	}
}

// Transport is an http.RoundTripper that holds to t: the one transport of
// imagectl, under the mirror Client and under go-containerregistry's
// registry requests alike. A wait that runs out cancels the request and
// fails it with a *StallError saying what did not come.
func (t Timeouts) Transport() http.RoundTripper {
	t = t.withDefaults()
	return &watchedTransport{t: t, base: &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: t.Connect, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout: t.Connect,
		// The header wait is the watchdog's: it also covers a request
		// body the peer stops taking, which ResponseHeaderTimeout (armed
		// only once the request is written) never sees.
		ForceAttemptHTTP2:     true,
		MaxIdleConnsPerHost:   8,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}}
}

// StallError is a peer that went quiet: it sent (or took) nothing of what
// was awaited for After.
type StallError struct {
	// While is what was going on: "awaiting the response header",
	// "sending the request body" or "reading the response body".
	While string
	After time.Duration
	// retry is whether resending is harmless: a request without a body.
	retry bool
}

func (e *StallError) Error() string {
	return fmt.Sprintf("no progress for %s %s", e.After, e.While)
}

// Timeout reports true, as net.Error timeouts do.
func (e *StallError) Timeout() bool { return true }

// Temporary lets go-containerregistry's retry resend a request without a
// body after a stall, as the mirror Client retries its GETs; a request
// whose body was partly consumed cannot be resent.
func (e *StallError) Temporary() bool { return e.retry }

// What a StallError was doing.
const (
	awaiting = "awaiting the response header"
	sending  = "sending the request body"
	reading  = "reading the response body"
)

// ErrStalled matches every *StallError with errors.Is.
var ErrStalled = errors.New("peer stalled")

func (e *StallError) Is(target error) bool { return target == ErrStalled }

type watchedTransport struct {
	t    Timeouts
	base http.RoundTripper
}

func (w *watchedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancelCause(req.Context())
	hasBody := req.Body != nil && req.Body != http.NoBody
	d := &watchdog{ctx: ctx, cancel: cancel, retry: !hasBody}
	out := req.Clone(ctx)
	if hasBody {
		d.arm(w.t.Stall, sending)
		out.Body = &sentBody{rc: req.Body, d: d, t: w.t}
		if req.GetBody != nil {
			out.GetBody = func() (io.ReadCloser, error) {
				rc, err := req.GetBody()
				if err != nil {
					return nil, err
				}
				return &sentBody{rc: rc, d: d, t: w.t}, nil
			}
		}
	} else {
		d.arm(w.t.Header, awaiting)
	}
	resp, err := w.base.RoundTrip(out)
	d.answered()
	if err != nil {
		if se := d.stalled(); se != nil {
			err = se // not the bare "context canceled" the stall caused
		}
		cancel(nil)
		return nil, err
	}
	if resp.Body == nil || resp.Body == http.NoBody {
		cancel(nil)
		return resp, nil
	}
	resp.Body = &receivedBody{rc: resp.Body, d: d, stall: w.t.Stall, req: req}
	return resp, nil
}

// watchdog cancels an exchange when its timer runs out. It is armed only
// while the peer is what we wait for: not while our own source is read or
// while the caller does something else between two reads of the body.
type watchdog struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	retry  bool

	mu    sync.Mutex
	timer *time.Timer
	while string
	after time.Duration
	done  bool // the response came: the request body no longer arms it
}

func (d *watchdog) arm(after time.Duration, while string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.armLocked(after, while)
}

func (d *watchdog) armLocked(after time.Duration, while string) {
	d.while, d.after = while, after
	if d.timer == nil {
		d.timer = time.AfterFunc(after, d.fire)
	} else {
		d.timer.Reset(after)
	}
}

// armForRequest is arm for the request side, a no-op once answered:
// checked and done under one lock, so it cannot re-arm a timer the
// response has taken over.
func (d *watchdog) armForRequest(after time.Duration, while string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.done {
		d.armLocked(after, while)
	}
}

// disarmForRequest is disarm for the request side, a no-op once answered.
func (d *watchdog) disarmForRequest() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.done {
		d.disarmLocked()
	}
}

func (d *watchdog) disarm() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.disarmLocked()
}

func (d *watchdog) disarmLocked() {
	if d.timer != nil {
		d.timer.Stop()
	}
}

func (d *watchdog) answered() {
	d.mu.Lock()
	d.done = true
	d.mu.Unlock()
	d.disarm()
}

func (d *watchdog) fire() {
	d.mu.Lock()
	err := &StallError{While: d.while, After: d.after, retry: d.retry && d.while == awaiting}
	d.mu.Unlock()
	d.cancel(err)
}

// stalled is the StallError that cancelled the exchange, if that is what did.
func (d *watchdog) stalled() *StallError {
	var se *StallError
	if errors.As(context.Cause(d.ctx), &se) {
		return se
	}
	return nil
}

// sentBody is the request body as the transport reads it to send it: each
// read that returns means the peer took the previous one.
type sentBody struct {
	rc io.ReadCloser
	d  *watchdog
	t  Timeouts
}

func (b *sentBody) Read(p []byte) (int, error) {
	// A slow source of ours is not the peer's fault; once the response has
	// come (HTTP/2 may still send the body), the timer is the response
	// body's and the request side leaves it alone.
	b.d.disarmForRequest()
	n, err := b.rc.Read(p)
	if err != nil {
		// Sent (or failed): from now on, the answer is awaited.
		b.d.armForRequest(b.t.Header, awaiting)
	} else {
		b.d.armForRequest(b.t.Stall, sending)
	}
	return n, err
}

func (b *sentBody) Close() error { return b.rc.Close() }

// receivedBody is the response body: the watchdog runs while a Read waits
// on the peer, and a stall is reported naming the request, since a body
// read error reaches callers without the request it came from.
type receivedBody struct {
	rc    io.ReadCloser
	d     *watchdog
	stall time.Duration
	req   *http.Request
}

func (b *receivedBody) Read(p []byte) (int, error) {
	b.d.arm(b.stall, reading)
	n, err := b.rc.Read(p)
	b.d.disarm()
	if err != nil && err != io.EOF {
		if se := b.d.stalled(); se != nil {
			return n, &url.Error{Op: urlOp(b.req.Method), URL: redacted(b.req.URL), Err: se}
		}
	}
	return n, err
}

func (b *receivedBody) Close() error {
	b.d.disarm()
	err := b.rc.Close()
	b.d.cancel(nil)
	return err
}

// urlOp spells a method as net/http's url.Errors do ("Get", "Put").
func urlOp(method string) string {
	if method == "" {
		return "Get"
	}
	return method[:1] + strings.ToLower(method[1:])
}

func redacted(u *url.URL) string {
	if u == nil {
		return ""
	}
	return u.Redacted()
}
