// Package wsserver is the websocket server the relays stand on. It bounds
// what a peer can cost before it is admitted (TCP connections, header size,
// handshake time, sessions), admits in a fixed order (limits, origin,
// authentication, the request's own parameters) and only then upgrades; it
// keeps sessions alive with pings, and closes every connection within a
// bounded time when a session is dropped or the server stops.
package wsserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulse-sidecar/pulse-sidecar/internal/httpserve"
	"github.com/pulse-sidecar/pulse-sidecar/internal/origin"
)

// Authenticator decides whether a request may open service ("speaker",
// "microphone"). A nil error admits; otherwise the server answers 401 and
// logs the refusal with the error's text, which must therefore never hold
// the token. It may count refusals by reasons of its own.
type Authenticator interface {
	Check(r *http.Request, service string) error
}

// Session is what an admitted, upgraded connection runs. Serve owns the
// connection's reads and its writes other than control frames, and returns
// once the connection is done; the server closes it afterwards.
type Session interface {
	Serve(c *Conn)
}

// Refusal is an answer given before the upgrade.
type Refusal struct {
	Status int    // HTTP status, 400 when zero
	Reason string // label of the refused_total metric
	Text   string // response body and log message
}

func (e *Refusal) Error() string { return e.Text }

// Refusal reasons, the values of refused_total's reason label.
const (
	ReasonConnections = "connections" // over MaxConnections: accepted and closed
	ReasonSessions    = "sessions"    // over MaxSessions: 503
	ReasonOrigin      = "origin"
	ReasonAuth        = "auth"
	ReasonParams      = "params" // Admit refused the request's parameters
	ReasonStopping    = "stopping"
)

// Config configures a Server. Zero values take the defaults in brackets.
type Config struct {
	Addr string // listen address
	// Service names the server in authentication, logs and metrics
	// ("speaker", "microphone").
	Service string

	AllowedOrigins []string      // Origin values accepted; empty accepts any
	Auth           Authenticator // nil: open to anyone who reaches the port
	// Unauthorized writes the 401 answer [401 with WWW-Authenticate: Bearer].
	Unauthorized func(http.ResponseWriter)

	MaxConnections   int           // TCP connections at once; more are accepted and closed [4096]
	MaxSessions      int           // upgraded sessions at once; more get 503 [unlimited]
	HandshakeTimeout time.Duration // from accept to upgraded [5s]
	MaxHeaderBytes   int           // request header bound [8 KiB]
	SendBuffer       int           // kernel send buffer of each connection [system default]

	PingInterval time.Duration // [20s]
	PongWait     time.Duration // a peer silent this long is dropped [PingInterval*3/2]
	WriteWait    time.Duration // bound of one write [10s]
	ReadLimit    int64         // largest message a peer may send [4 KiB]

	// Plain answers requests that are not websocket upgrades [426].
	Plain http.Handler
	// Admit checks the request's own parameters once limits, origin and
	// authentication passed, and returns the session to run after the
	// upgrade. Its error is a *Refusal or any error (400). It must be cheap
	// and allocate nothing that grows with the request.
	Admit func(*http.Request) (Session, error)

	Log        *slog.Logger          // [discard]
	Registerer prometheus.Registerer // [not registered]
}

// closeWait bounds a close handshake: how long a dropped session's peer
// gets to answer the close frame before the socket is closed under it. At
// shutdown the wait is shorter, so that stopping stays well under a second
// whatever the peers do.
const (
	closeWait    = time.Second
	shutdownWait = 250 * time.Millisecond
)

