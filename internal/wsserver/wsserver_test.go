package wsserver

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pulse-sidecar/pulse-sidecar/internal/testenv"
)

// tokenAuth admits requests carrying jwt_token=good: a stand-in for the
// auth package's Verifier, which has its own tests.
type tokenAuth struct{ calls atomic.Int32 }

func (a *tokenAuth) Check(r *http.Request, service string) error {
	a.calls.Add(1)
	if r.URL.Query().Get("jwt_token") == "good" && service == "test" {
		return nil
	}
	return errors.New("refused")
}

// echoSession writes every message back until the peer or the server ends
// the connection.
type echoSession struct{}

func (echoSession) Serve(c *Conn) {
	for {
		kind, msg, err := c.WS().ReadMessage()
		if err != nil {
			return
		}
		if c.Context().Err() != nil {
			continue
		}
		_ = c.WS().SetWriteDeadline(c.WriteDeadline())
		if err := c.WS().WriteMessage(kind, msg); err != nil {
			return
		}
	}
}

// floodSession writes as fast as the peer takes it.
type floodSession struct{}

func (floodSession) Serve(c *Conn) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, _, err := c.WS().NextReader(); err != nil {
				return
			}
		}
	}()
	buf := make([]byte, 16<<10)
	for c.Context().Err() == nil {
		_ = c.WS().SetWriteDeadline(c.WriteDeadline())
		if err := c.WS().WriteMessage(websocket.BinaryMessage, buf); err != nil {
			break
		}
	}
	<-done
}

func start(t *testing.T, cfg Config) (*Server, context.CancelFunc, func() error) {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	if cfg.Service == "" {
		cfg.Service = "test"
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	wait := sync.OnceValue(func() error {
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			return errors.New("Run did not return within 10 s")
		}
	})
	t.Cleanup(func() {
		cancel()
		if err := wait(); err != nil {
			t.Error(err)
		}
	})
	return s, cancel, wait
}

func status(t *testing.T, s *Server, query string, h http.Header) (int, http.Header) {
	t.Helper()
	c, resp, err := websocket.DefaultDialer.Dial("ws://"+s.Addr().String()+"/?"+query, h)
	if err == nil {
		c.Close()
		return http.StatusSwitchingProtocols, resp.Header
	}
	if resp == nil {
		t.Fatalf("dial: %v", err)
	}
	return resp.StatusCode, resp.Header
}

// Limits, then origin, then authentication, then the request's own
// parameters: a later check never runs for a request an earlier one refused.
func TestAdmissionOrder(t *testing.T) {
	auth := &tokenAuth{}
	var admitted atomic.Int32
	s, _, _ := start(t, Config{
		AllowedOrigins: []string{"https://desktop.example"},
		Auth:           auth,
		Admit: func(r *http.Request) (Session, error) {
			admitted.Add(1)
			if r.URL.Query().Get("rate") == "bad" {
				return nil, &Refusal{Text: "rate: bad"}
			}
			return echoSession{}, nil
		},
	})
	foreign := http.Header{"Origin": {"https://evil.example"}}
	if got, _ := status(t, s, "jwt_token=good", foreign); got != http.StatusForbidden {
		t.Errorf("foreign origin: %d, want 403", got)
	}
	if auth.calls.Load() != 0 || admitted.Load() != 0 {
		t.Errorf("origin refused, yet auth ran %d and Admit %d times", auth.calls.Load(), admitted.Load())
	}
	got, h := status(t, s, "jwt_token=bad&rate=bad", nil)
	if got != http.StatusUnauthorized || h.Get("WWW-Authenticate") != "Bearer" {
		t.Errorf("bad token: %d %q, want 401 with WWW-Authenticate: Bearer", got, h.Get("WWW-Authenticate"))
	}
	if admitted.Load() != 0 {
		t.Errorf("authentication refused, yet Admit ran")
	}
	if got, _ := status(t, s, "jwt_token=good&rate=bad", nil); got != http.StatusBadRequest {
		t.Errorf("bad parameter: %d, want 400", got)
	}
	if got, _ := status(t, s, "jwt_token=good", http.Header{"Origin": {"https://desktop.example"}}); got != http.StatusSwitchingProtocols {
		t.Errorf("admissible request: %d, want 101", got)
	}
}

