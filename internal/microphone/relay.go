// Package microphone relays the browser's microphone to PulseAudio:
// websocket messages -> format negotiation -> converter/resampler ->
// non-blocking writer into module-pipe-source's FIFO.
//
// One client sends at a time (two microphones mixed into one stream are
// noise); the websocket reader never waits on PulseAudio, which only reads
// the FIFO while something records from the source.
package microphone

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulse-sidecar/pulse-sidecar/internal/origin"
)

// Config configures a Relay. Zero values of the optional fields take the
// defaults in brackets.
type Config struct {
	Addr     string // listen address, e.g. "127.0.0.1:29789"
	FIFO     string // module-pipe-source's file=
	Format   string // pipe format, "float32le" or "s16le" [float32le]
	Rate     int    // pipe rate [44100]
	Channels int    // pipe channels [1]

	AllowedOrigins []string      // websocket Origin values accepted; empty accepts any
	MaxMessage     int           // largest binary message in bytes [64 KiB]
	PingInterval   time.Duration // keeps idle connections alive behind a proxy [20s]
	PongWait       time.Duration // a peer silent this long is dropped [PingInterval*5/2]
	WriteWait      time.Duration // deadline for control frames [5s]
	// MaxQueued is the most audio left waiting in the FIFO for PulseAudio;
	// more is dropped. Small keeps the microphone live, large rides out a
	// PulseAudio that is slow to be scheduled [50ms].
	MaxQueued time.Duration

	Log        *slog.Logger          // [discard]
	Ready      func(bool)            // told when the listener serves and stops [none]
	Registerer prometheus.Registerer // metrics go here [not registered]
}

// Relay is the microphone websocket server. Create it with New, run it with Run.
type Relay struct {
	cfg      Config
	pipe     Format
	ln       net.Listener
	srv      *http.Server
	upgrader websocket.Upgrader
	m        *metrics
	log      *slog.Logger

	// sender is the single sender slot: holding its one buffered element
	// means sending to the FIFO.
	sender chan struct{}
	// writer belongs to whoever holds the sender slot; it outlives
	// connections so the FIFO is not reopened for every client.
	writer *pipeWriter

	mu      sync.Mutex
	closing bool
	conns   map[*websocket.Conn]struct{}
	wg      sync.WaitGroup // handlers in flight
}

// New validates cfg and binds the listener, so a port in use is reported
// before anything else starts.
func New(cfg Config) (*Relay, error) {
	if cfg.Addr == "" {
		return nil, errors.New("microphone: listen address is empty")
	}
	if cfg.FIFO == "" {
		return nil, errors.New("microphone: FIFO path is empty")
	}
	cfg = withDefaults(cfg)
	enc, err := ParsePipeEncoding(cfg.Format)
	if err != nil {
		return nil, fmt.Errorf("microphone: %w", err)
	}
	pipe := Format{Encoding: enc, Rate: cfg.Rate, Channels: cfg.Channels}
	if err := pipe.Validate(); err != nil {
		return nil, fmt.Errorf("microphone: pipe format: %w", err)
	}
	if cfg.MaxQueued < 0 {
		return nil, fmt.Errorf("microphone: max queued audio %s is negative", cfg.MaxQueued)
	}
	if cfg.MaxMessage < 0 {
		return nil, fmt.Errorf("microphone: max message size %d is negative", cfg.MaxMessage)
	}
	if cfg.PongWait <= cfg.PingInterval {
		return nil, fmt.Errorf("microphone: pong wait %s must exceed ping interval %s", cfg.PongWait, cfg.PingInterval)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("microphone: metrics: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("microphone: listen on %s: %w", cfg.Addr, err)
	}
	r := &Relay{
		cfg:    cfg,
		pipe:   pipe,
		ln:     ln,
		m:      m,
		log:    cfg.Log,
		sender: make(chan struct{}, 1),
		writer: newPipeWriter(cfg.FIFO, pipe, cfg.MaxQueued, cfg.Log),
		conns:  make(map[*websocket.Conn]struct{}),
	}
	r.upgrader = websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		CheckOrigin:      r.checkOrigin(origin.Checker(cfg.AllowedOrigins)),
	}
	r.srv = &http.Server{
		Handler:           http.HandlerFunc(r.serveHTTP),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(cfg.Log.Handler(), slog.LevelWarn),
	}
	return r, nil
}