// retryAfter is what a client refused for lack of room is told to wait.
const retryAfter = 10 * time.Second

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.HandshakeTimeout, 5*time.Second)
	def(&c.PingInterval, 20*time.Second)
	def(&c.PongWait, c.PingInterval*3/2)
	def(&c.WriteWait, 10*time.Second)
	if c.MaxConnections == 0 {
		c.MaxConnections = 4096
	}
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = 8 << 10
	}
	if c.ReadLimit == 0 {
		c.ReadLimit = 4 << 10
	}
	if c.Unauthorized == nil {
		c.Unauthorized = func(w http.ResponseWriter) {
			w.Header().Set("WWW-Authenticate", "Bearer")
			http.Error(w, http.StatusText(http.StatusUnauthorized), http.StatusUnauthorized)
		}
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

func (c *Config) validate() error {
	var errs []error
	if c.Addr == "" {
		errs = append(errs, errors.New("listen address is empty"))
	}
	if c.Service == "" {
		errs = append(errs, errors.New("service name is empty"))
	}
	if c.Admit == nil {
		errs = append(errs, errors.New("no Admit function"))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"handshake timeout", c.HandshakeTimeout}, {"ping interval", c.PingInterval},
		{"pong wait", c.PongWait}, {"write wait", c.WriteWait},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s %v is negative", d.name, d.v))
		}
	}
	if c.PongWait <= c.PingInterval {
		errs = append(errs, fmt.Errorf("pong wait %v must exceed the ping interval %v, or every peer times out", c.PongWait, c.PingInterval))
	}
	if c.MaxConnections < 1 {
		errs = append(errs, fmt.Errorf("max connections %d is less than 1", c.MaxConnections))
	}
	if c.MaxSessions < 0 {
		errs = append(errs, fmt.Errorf("max sessions %d is negative", c.MaxSessions))
	}
	if c.MaxHeaderBytes < 1<<10 {
		errs = append(errs, fmt.Errorf("max header bytes %d is less than 1 KiB", c.MaxHeaderBytes))
	}
	if err := origin.Validate(c.AllowedOrigins); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Server is one websocket port. Create it with New, run it with Run.
type Server struct {
	cfg      Config
	ln       *limitListener
	upgrader websocket.Upgrader
	origin   func(*http.Request) bool
	m        *metrics
	refusals *refusalLog

	mu       sync.Mutex
	stopping bool
	sessions int // admitted and not yet ended, including those being upgraded
	conns    map[*Conn]struct{}
	wg       sync.WaitGroup // sessions in flight
}

// New checks cfg and binds the listen address, so a port in use fails at
// start-up rather than when the first browser connects.
func New(cfg Config) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Service, cfg.Registerer)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	s := &Server{
		cfg:      cfg,
		origin:   origin.Checker(cfg.AllowedOrigins),
		m:        m,
		refusals: newRefusalLog(cfg.Log),
		conns:    map[*Conn]struct{}{},
	}
	s.ln = &limitListener{Listener: ln, max: int64(cfg.MaxConnections), sendBuffer: cfg.SendBuffer, m: m, refusals: s.refusals}
	s.upgrader = websocket.Upgrader{
		HandshakeTimeout: cfg.HandshakeTimeout,
		ReadBufferSize:   256,
		// A pool instead of per-connection buffers: a thousand idle
		// sessions should not pin a thousand write buffers.
		WriteBufferPool: &sync.Pool{},
		// Checked before authentication, in ServeHTTP.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	return s, nil
}

// Addr is the address the server listens on (useful with port 0).
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Run serves until ctx ends, then closes every session (close code 1001)
// and returns once their goroutines have ended. It returns an error only
// when serving fails on its own.
func (s *Server) Run(ctx context.Context) error {
	srv := &http.Server{
		Handler: s,
		// The handshake's own bound: a peer that has not sent its headers
		// by then is closed, idle or half-sent alike.
		ReadHeaderTimeout: s.cfg.HandshakeTimeout,
		ReadTimeout:       s.cfg.HandshakeTimeout,
		WriteTimeout:      s.cfg.HandshakeTimeout,
		MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.cfg.Log.Handler(), slog.LevelDebug),
	}
	srv.SetKeepAlivesEnabled(false)
	closed := make(chan struct{})
	stop := context.AfterFunc(ctx, func() { s.closeAll(); close(closed) })
	err := httpserve.Run(ctx, srv, s.ln)
	if stop() {
		s.closeAll()
		close(closed)
	}
	<-closed
	s.wg.Wait()
	s.refusals.stop()
	return err
}

