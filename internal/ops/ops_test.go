package ops

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/pulse-sidecar/pulse-sidecar/internal/testenv"
)

func startServer(t *testing.T, r *Readiness, reg *prometheus.Registry, pprof bool) string {
	t.Helper()
	s, err := New(Config{Addr: "127.0.0.1:0", Readiness: r, Gatherer: reg, Pprof: pprof, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return s.Addr().String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestReadyzFollowsComponents(t *testing.T) {
	r := NewReadiness("pulseaudio", "speaker")
	setPulse, setSpeaker := r.Setter("pulseaudio"), r.Setter("speaker")
	reg := prometheus.NewRegistry()
	addr := startServer(t, r, reg, false)

	if code, body := get(t, "http://"+addr+"/readyz"); code != 503 || !strings.Contains(body, "pulseaudio, speaker") {
		t.Errorf("nothing ready: %d %q", code, body)
	}
	setPulse(true)
	if code, body := get(t, "http://"+addr+"/readyz"); code != 503 || !strings.Contains(body, "speaker") || strings.Contains(body, "pulseaudio") {
		t.Errorf("speaker not ready: %d %q", code, body)
	}
	setSpeaker(true)
	if code, _ := get(t, "http://"+addr+"/readyz"); code != 200 {
		t.Errorf("all ready: %d", code)
	}
	if err := Healthcheck(context.Background(), addr); err != nil {
		t.Errorf("Healthcheck of a ready server: %v", err)
	}
	setPulse(false)
	if err := Healthcheck(context.Background(), addr); err == nil || !strings.Contains(err.Error(), "pulseaudio") {
		t.Errorf("Healthcheck should name what is not ready: %v", err)
	}
	if code, _ := get(t, "http://"+addr+"/healthz"); code != 200 {
		t.Errorf("healthz: %d", code)
	}
}

func TestMetricsAndPprof(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "pulse_sidecar_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	addr := startServer(t, NewReadiness(), reg, false)
	if code, body := get(t, "http://"+addr+"/metrics"); code != 200 || !strings.Contains(body, "pulse_sidecar_test_total 3") {
		t.Errorf("metrics: %d %q", code, body)
	}
	if code, _ := get(t, "http://"+addr+"/debug/pprof/"); code != 404 {
		t.Errorf("pprof served without --pprof: %d", code)
	}
	addr = startServer(t, NewReadiness(), reg, true)
	if code, _ := get(t, "http://"+addr+"/debug/pprof/"); code != 200 {
		t.Errorf("pprof with --pprof: %d", code)
	}
}

func TestHealthcheckUnspecifiedHostMeansLoopback(t *testing.T) {
	r := NewReadiness()
	addr := startServer(t, r, prometheus.NewRegistry(), false)
	port := addr[strings.LastIndexByte(addr, ':')+1:]
	for _, a := range []string{":" + port, "0.0.0.0:" + port} {
		if err := Healthcheck(context.Background(), a); err != nil {
			t.Errorf("Healthcheck(%q): %v", a, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := Healthcheck(ctx, "127.0.0.1:1"); err == nil {
		t.Error("Healthcheck of a closed port succeeded")
	}
	if err := Healthcheck(ctx, "nonsense"); err == nil {
		t.Error("Healthcheck of a bad address succeeded")
	}
}

func TestPortInUseIsAnError(t *testing.T) {
	addr := startServer(t, NewReadiness(), prometheus.NewRegistry(), false)
	_, err := New(Config{Addr: addr, Readiness: NewReadiness(), Gatherer: prometheus.NewRegistry(), Log: slog.New(slog.DiscardHandler)})
	if err == nil || !strings.Contains(err.Error(), addr) {
		t.Errorf("second bind: %v, want an error naming %s", err, addr)
	}
}

func TestShutdownIgnoresSilentConnections(t *testing.T) {
	s, err := New(Config{Addr: "127.0.0.1:0", Readiness: NewReadiness(), Gatherer: prometheus.NewRegistry(), Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	testenv.StopsDespiteSilentConnection(t, s.Addr().String(), s.Run)
}

// The zero Config's optional fields take defaults: a nil Log used to panic.
func TestNewDefaults(t *testing.T) {
	s, err := New(Config{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	testenv.StopsDespiteSilentConnection(t, s.Addr().String(), s.Run)
}
