package fetch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Client is imagectl's one HTTP source: archive metadata (InRelease,
// Packages indexes) and .debs go through it, so they share its timeouts,
// retries and progress reporting. The zero value is ready to use.
//
// There is no overall deadline: a large .deb on a slow link may take long,
// and that is fine while bytes arrive. What is bounded is every wait:
// connecting, the response header, and any pause in the body.
type Client struct {
	// ConnectTimeout bounds the TCP and TLS handshakes; 30s when zero.
	ConnectTimeout time.Duration
	// HeaderTimeout bounds the wait for the response header after the
	// request is sent (a server that accepts and never answers); 60s when zero.
	HeaderTimeout time.Duration
	// StallTimeout abandons a response whose body delivers nothing for
	// this long; 60s when zero.
	StallTimeout time.Duration
	// Attempts per URL for transient failures (network errors, timeouts,
	// 5xx, 429, truncated bodies); 4 when zero.
	Attempts int
	// Backoff is the delay before the first retry, doubled each time; 1s when zero.
	Backoff time.Duration

	once sync.Once
	http *http.Client
}

// ErrNotFound is a 404 or 410: the one answer where retrying is useless
// and trying another URL (or another form of an index) makes sense.
var ErrNotFound = errors.New("404 not found")

// errStalled is the cancellation cause of a request whose peer went quiet.
var errStalled = errors.New("stalled")

func dflt(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func (c *Client) client() *http.Client {
	c.once.Do(func() {
		connect := dflt(c.ConnectTimeout, 30*time.Second)
		c.http = &http.Client{Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: connect, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   connect,
			ResponseHeaderTimeout: dflt(c.HeaderTimeout, 60*time.Second),
			ForceAttemptHTTP2:     true,
			MaxIdleConnsPerHost:   8,
			IdleConnTimeout:       90 * time.Second,
		}}
	})
	return c.http
}

// transientError marks failures worth retrying at the same URL.
type transientError struct{ err error }

func (e transientError) Error() string { return e.err.Error() }
func (e transientError) Unwrap() error { return e.err }

// retry runs one attempt function until it succeeds, fails for good, or
// the attempts are used up. undo is told the bytes a failed attempt had
// counted, so progress does not run past 100% on retries.
func (c *Client) retry(ctx context.Context, attempt func() (int64, error), undo func(int64)) error {
	attempts := c.Attempts
	if attempts <= 0 {
		attempts = 4
	}
	delay := dflt(c.Backoff, time.Second)
	for i := 1; ; i++ {
		n, err := attempt()
		if err == nil {
			return nil
		}
		undo(n)
		var te transientError
		if !errors.As(err, &te) || i >= attempts || ctx.Err() != nil {
			return err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		delay *= 2
	}
}

// get performs one GET of url and copies at most limit+1 bytes of the
// body to w, so callers can tell "too large" apart. It returns the bytes
// copied. Failures that may pass are wrapped in transientError.
func (c *Client) get(ctx context.Context, url string, w io.Writer, limit int64) (int64, error) {
	stall := dflt(c.StallTimeout, 60*time.Second)
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// The watchdog runs from the start: it also catches a peer that
	// stalls between connecting and sending the header.
	watchdog := time.AfterFunc(stall, func() { cancel(errStalled) })
	defer watchdog.Stop()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.client().Do(req)
	if err != nil {
		return 0, transientError{c.why(rctx, err)}
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		return 0, ErrNotFound
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout:
		return 0, transientError{fmt.Errorf("HTTP %s", resp.Status)}
	default:
		return 0, fmt.Errorf("HTTP %s", resp.Status)
	}
	watchdog.Reset(stall)
	body := &stallReader{r: resp.Body, watchdog: watchdog, stall: stall}
	n, err := io.Copy(w, io.LimitReader(body, limit+1))
	if err != nil {
		var we writeError
		if errors.As(err, &we) {
			return n, we.err // a full disk is not the network's fault
		}
		return n, transientError{fmt.Errorf("interrupted after %d bytes: %w", n, c.why(rctx, err))}
	}
	return n, nil
}

// why names a stall instead of the bare "context canceled" it causes.
func (c *Client) why(ctx context.Context, err error) error {
	if errors.Is(context.Cause(ctx), errStalled) {
		return fmt.Errorf("no data for %s: %w", dflt(c.StallTimeout, 60*time.Second), errStalled)
	}
	return err
}

// stallReader pushes the watchdog back whenever bytes arrive.
type stallReader struct {
	r        io.Reader
	watchdog *time.Timer
	stall    time.Duration
}

func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		s.watchdog.Reset(s.stall)
	}
	return n, err
}

// writeError marks a failure of the destination, which retrying the
// download does not cure.
type writeError struct{ err error }

func (e writeError) Error() string { return e.err.Error() }

type markWrites struct{ w io.Writer }

func (m markWrites) Write(p []byte) (int, error) {
	n, err := m.w.Write(p)
	if err != nil {
		return n, writeError{err}
	}
	return n, nil
}

// Get reads an unpinned URL (an InRelease, whose signature is checked
// next) of at most limit bytes, with retries.
func (c *Client) Get(ctx context.Context, url string, limit int64) ([]byte, error) {
	var buf bytes.Buffer
	err := c.retry(ctx, func() (int64, error) {
		buf.Reset()
		return c.get(ctx, url, markWrites{&buf}, limit)
	}, func(int64) {})
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if int64(buf.Len()) > limit {
		return nil, fmt.Errorf("GET %s: larger than %d bytes", url, limit)
	}
	return buf.Bytes(), nil
}

// Bytes fetches a pinned item into memory, trying its URLs in order, and
// returns its bytes only once size and sha256 match. Progress (which may
// be nil) is told the bytes as they arrive; Start, Done and Finish are the
// caller's. When every URL answers 404 the error wraps ErrNotFound.
func (c *Client) Bytes(ctx context.Context, it Item, progress Progress) ([]byte, error) {
	if progress == nil {
		progress = nopProgress{}
	}
	var failures []string
	notFound := 0
	for _, u := range it.URLs {
		var buf bytes.Buffer
		err := c.retry(ctx, func() (int64, error) {
			buf.Reset()
			counted := &counter{progress: progress}
			n, err := c.get(ctx, u, io.MultiWriter(markWrites{&buf}, counted), it.Size)
			if err == nil && n < it.Size {
				err = transientError{fmt.Errorf("truncated: got %d of %d bytes", n, it.Size)}
			}
			return counted.n, err
		}, func(n int64) { progress.Add(-n) })
		if err == nil {
			err = checkBytes(it, buf.Bytes())
		}
		if err == nil {
			return buf.Bytes(), nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, ErrNotFound) {
			notFound++
		}
		failures = append(failures, u+": "+err.Error())
	}
	if len(it.URLs) == 0 {
		return nil, fmt.Errorf("%s: no URL to fetch it from", it.Name)
	}
	err := fmt.Errorf("%s: %s", it.Name, strings.Join(failures, "; "))
	if notFound == len(it.URLs) {
		return nil, fmt.Errorf("%w (%w)", err, ErrNotFound)
	}
	return nil, err
}

func checkBytes(it Item, b []byte) error {
	if int64(len(b)) != it.Size {
		return fmt.Errorf("%d bytes, pinned %d", len(b), it.Size)
	}
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); !strings.EqualFold(got, it.SHA256) {
		return fmt.Errorf("sha256 mismatch: got %s, pinned %s", got, it.SHA256)
	}
	return nil
}
