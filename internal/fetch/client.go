package fetch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"strings"
	"sync"
	"time"
)

// Client is imagectl's one HTTP source: archive metadata (InRelease,
// Packages indexes) and .debs go through it, so they share its timeouts,
// retries and progress reporting. The zero value is ready to use.
type Client struct {
	// Timeouts bound connecting, the response header and any pause in a
	// body; their zero values are the defaults.
	Timeouts
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

func (c *Client) client() *http.Client {
	c.once.Do(func() { c.http = &http.Client{Transport: c.Timeouts.Transport()} })
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
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.client().Do(req)
	if err != nil {
		return 0, transientError{bare(err)}
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
	n, err := io.Copy(w, io.LimitReader(resp.Body, limit+1))
	if err != nil {
		var we writeError
		if errors.As(err, &we) {
			return n, we.err // a full disk is not the network's fault
		}
		return n, transientError{fmt.Errorf("interrupted after %d bytes: %w", n, bare(err))}
	}
	return n, nil
}

// bare drops net/http's "Get URL:" wrapping: every caller here names the
// URL itself.
func bare(err error) error {
	var ue *neturl.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
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
