package testenv

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"
)

// StopsDespiteSilentConnection runs a server's Run, opens a TCP connection
// that never sends a request (a port scanner, a browser's preconnect, a
// proxy's pooled connection), cancels, and fails the test unless Run
// returns nil promptly. http.Server.Shutdown alone waits up to 5 s for such
// a connection, past what a container runtime grants the whole daemon.
func StopsDespiteSilentConnection(t testing.TB, addr string, run func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()

	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	// The server accepts in order: once a later request is answered (any
	// status), the silent connection is accepted and tracked by it.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
	resp, err := client.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	cancel()
	stopped := time.Now()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30 s of cancel")
	}
	// Correctness, not speed: waiting out the silent connection took 5 s.
	if d := time.Since(stopped); d > 2*time.Second {
		t.Errorf("Run took %v to return after cancel: it waited for a connection that never sent a request", d)
	}
}