func withDefaults(cfg Config) Config {
	if cfg.Format == "" {
		cfg.Format = "float32le"
	}
	if cfg.Rate == 0 {
		cfg.Rate = 44100
	}
	if cfg.Channels == 0 {
		cfg.Channels = 1
	}
	if cfg.MaxMessage == 0 {
		cfg.MaxMessage = 64 << 10
	}
	if cfg.PingInterval == 0 {
		cfg.PingInterval = 20 * time.Second
	}
	if cfg.PongWait == 0 {
		cfg.PongWait = cfg.PingInterval * 5 / 2
	}
	if cfg.MaxQueued == 0 {
		cfg.MaxQueued = 50 * time.Millisecond
	}
	if cfg.WriteWait == 0 {
		cfg.WriteWait = 5 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Ready == nil {
		cfg.Ready = func(bool) {}
	}
	return cfg
}

// Addr is the bound listen address (useful with port 0).
func (r *Relay) Addr() net.Addr { return r.ln.Addr() }

// Run serves until ctx is cancelled, then closes every connection (close code
// 1001), waits for their handlers and returns nil. It returns an error only if
// serving fails on its own.
func (r *Relay) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- r.srv.Serve(r.ln) }()
	r.log.Info("microphone relay listening", "addr", r.ln.Addr().String(), "fifo", r.cfg.FIFO, "pipe_format", r.pipe.String())
	r.cfg.Ready(true)

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	r.cfg.Ready(false)
	r.shutdown()
	if serveErr != nil {
		return fmt.Errorf("microphone: serve on %s: %w", r.ln.Addr(), serveErr)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("microphone: serve on %s: %w", r.ln.Addr(), err)
	}
	return nil
}

func (r *Relay) shutdown() {
	r.mu.Lock()
	r.closing = true
	for c := range r.conns {
		r.closeConn(c, websocket.CloseGoingAway, "server shutting down")
	}
	r.mu.Unlock()
	// Upgraded connections are not the server's any more, so this only has
	// the listener and plain requests to wait for; handlers are counted by
	// wg. Those requests are refusals answered at once, so a short grace is
	// enough; a longer one would only wait out connections that never sent
	// a request, holding SIGTERM up for nothing.
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := r.srv.Shutdown(ctx); err != nil {
		r.srv.Close()
	}
	r.wg.Wait()
	r.writer.Close()
}

// shutdownGrace is how long stopping waits for HTTP connections the server
// still tracks: upgrades half done and connections that never sent a request.
const shutdownGrace = 200 * time.Millisecond

func (r *Relay) closeConn(c *websocket.Conn, code int, reason string) {
	msg := websocket.FormatCloseMessage(code, reason)
	_ = c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(r.cfg.WriteWait))
	_ = c.Close()
}

// refuse closes a connection the handler owns with code and waits for the
// peer's closing handshake: closing a socket that still holds unread client
// data makes the kernel send a reset, which can overtake the close frame and
// hide the code from the client.
func (r *Relay) refuse(c *websocket.Conn, code int, reason string) {
	msg := websocket.FormatCloseMessage(code, reason)
	_ = c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(r.cfg.WriteWait))
	_ = c.SetReadDeadline(time.Now().Add(r.cfg.WriteWait))
	for {
		// Ends with the peer's close frame (or the deadline).
		if _, _, err := c.NextReader(); err != nil {
			break
		}
	}
	_ = c.Close()
}

// drain is refuse for a connection whose reader has failed (gorilla has sent
// the close frame itself): the raw socket is read briefly instead.
func (r *Relay) drain(c *websocket.Conn) {
	nc := c.NetConn()
	_ = nc.SetReadDeadline(time.Now().Add(min(r.cfg.WriteWait, time.Second)))
	_, _ = io.Copy(io.Discard, nc)
	_ = c.Close()
}

// checkOrigin is the shared origin policy plus what the microphone reports
// about refusals: a browser page refused here never reaches a handler, so
// this is the only place that sees it.
func (r *Relay) checkOrigin(allowed func(*http.Request) bool) func(*http.Request) bool {
	return func(req *http.Request) bool {
		if allowed(req) {
			return true
		}
		r.m.rejected.WithLabelValues(reasonOrigin).Inc()
		r.log.Warn("microphone websocket origin refused", "origin", req.Header.Get("Origin"), "peer", req.RemoteAddr)
		return false
	}
}

