package fetch

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestFetchBodyStallIsRetried: a server that sends the header and part of
// the body, then goes quiet, is abandoned after the stall timeout and the
// download retried; a second stall-free answer completes it.
func TestFetchBodyStallIsRetried(t *testing.T) {
	var hits atomic.Int32
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		b := content(strings.TrimPrefix(r.URL.Path, "/"))
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		if hits.Add(1) == 1 {
			w.Write(b[:100])
			w.(http.Flusher).Flush()
			select { // quiet until the test ends
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		w.Write(b)
	})
	f := newFetcher(t)
	f.Client.Stall = 200 * time.Millisecond
	it := itemFor("a", srv.URL+"/a")
	start := time.Now()
	if _, err := f.Fetch(context.Background(), []Item{it}); err != nil {
		t.Fatal(err)
	}
	if hits.Load() != 2 {
		t.Errorf("%d requests, want 2", hits.Load())
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("took %s", took)
	}
}

// TestClientBytesStalls: the in-memory fetch used for archive indexes
// shares the timeouts, and says what happened.
func TestClientBytesStalls(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	c := &Client{Timeouts: Timeouts{Header: 100 * time.Millisecond, Stall: 100 * time.Millisecond}, Attempts: 2, Backoff: time.Millisecond}
	_, err := c.Bytes(context.Background(), itemFor("idx", srv.URL+"/idx"), nil)
	if err == nil || !strings.Contains(err.Error(), "no progress for 100ms awaiting the response header") {
		t.Fatalf("err = %v", err)
	}
	t.Log(err)
}

func TestClientBytesChecksAndFallsBack(t *testing.T) {
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/gone":
			http.NotFound(w, r)
		case "/wrong":
			w.Write(content("other"))
		default:
			w.Write(content("a"))
		}
	})
	c := &Client{Attempts: 1}
	it := itemFor("a", srv.URL+"/gone", srv.URL+"/a")
	b, err := c.Bytes(context.Background(), it, nil)
	if err != nil || string(b) != string(content("a")) {
		t.Fatalf("fallback: %v", err)
	}
	if _, err := c.Bytes(context.Background(), itemFor("a", srv.URL+"/gone"), nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("all 404: %v", err)
	}
	if _, err := c.Bytes(context.Background(), itemFor("a", srv.URL+"/wrong"), nil); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("wrong bytes: %v", err)
	}
}