func TestMaxSessions(t *testing.T) {
	s, _, _ := start(t, Config{MaxSessions: 1, Admit: func(*http.Request) (Session, error) { return echoSession{}, nil }})
	c, _, err := websocket.DefaultDialer.Dial("ws://"+s.Addr().String()+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	got, h := status(t, s, "", nil)
	if got != http.StatusServiceUnavailable || h.Get("Retry-After") == "" {
		t.Errorf("second session: %d, Retry-After %q; want 503 with Retry-After", got, h.Get("Retry-After"))
	}
	c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if got, _ := status(t, s, "", nil); got == http.StatusSwitchingProtocols {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no session admitted after the first left")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A peer that stops reading blocks the session's writer on a full send
// buffer; stopping the server still takes well under a second.
func TestShutdownWithStalledPeers(t *testing.T) {
	s, cancel, done := start(t, Config{SendBuffer: 4096, Admit: func(*http.Request) (Session, error) { return floodSession{}, nil }})
	d := websocket.Dialer{NetDial: func(network, addr string) (net.Conn, error) {
		nd := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
			return c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		}}
		return nd.Dial(network, addr)
	}}
	for range 3 {
		c, _, err := d.Dial("ws://"+s.Addr().String()+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	time.Sleep(500 * time.Millisecond) // the writers fill the buffers and block
	stopped := time.Now()
	cancel()
	if err := done(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	took := time.Since(stopped)
	t.Logf("stopped in %v with 3 stalled peers", took)
	if took > 2*time.Second {
		t.Errorf("stopping took %v with stalled peers, want well under 1 s", took)
	}
}

// Close from another goroutine ends a session whose writer is blocked.
func TestCloseUnblocksWriter(t *testing.T) {
	conns := make(chan *Conn, 1)
	ended := make(chan time.Time, 1)
	s, _, _ := start(t, Config{SendBuffer: 4096, Admit: func(*http.Request) (Session, error) {
		return sessionFunc(func(c *Conn) {
			conns <- c
			floodSession{}.Serve(c)
			ended <- time.Now()
		}), nil
	}})
	c, _, err := websocket.DefaultDialer.Dial("ws://"+s.Addr().String()+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	conn := <-conns
	time.Sleep(500 * time.Millisecond)
	closed := time.Now()
	conn.Close(4002, "too slow")
	select {
	case at := <-ended:
		t.Logf("session ended %v after Close", at.Sub(closed))
		if at.Sub(closed) > 3*time.Second {
			t.Errorf("session ended %v after Close, want about 1 s at most", at.Sub(closed))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("session still running 10 s after Close")
	}
}

type sessionFunc func(*Conn)

func (f sessionFunc) Serve(c *Conn) { f(c) }

func TestPlainRequestsAndSilentConnections(t *testing.T) {
	cfg := Config{Addr: "127.0.0.1:0", Service: "test", Admit: func(*http.Request) (Session, error) { return echoSession{}, nil }}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	testenv.StopsDespiteSilentConnection(t, s.Addr().String(), s.Run)
}

func TestNewRejectsBadConfig(t *testing.T) {
	admit := func(*http.Request) (Session, error) { return nil, nil }
	for name, cfg := range map[string]Config{
		"no address":       {Service: "x", Admit: admit},
		"no service":       {Addr: "127.0.0.1:0", Admit: admit},
		"no admit":         {Addr: "127.0.0.1:0", Service: "x"},
		"pong before ping": {Addr: "127.0.0.1:0", Service: "x", Admit: admit, PingInterval: time.Second, PongWait: time.Second},
		"origin with path": {Addr: "127.0.0.1:0", Service: "x", Admit: admit, AllowedOrigins: []string{"https://x.example/sound"}},
		"negative limit":   {Addr: "127.0.0.1:0", Service: "x", Admit: admit, MaxConnections: -1},
	} {
		if s, err := New(cfg); err == nil {
			s.Close()
			t.Errorf("%s: New succeeded", name)
		}
	}
}