// closeAll refuses new sessions and closes the running ones.
func (s *Server) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopping = true
	for c := range s.conns {
		c.close(websocket.CloseGoingAway, "server shutting down", shutdownWait)
	}
}

// ServeHTTP admits a websocket request or answers a plain one.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Every answer but the upgrade ends the connection: a keep-alive would
	// hold a connection slot for a client that has nothing more to ask.
	// (The upgrade replaces this header with its own.)
	w.Header().Set("Connection", "close")
	if !websocket.IsWebSocketUpgrade(r) {
		if s.cfg.Plain != nil {
			s.cfg.Plain.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Upgrade", "websocket")
		http.Error(w, "this port serves websockets only", http.StatusUpgradeRequired)
		return
	}
	if !s.reserve() {
		w.Header().Set("Retry-After", strconv.Itoa(int(retryAfter.Seconds())))
		s.refuse(w, r, &Refusal{Status: http.StatusServiceUnavailable, Reason: ReasonSessions, Text: "too many sessions"})
		return
	}
	reserved := true
	defer func() {
		if reserved {
			s.release()
		}
	}()
	if !s.origin(r) {
		s.refuse(w, r, &Refusal{Status: http.StatusForbidden, Reason: ReasonOrigin, Text: "origin not allowed"})
		return
	}
	if s.cfg.Auth != nil {
		if err := s.cfg.Auth.Check(r, s.cfg.Service); err != nil {
			s.logRefusal(r, http.StatusUnauthorized, ReasonAuth, err.Error())
			s.cfg.Unauthorized(w)
			return
		}
	}
	sess, err := s.cfg.Admit(r)
	if err != nil {
		var ref *Refusal
		if !errors.As(err, &ref) {
			ref = &Refusal{Text: err.Error()}
		}
		if ref.Reason == "" {
			ref.Reason = ReasonParams
		}
		s.refuse(w, r, ref)
		return
	}
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		s.refuse(w, r, &Refusal{Status: http.StatusServiceUnavailable, Reason: ReasonStopping, Text: "shutting down"})
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()

	ws, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		s.wg.Done()
		s.cfg.Log.Debug("websocket upgrade failed", "peer", r.RemoteAddr, "err", err)
		return // the upgrader has answered
	}
	c := s.newConn(ws, r.RemoteAddr)
	if !s.track(c) {
		// Stopping began during the upgrade.
		c.close(websocket.CloseGoingAway, "server shutting down", shutdownWait)
	}
	reserved = false
	go func() {
		defer s.wg.Done()
		defer s.release()
		defer s.untrack(c)
		defer c.finish()
		sess.Serve(c)
	}()
}

func (s *Server) refuse(w http.ResponseWriter, r *http.Request, ref *Refusal) {
	if ref.Status == 0 {
		ref.Status = http.StatusBadRequest
	}
	s.logRefusal(r, ref.Status, ref.Reason, ref.Text)
	http.Error(w, ref.Text, ref.Status)
}

// logRefusal counts a refusal before the upgrade and logs it, within the
// refusal log's bound. A token refusal is a warning: it is the one that
// says someone tried to get in.
func (s *Server) logRefusal(r *http.Request, status int, reason, detail string) {
	s.m.refused.WithLabelValues(reason).Inc()
	level := slog.LevelInfo
	if reason == ReasonAuth {
		level = slog.LevelWarn
	}
	s.refusals.refused(reason, level, "websocket refused", "peer", r.RemoteAddr, "status", status,
		"reason", reason, "detail", detail, "origin", r.Header.Get("Origin"))
}

func (s *Server) reserve() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.MaxSessions > 0 && s.sessions >= s.cfg.MaxSessions {
		return false
	}
	s.sessions++
	return true
}

func (s *Server) release() {
	s.mu.Lock()
	s.sessions--
	s.mu.Unlock()
}

func (s *Server) track(c *Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conns[c] = struct{}{}
	return !s.stopping
}

func (s *Server) untrack(c *Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Close releases the port of a Server that will not Run.
func (s *Server) Close() error { return s.ln.Close() }
