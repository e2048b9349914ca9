package wsserver

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"

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

// logLines collects a JSON slog handler's lines.
type logLines struct {
	mu    sync.Mutex
	lines []map[string]any
	raw   []string
}

func (l *logLines) Write(b []byte) (int, error) {
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return 0, err
	}
	l.mu.Lock()
	l.lines = append(l.lines, m)
	l.raw = append(l.raw, string(b))
	l.mu.Unlock()
	return len(b), nil
}

func (l *logLines) logger() *slog.Logger { return slog.New(slog.NewJSONHandler(l, nil)) }

// byReason sums, per reason, the refusals logged one a line and those
// summed up in summary lines, and counts the lines.
func (l *logLines) byReason() (accounted map[string]int, lines int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	accounted = map[string]int{}
	for _, m := range l.lines {
		reason, _ := m["reason"].(string)
		switch msg, _ := m["msg"].(string); {
		case msg == "websocket refused":
			accounted[reason]++
		case strings.Contains(msg, "more refusals"):
			n, _ := m["count"].(float64)
			accounted[reason] += int(n)
		default:
			continue
		}
		lines++
	}
	return accounted, lines
}

func refusedCount(s *Server, reason string) int {
	return int(testutil.ToFloat64(s.m.refused.WithLabelValues(reason)))
}

// A flood of refused handshakes (403, 401, 400) writes a bounded number of
// lines: a few per reason, then one summary per reason and window, which
// together account for every refusal; the counter counts them all. The
// first line of each reason is the refusal itself: reason, peer, never the
// token.
func TestRefusalFloodLogsBounded(t *testing.T) {
	logs := &logLines{}
	s, cancel, wait := start(t, Config{
		AllowedOrigins: []string{"https://desktop.example"},
		Auth:           &tokenAuth{},
		Admit: func(r *http.Request) (Session, error) {
			if r.URL.Query().Get("rate") == "bad" {
				return nil, &Refusal{Text: "rate: bad"}
			}
			return echoSession{}, nil
		},
		Log: logs.logger(),
	})
	const token = "eyJhbGciOiJFZERTQSJ9.c2VjcmV0LXBheWxvYWQ.c2lnbmF0dXJlLW5vdC10by1sb2c"
	kinds := []struct {
		reason, query string
		header        http.Header
		want          int
	}{
		{ReasonOrigin, "jwt_token=good", http.Header{"Origin": {"https://evil.example"}}, http.StatusForbidden},
		{ReasonAuth, "jwt_token=" + token, nil, http.StatusUnauthorized},
		{ReasonParams, "jwt_token=good&rate=bad", nil, http.StatusBadRequest},
	}
	const each = 200
	began := time.Now()
	var wg sync.WaitGroup
	for _, k := range kinds {
		for range 2 {
			wg.Go(func() {
				for range each / 2 {
					_, resp, err := websocket.DefaultDialer.Dial("ws://"+s.Addr().String()+"/?"+k.query, k.header)
					if err == nil || resp == nil || resp.StatusCode != k.want {
						t.Errorf("%s: %v %v, want %d", k.reason, resp, err, k.want)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	took := time.Since(began)
	cancel()
	if err := wait(); err != nil {
		t.Fatal(err)
	}

	accounted, lines := logs.byReason()
	// Per reason and started window: the burst and one summary.
	windows := int(took/refusalWindow) + 1
	bound := len(kinds) * (refusalBurst + 1) * windows
	t.Logf("%d refusals in %v: %d log lines (bound %d)", len(kinds)*each, took, lines, bound)
	if lines > bound {
		t.Errorf("%d refusal lines for %d refusals, want at most %d", lines, len(kinds)*each, bound)
	}
	for _, k := range kinds {
		if got := refusedCount(s, k.reason); got != each {
			t.Errorf("refused_total{reason=%q} = %d, want %d", k.reason, got, each)
		}
		if accounted[k.reason] != each {
			t.Errorf("%s: lines and summaries account for %d refusals, want %d", k.reason, accounted[k.reason], each)
		}
	}
	logs.mu.Lock()
	defer logs.mu.Unlock()
	first := map[string]map[string]any{}
	for i, m := range logs.lines {
		if strings.Contains(logs.raw[i], token) || strings.Contains(logs.raw[i], "c2lnbmF0dXJlLW5vdC10by1sb2c") {
			t.Errorf("the token was logged: %s", logs.raw[i])
		}
		if r, _ := m["reason"].(string); m["msg"] == "websocket refused" && first[r] == nil {
			first[r] = m
		}
	}
	for _, k := range kinds {
		m := first[k.reason]
		if m == nil {
			t.Errorf("%s: no refusal line", k.reason)
			continue
		}
		if peer, _ := m["peer"].(string); !strings.HasPrefix(peer, "127.0.0.1:") || m["status"] != float64(k.want) {
			t.Errorf("%s: first line %v, want the peer and status %d", k.reason, m, k.want)
		}
	}
}

// Connections over MaxConnections are accepted and closed; each is counted,
// and logged within the same bound.
func TestConnectionFloodLogsBounded(t *testing.T) {
	logs := &logLines{}
	s, cancel, wait := start(t, Config{
		MaxConnections: 1, HandshakeTimeout: time.Minute,
		Admit: func(*http.Request) (Session, error) { return echoSession{}, nil },
		Log:   logs.logger(),
	})
	// Holds the one slot: it never sends its request.
	hold, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	const flood = 300
	began := time.Now()
	for range flood {
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	deadline := time.Now().Add(20 * time.Second)
	for refusedCount(s, ReasonConnections) < flood && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(began)
	cancel()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if got := refusedCount(s, ReasonConnections); got != flood {
		t.Errorf("refused_total{reason=connections} = %d, want %d", got, flood)
	}
	accounted, lines := logs.byReason()
	bound := (refusalBurst + 1) * (int(took/refusalWindow) + 1)
	t.Logf("%d refused connections in %v: %d log lines (bound %d)", flood, took, lines, bound)
	if lines > bound || accounted[ReasonConnections] != flood {
		t.Errorf("%d lines accounting for %d refused connections, want at most %d lines for all %d", lines, accounted[ReasonConnections], bound, flood)
	}
}

// The summary comes when the window ends, without waiting for another
// refusal, and the next window logs again.
func TestRefusalLogWindow(t *testing.T) {
	logs := &logLines{}
	l := newRefusalLog(logs.logger())
	// A window long enough that a loaded machine does not end it between
	// the refusals and the first look.
	l.burst, l.window = 2, time.Second
	for i := range 10 {
		l.refused("x", slog.LevelInfo, "websocket refused", "reason", "x", "i", i)
	}
	if _, lines := logs.byReason(); lines != 2 {
		t.Errorf("%d lines right after 10 refusals, want the burst of 2", lines)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if accounted, lines := logs.byReason(); lines == 3 && accounted["x"] == 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no summary within 5 s of a 1 s window: %v", logs.raw)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if msg := logs.lines[2]["msg"].(string); !strings.HasPrefix(msg, "8 more refusals (x) in the last ") {
		t.Errorf("summary %q", msg)
	}
	l.refused("x", slog.LevelInfo, "websocket refused", "reason", "x")
	l.stop()
	if accounted, lines := logs.byReason(); lines != 4 || accounted["x"] != 11 {
		t.Errorf("next window: %d lines for %d refusals, want the refusal itself logged", lines, accounted["x"])
	}
}
