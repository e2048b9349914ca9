// Package ops serves the daemon's operational endpoints: /healthz (the
// process is alive and serving), /readyz (PulseAudio answers and both relays
// listen), /metrics (Prometheus) and, when asked for, /debug/pprof.
package ops

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pulse-sidecar/pulse-sidecar/internal/httpserve"
)

// Readiness collects the readiness of named components; the daemon is ready
// when every registered component is.
type Readiness struct {
	mu    sync.Mutex
	state map[string]bool
}

// NewReadiness registers the components that must all be ready, each not ready yet.
func NewReadiness(components ...string) *Readiness {
	r := &Readiness{state: map[string]bool{}}
	for _, c := range components {
		r.state[c] = false
	}
	return r
}

// Setter returns the callback a component uses to report its readiness.
func (r *Readiness) Setter(component string) func(bool) {
	r.mu.Lock()
	if _, ok := r.state[component]; !ok {
		r.state[component] = false
	}
	r.mu.Unlock()
	return func(ok bool) {
		r.mu.Lock()
		r.state[component] = ok
		r.mu.Unlock()
	}
}

// Ready reports whether all components are ready, and the ones that are not.
func (r *Readiness) Ready() (bool, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var waiting []string
	for c, ok := range r.state {
		if !ok {
			waiting = append(waiting, c)
		}
	}
	sort.Strings(waiting)
	return len(waiting) == 0, waiting
}

// Config is what the ops server needs. Zero values take the defaults in
// brackets.
type Config struct {
	Addr      string
	Readiness *Readiness          // [nothing to wait for]
	Gatherer  prometheus.Gatherer // [no metrics]
	Pprof     bool
	Log       *slog.Logger // [discard]
}

func (c *Config) setDefaults() {
	if c.Readiness == nil {
		c.Readiness = NewReadiness()
	}
	if c.Gatherer == nil {
		c.Gatherer = prometheus.NewRegistry()
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// Server is the ops HTTP server, bound at New so a port in use fails at start.
type Server struct {
	cfg Config
	ln  net.Listener
	srv *http.Server
}

// New binds the ops address.
func New(cfg Config) (*Server, error) {
	cfg.setDefaults()
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	s := &Server{cfg: cfg, ln: ln}
	s.srv = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		// Probes and scrapers keep connections alive; bounded, so that
		// idle ones do not pile up (pprof's profile and trace take their
		// own time on the write side, hence no WriteTimeout).
		IdleTimeout:    30 * time.Second,
		MaxHeaderBytes: 8 << 10,
		ErrorLog:       slog.NewLogLogger(cfg.Log.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// Addr is the bound address (useful with port 0).
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Handler is the ops mux; exposed for tests.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		ok, waiting := s.cfg.Readiness.Ready()
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready: %s\n", strings.Join(waiting, ", "))
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.cfg.Gatherer, promhttp.HandlerOpts{}))
	if s.cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// Run serves until ctx is cancelled, then stops within httpserve.Grace.
func (s *Server) Run(ctx context.Context) error {
	return httpserve.Run(ctx, s.srv, s.ln)
}

// Healthcheck asks a running daemon's /readyz; it is the container's health
// probe (the image has no curl). addr is the daemon's --ops-addr: an empty or
// unspecified host means the daemon listens everywhere, so loopback reaches it.
func Healthcheck(ctx context.Context, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("healthcheck: ops address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	url := "http://" + net.JoinHostPort(host, port) + "/readyz"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	body := make([]byte, 512)
	n, _ := resp.Body.Read(body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body[:n])))
	}
	return nil
}