func (r *Relay) serveHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	if r.closing {
		r.mu.Unlock()
		http.Error(w, "microphone relay is shutting down", http.StatusServiceUnavailable)
		return
	}
	r.wg.Add(1)
	r.mu.Unlock()
	defer r.wg.Done()

	log := r.log.With("peer", req.RemoteAddr)
	in, err := NegotiateFormat(req.URL.Query(), r.pipe)
	var conv *Converter
	if err == nil {
		conv, err = NewConverter(in, r.pipe)
	}
	if err != nil {
		r.m.rejected.WithLabelValues(reasonBadFormat).Inc()
		log.Warn("microphone websocket refused: bad format", "err", err)
		http.Error(w, "microphone: "+err.Error(), http.StatusBadRequest)
		return
	}
	// The sender slot is claimed before the handshake is answered: a client
	// whose handshake completed first is then the sender, whatever order the
	// two handlers happen to be scheduled in afterwards.
	// The senders gauge follows the slot exactly, so a client (or a test)
	// that sees it at 0 knows the next connection will be the sender.
	sender := false
	select {
	case r.sender <- struct{}{}:
		sender = true
		r.m.senders.Inc()
		defer func() {
			<-r.sender
			r.m.senders.Dec()
		}()
	default:
	}
	c, err := r.upgrader.Upgrade(w, req, nil)
	if err != nil {
		log.Info("microphone websocket upgrade failed", "err", err)
		return // the upgrader has answered with an HTTP error
	}
	if !r.track(c) {
		r.closeConn(c, websocket.CloseGoingAway, "server shutting down")
		return
	}
	defer r.untrack(c)
	if !sender {
		r.m.rejected.WithLabelValues(reasonBusy).Inc()
		log.Info("microphone websocket refused: another client is sending")
		r.refuse(c, websocket.CloseTryAgainLater, "another client is sending microphone audio")
		return
	}

	log.Info("microphone sender connected", "format", in.String())
	err = r.receive(c, conv)
	log.Info("microphone sender disconnected", "reason", err)
	_ = c.Close()
}

func (r *Relay) track(c *websocket.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closing {
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *Relay) untrack(c *websocket.Conn) {
	r.mu.Lock()
	delete(r.conns, c)
	r.mu.Unlock()
}

// receive reads audio messages until the peer goes away or breaks the
// protocol, keeping the connection alive with pings meanwhile. It holds the
// sender slot, so it alone uses r.writer.
func (r *Relay) receive(c *websocket.Conn, conv *Converter) error {
	stop := make(chan struct{})
	var pinger sync.WaitGroup
	pinger.Add(1)
	go func() {
		defer pinger.Done()
		r.ping(c, stop)
	}()
	defer func() {
		close(stop)
		pinger.Wait()
	}()

	extend := func(string) error { return c.SetReadDeadline(time.Now().Add(r.cfg.PongWait)) }
	c.SetPongHandler(extend)
	c.SetReadLimit(int64(r.cfg.MaxMessage))
	_ = extend("")

	buf := make([]byte, r.cfg.MaxMessage+1)
	var out []byte
	for {
		kind, rd, err := c.NextReader()
		if err != nil {
			return r.readError(c, err)
		}
		if kind != websocket.BinaryMessage {
			r.m.rejected.WithLabelValues(reasonText).Inc()
			r.refuse(c, websocket.CloseUnsupportedData, "microphone audio must be sent as binary messages")
			return errors.New("text message")
		}
		n, err := readMessage(rd, buf)
		if err != nil {
			return r.readError(c, err)
		}
		_ = extend("")
		r.m.bytesIn.Add(float64(n))
		var invalid int
		out, invalid = conv.Convert(out[:0], buf[:n])
		if invalid > 0 {
			r.m.convErrors.Add(float64(invalid))
		}
		if len(out) == 0 {
			continue
		}
		written, dropped := r.writer.Write(out)
		r.m.written.Add(float64(written))
		r.m.dropped.Add(float64(dropped))
	}
}

// readMessage reads one whole message into buf, which is one byte longer
// than the read limit so that filling it means the limit was not enforced.
func readMessage(rd io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := rd.Read(buf[n:])
		n += m
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
	return n, websocket.ErrReadLimit
}

func (r *Relay) readError(c *websocket.Conn, err error) error {
	if errors.Is(err, websocket.ErrReadLimit) {
		// gorilla has already sent close 1009 (message too big).
		r.m.rejected.WithLabelValues(reasonTooBig).Inc()
		r.drain(c)
		return fmt.Errorf("message over %d bytes", r.cfg.MaxMessage)
	}
	return err
}

// ping sends a ping every interval until stop is closed; the read deadline
// (moved by every pong and message) ends connections whose peer stopped
// answering.
func (r *Relay) ping(c *websocket.Conn, stop <-chan struct{}) {
	t := time.NewTicker(r.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if err := c.WriteControl(websocket.PingMessage, nil, time.Now().Add(r.cfg.WriteWait)); err != nil {
				return
			}
		}
	}
}
