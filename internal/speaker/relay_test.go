package speaker

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pulse-sidecar/pulse-sidecar/internal/fifo"
	"github.com/pulse-sidecar/pulse-sidecar/internal/testenv"
	"github.com/pulse-sidecar/pulse-sidecar/internal/wsserver"
)

// testLog sends the relay's log to the test's log.
func testLog(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// startRelay runs a relay on 127.0.0.1:0 until the test ends, and checks
// that it then shuts down cleanly and removes the FIFO it created.
func startRelay(t *testing.T, cfg Config) *Relay {
	t.Helper()
	if cfg.Server.Addr == "" {
		cfg.Server.Addr = "127.0.0.1:0"
	}
	if cfg.FIFO == "" {
		cfg.FIFO = filepath.Join(t.TempDir(), "speaker")
	}
	if cfg.Log == nil {
		cfg.Log = testLog(t)
	}
	ready := make(chan struct{})
	var once atomic.Bool
	cfg.Ready = func(ok bool) {
		if ok && once.CompareAndSwap(false, true) {
			close(ready)
		}
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("relay did not stop within 30 s")
		}
		if _, err := os.Lstat(cfg.FIFO); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("FIFO %s left behind: %v", cfg.FIFO, err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Run returned before serving: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("relay not ready within 30 s")
	}
	return r
}

func dial(t *testing.T, r *Relay, header http.Header) *websocket.Conn {
	t.Helper()
	conn, resp, err := websocket.DefaultDialer.Dial("ws://"+r.Addr().String()+"/sound?jwt_token=abc", header)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial: %v (HTTP %d)", err, status)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// writeTS writes numbered packets into the FIFO in pieces that ignore packet
// boundaries, as ffmpeg does, until ctx ends.
func writeTS(ctx context.Context, t *testing.T, path string) <-chan struct{} {
	t.Helper()
	w, err := fifo.OpenWriteBlocking(path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer w.Close()
		rng := rand.New(rand.NewPCG(1, 2))
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		var pending []byte
		for seq := 0; ; seq += 5 {
			pending = append(pending, tsPackets(rng, seq, 5)...)
			n := min(len(pending), 1+rng.IntN(len(pending)))
			if _, err := w.Write(pending[:n]); err != nil {
				return
			}
			pending = pending[n:]
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return done
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRelayStreamsFIFO(t *testing.T) {
	reg := prometheus.NewRegistry()
	r := startRelay(t, Config{Registerer: reg})
	ctx, cancel := context.WithCancel(context.Background())
	writerDone := writeTS(ctx, t, r.cfg.FIFO)
	defer func() { cancel(); <-writerDone }()

	// Several listeners joining while the stream runs: each must start on a
	// packet boundary and see packets in order.
	for range 3 {
		conn := dial(t, r, nil)
		last := -1
		for got := 0; got < 200*PacketSize; {
			if err := conn.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
				t.Fatal(err)
			}
			typ, msg, err := conn.ReadMessage()
			if err != nil {
				t.Fatal(err)
			}
			if typ != websocket.BinaryMessage {
				t.Fatalf("message type %d, want binary", typ)
			}
			checkWhole(t, msg)
			for _, n := range numbers(msg) {
				if int(n) <= last {
					t.Fatalf("packet %d after %d", n, last)
				}
				last = int(n)
			}
			got += len(msg)
		}
		conn.Close()
	}
	waitFor(t, "listeners to leave", func() bool { return r.hub.len() == 0 })
	if v := testutil.ToFloat64(r.m.bytesOut); v < 3*200*PacketSize {
		t.Errorf("bytes_out_total %v, want at least %d", v, 3*200*PacketSize)
	}
	if v := testutil.ToFloat64(r.m.packetsIn); v < 600 {
		t.Errorf("packets_in_total %v, want at least 600", v)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n < 9 {
		t.Errorf("registry holds %d metrics (%v), want the relay's 9", n, err)
	}
}

func TestRelayOrigin(t *testing.T) {
	r := startRelay(t, Config{Server: wsserver.Config{AllowedOrigins: []string{"https://desktop.test"}}})
	url := "ws://" + r.Addr().String() + "/"
	_, resp, err := websocket.DefaultDialer.Dial(url, http.Header{"Origin": {"https://evil.test"}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("foreign origin: err %v, HTTP %d, want 403", err, status)
	}
	dial(t, r, http.Header{"Origin": {"https://Desktop.test"}})
	dial(t, r, nil) // not a browser
}

func TestRelayPingPong(t *testing.T) {
	// Many pings, each with ample time for its pong on a loaded machine.
	r := startRelay(t, Config{Server: wsserver.Config{PingInterval: 100 * time.Millisecond, PongWait: 2 * time.Second}})

	// A client that reads answers pings (gorilla's default ping handler)
	// and stays connected well past the pong wait.
	conn := dial(t, r, nil)
	var pings atomic.Int32
	conn.SetPingHandler(func(data string) error {
		pings.Add(1)
		return conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	readErr := make(chan error, 1)
	go func() {
		for {
			if _, _, err := conn.ReadMessage(); err != nil {
				readErr <- err
				return
			}
		}
	}()
	waitFor(t, "30 pings", func() bool { return pings.Load() >= 30 })
	select {
	case err := <-readErr:
		t.Fatalf("answering client was dropped: %v", err)
	default:
	}
	if r.hub.len() != 1 {
		t.Fatalf("%d listeners, want 1", r.hub.len())
	}

	// A client that never reads never answers, and is dropped.
	dial(t, r, nil)
	waitFor(t, "the silent listener to be dropped", func() bool { return r.hub.len() == 1 })
	conn.Close()
	<-readErr
}

func TestRelayShutdownClosesListeners(t *testing.T) {
	cfg := Config{Server: wsserver.Config{Addr: "127.0.0.1:0"}, FIFO: filepath.Join(t.TempDir(), "speaker"), Log: testLog(t)}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var conn *websocket.Conn
	waitFor(t, "the relay to accept", func() bool {
		c, _, err := websocket.DefaultDialer.Dial("ws://"+r.Addr().String()+"/", nil)
		conn = c
		return err == nil
	})
	defer conn.Close()
	waitFor(t, "the listener to join", func() bool { return r.hub.len() == 1 })
	cancel()
	if err := conn.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	_, _, err = conn.ReadMessage()
	if !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Errorf("listener got %v, want a going-away close", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := os.Lstat(cfg.FIFO); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("FIFO left behind: %v", err)
	}
}

func TestRelayShutdownIgnoresSilentConnections(t *testing.T) {
	cfg := Config{Server: wsserver.Config{Addr: "127.0.0.1:0"}, FIFO: filepath.Join(t.TempDir(), "speaker"), Log: testLog(t)}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	testenv.StopsDespiteSilentConnection(t, r.Addr().String(), r.Run)
}

func TestRelayRemovesItsFIFOEvenIfItPreexisted(t *testing.T) {
	// What a hard exit leaves behind: the relay owns the path, so it takes
	// the FIFO over and removes it, or it would be "pre-existing" forever.
	path := filepath.Join(t.TempDir(), "speaker")
	if err := fifo.Make(path, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := New(Config{Server: wsserver.Config{Addr: "127.0.0.1:0"}, FIFO: path})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("pre-existing FIFO left behind: %v", err)
	}
}

func TestRelayRefusesRegularFileAsFIFO(t *testing.T) {
	path := filepath.Join(t.TempDir(), "speaker")
	if err := os.WriteFile(path, []byte("not a pipe"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := New(Config{Server: wsserver.Config{Addr: "127.0.0.1:0"}, FIFO: path})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := r.Run(ctx); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Run with a regular file at the FIFO path: %v, want an error naming %s", err, path)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "not a pipe" {
		t.Fatalf("regular file at the FIFO path was touched: %q, %v", b, err)
	}
}

func TestNewPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = New(Config{Server: wsserver.Config{Addr: ln.Addr().String()}, FIFO: filepath.Join(t.TempDir(), "speaker")})
	if err == nil || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Fatalf("New on a busy port: %v, want an error naming %s", err, ln.Addr())
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no addr", Config{FIFO: "/x"}, "listen address"},
		{"no fifo", Config{Server: wsserver.Config{Addr: "127.0.0.1:0"}}, "FIFO"},
		{"encoder without reaper", Config{Server: wsserver.Config{Addr: "127.0.0.1:0"}, FIFO: "/x", FFmpeg: "/usr/bin/ffmpeg"}, "Reaper"},
		{"pong before ping", Config{Server: wsserver.Config{Addr: "127.0.0.1:0", PingInterval: time.Second, PongWait: time.Second}, FIFO: "/x"}, "pong wait"},
		{"negative max behind", Config{Server: wsserver.Config{Addr: "127.0.0.1:0"}, FIFO: "/x", MaxBehind: -time.Second}, "max behind"},
		{"negative linger", Config{Server: wsserver.Config{Addr: "127.0.0.1:0"}, FIFO: "/x", Linger: -time.Second}, "linger"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

// BenchmarkRelayFanOut measures the whole path for one chunk of three
// packets (what ffmpeg writes every ~26 ms): FIFO read, packetizer, hub, and
// a websocket write to every listener on loopback.
func BenchmarkRelayFanOut(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("listeners=%d", n), func(b *testing.B) {
			r, err := New(Config{
				Server:    wsserver.Config{Addr: "127.0.0.1:0"},
				FIFO:      filepath.Join(b.TempDir(), "speaker"),
				MaxBehind: time.Hour, // measure delivery, not skipping
				// Above the default of 64, as a benchmark passes it.
				MaxListeners: n,
			})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx) }()
			defer func() { cancel(); <-done }()

			var received atomic.Int64
			var readers sync.WaitGroup
			defer readers.Wait()
			for range n {
				var conn *websocket.Conn
				for i := 0; conn == nil; i++ {
					conn, _, err = websocket.DefaultDialer.Dial("ws://"+r.Addr().String()+"/", nil)
					if err != nil && i > 100 {
						b.Fatal(err)
					}
					if conn == nil {
						time.Sleep(10 * time.Millisecond)
					}
				}
				defer conn.Close()
				readers.Go(func() {
					for {
						_, msg, err := conn.ReadMessage()
						if err != nil {
							return
						}
						received.Add(int64(len(msg)))
					}
				})
			}
			for r.hub.len() < n {
				time.Sleep(time.Millisecond)
			}
			w, err := fifo.OpenWriteBlocking(r.cfg.FIFO)
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			chunk := tsPackets(rand.New(rand.NewPCG(1, 1)), 0, 3)
			b.SetBytes(int64(len(chunk) * n))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := w.Write(chunk); err != nil {
					b.Fatal(err)
				}
			}
			want := int64(b.N * len(chunk) * n)
			deadline := time.Now().Add(time.Minute)
			for received.Load() < want && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			b.StopTimer()
			if got := received.Load(); got < want {
				b.Fatalf("listeners received %d of %d bytes", got, want)
			}
		})
	}
}

// A wakeup whose chunks an earlier take already got finds an empty queue;
// it must not turn into an empty websocket message.
func TestRelayNeverSendsEmptyMessages(t *testing.T) {
	r := startRelay(t, Config{})
	conn := dial(t, r, nil)
	waitFor(t, "the listener to join", func() bool { return r.hub.len() == 1 })
	r.hub.mu.Lock()
	l := r.hub.listeners[0]
	r.hub.mu.Unlock()
	l.ready <- struct{}{}
	_ = conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if _, msg, err := conn.ReadMessage(); err == nil {
		t.Fatalf("got a %d-byte message with nothing queued", len(msg))
	}
}

func TestQueueBytesFollowsMaxBehind(t *testing.T) {
	for _, tc := range []struct {
		behind time.Duration
		want   int
	}{
		{500 * time.Millisecond, 207_000/16 - 2*sendBuffer},
		{time.Second, 207_000/8 - 2*sendBuffer},
		{10 * time.Millisecond, 4 * PacketSize}, // less than the send buffer: a few packets
	} {
		if got := queueBytes(tc.behind); got != tc.want {
			t.Errorf("queueBytes(%v) = %d, want %d", tc.behind, got, tc.want)
		}
	}
}

// A listener that stopped reading is dropped by the hub after
// SlowCloseAfter, and its connection really goes: the writer blocked on the
// full socket gives up, nothing of it is left running.
func TestRelayDropsStalledListener(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := Config{
		FIFO:           filepath.Join(t.TempDir(), "speaker"),
		MaxBehind:      100 * time.Millisecond,
		SlowCloseAfter: 500 * time.Millisecond,
		Registerer:     reg,
		Server:         wsserver.Config{PingInterval: time.Minute}, // no pong timeout in the way
	}
	r := startRelay(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := writeTS(ctx, t, r.cfg.FIFO)
	defer func() { cancel(); <-done }()

	d := websocket.Dialer{NetDial: func(network, addr string) (net.Conn, error) {
		c, err := net.Dial(network, addr)
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetReadBuffer(4096)
		}
		return c, err
	}}
	conn, _, err := d.Dial("ws://"+r.Addr().String()+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	waitFor(t, "the stalled listener to be dropped", func() bool { return testutil.ToFloat64(r.m.slowClosed) == 1 })
	dropped := time.Now()
	waitFor(t, "its connection to be closed", func() bool {
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() == "pulse_sidecar_speaker_connections" {
				return mf.GetMetric()[0].GetGauge().GetValue() == 0
			}
		}
		return false
	})
	took := time.Since(dropped)
	t.Logf("connection closed %v after the hub dropped the listener", took)
	if took > 3*time.Second {
		t.Errorf("connection closed %v after the drop, want about 1 s at most", took)
	}
}
