package fetch

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// quietServer serves h, whose wait blocks until the test ends or the
// client goes away (a handler that has not read the body never learns
// that: the release comes before the server's Close waits for it).
func quietServer(t *testing.T, h func(w http.ResponseWriter, r *http.Request, wait func())) *httptest.Server {
	release := make(chan struct{})
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		h(w, r, func() {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		})
	})
	t.Cleanup(func() { close(release) })
	return srv
}

// within runs f and fails the test if it has not returned after limit:
// a transport without the bound would hang here.
func within(t *testing.T, limit time.Duration, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- f() }()
	select {
	case err := <-done:
		t.Logf("returned after %s: %v", time.Since(start).Round(time.Millisecond), err)
		return err
	case <-time.After(limit):
		t.Fatalf("still waiting after %s", limit)
		return nil
	}
}

var short = Timeouts{Connect: 300 * time.Millisecond, Header: 300 * time.Millisecond, Stall: 300 * time.Millisecond}

func TestTransportHeaderStall(t *testing.T) {
	srv := quietServer(t, func(w http.ResponseWriter, r *http.Request, wait func()) { wait() })
	c := &http.Client{Transport: short.Transport()}
	err := within(t, 10*time.Second, func() error {
		_, err := c.Get(srv.URL + "/v2/")
		return err
	})
	var se *StallError
	if !errors.As(err, &se) || se.While != awaiting || !strings.Contains(err.Error(), srv.URL+"/v2/") {
		t.Fatalf("err = %v, want a header stall naming the URL", err)
	}
	if !se.Temporary() {
		t.Error("a GET that got no header is not marked as worth resending")
	}
}

// TestTransportRequestBodyStall: a peer that takes part of an upload and
// then reads no more fails the upload; no ResponseHeaderTimeout would,
// since the request is never fully written.
func TestTransportRequestBodyStall(t *testing.T) {
	srv := quietServer(t, func(w http.ResponseWriter, r *http.Request, wait func()) {
		io.CopyN(io.Discard, r.Body, 64<<10)
		wait()
	})
	c := &http.Client{Transport: short.Transport()}
	body := bytes.Repeat([]byte("x"), 64<<20) // more than any socket buffers hold
	err := within(t, 20*time.Second, func() error {
		req, _ := http.NewRequest(http.MethodPut, srv.URL+"/upload", bytes.NewReader(body))
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	})
	var se *StallError
	if !errors.As(err, &se) || !errors.Is(err, ErrStalled) || !strings.Contains(err.Error(), "/upload") {
		t.Fatalf("err = %v, want a stall naming the URL", err)
	}
	if se.Temporary() {
		t.Error("a request whose body was consumed is marked as worth resending")
	}
}

func TestTransportResponseBodyStall(t *testing.T) {
	srv := quietServer(t, func(w http.ResponseWriter, r *http.Request, wait func()) {
		w.Header().Set("Content-Length", "1000000")
		w.Write(make([]byte, 4096))
		w.(http.Flusher).Flush()
		wait()
	})
	c := &http.Client{Transport: short.Transport()}
	resp, err := c.Get(srv.URL + "/blob")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var n int64
	err = within(t, 10*time.Second, func() error {
		var err error
		n, err = io.Copy(io.Discard, resp.Body)
		return err
	})
	if n != 4096 || !errors.Is(err, ErrStalled) || !strings.Contains(err.Error(), srv.URL+"/blob") || !strings.Contains(err.Error(), reading) {
		t.Fatalf("read %d bytes, err = %v; want 4096 and a body stall naming the URL", n, err)
	}
}

// TestTransportSlowButMoving: what is bounded is a pause, not the
// exchange: a body trickling slower than the stall bound in total but
// never pausing that long completes, and so does a caller that pauses
// between reads longer than the bound (only the peer is being timed).
func TestTransportSlowButMoving(t *testing.T) {
	const chunks = 12
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(chunks))
		for range chunks {
			w.Write([]byte("x"))
			w.(http.Flusher).Flush()
			time.Sleep(50 * time.Millisecond) // 600 ms in all, each pause a sixth of the bound
		}
	})
	c := &http.Client{Transport: short.Transport()}
	resp, err := c.Get(srv.URL + "/slow")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || len(b) != chunks {
		t.Fatalf("trickle: %d bytes, %v", len(b), err)
	}

	srv = serve(t, func(w http.ResponseWriter, r *http.Request) { w.Write(make([]byte, 3<<20)) })
	resp, err = c.Get(srv.URL + "/big")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got int
	buf := make([]byte, 64<<10)
	for range 3 {
		n, err := resp.Body.Read(buf)
		got += n
		if err != nil {
			t.Fatalf("slow reader: %v after %d bytes", err, got)
		}
		time.Sleep(2 * short.Stall)
	}
	rest, err := io.ReadAll(resp.Body)
	if err != nil || got+len(rest) != 3<<20 {
		t.Fatalf("slow reader: %d bytes, %v", got+len(rest), err)
	}
}
