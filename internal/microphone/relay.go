// Package microphone relays the browser's microphone to PulseAudio:
// websocket messages -> format negotiation -> converter/resampler ->
// non-blocking writer into module-pipe-source's FIFO.
//
// One client sends at a time (two microphones mixed into one stream are
// noise), and the microphone belongs to its user: the newest sender that
// passed admission takes it over, so a page reload or a laptop that lost its
// network never locks it. The websocket reader never waits on PulseAudio,
// which only reads the FIFO while something records from the source.
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

	"github.com/pulse-sidecar/pulse-sidecar/internal/supervise"
	"github.com/pulse-sidecar/pulse-sidecar/internal/wsserver"
)

// Config configures a Relay. Zero values of the optional fields take the
// defaults in brackets.
type Config struct {
	// Server is the websocket port: address, origins, authentication,
	// connection limits, pings. Service, Admit and ReadLimit are the
	// relay's to set.
	Server   wsserver.Config
	FIFO     string // module-pipe-source's file=
	Format   string // pipe format, "float32le" or "s16le" [float32le]
	Rate     int    // pipe rate, one of Rates [44100]
	Channels int    // pipe channels, 1 or 2 [1]

	MaxMessage int // largest binary message in bytes [64 KiB]
	// MaxQueued is the most audio left waiting in the FIFO for PulseAudio;
	// more is dropped. Small keeps the microphone live, large rides out a
	// PulseAudio that is slow to be scheduled [50ms].
	MaxQueued time.Duration

	// Undeclared is what a sender declaring none of format, rate and
	// channels gets (undeclared.go) [detect]; DetectHold the rate
	// detector's hold [DefaultDetectHold].
	Undeclared Undeclared
	DetectHold time.Duration
	// FFmpeg decodes ?format=opus senders, one child per sender started by
	// Reaper (see opus.go); empty: format=opus is refused.
	FFmpeg string
	Reaper *supervise.Reaper

	Log        *slog.Logger          // [discard]
	Ready      func(bool)            // told when the listener serves and stops [none]
	Registerer prometheus.Registerer // metrics go here [not registered]
}

// Close codes a sender may see besides 1001 (server stopping), 1003 (text
// message) and 1009 (message too big).
const (
	// CloseReplaced: a newer sender took the microphone over.
	CloseReplaced = 4001
)

func (c *Config) setDefaults() {
	if c.Format == "" {
		c.Format = "float32le"
	}
	if c.Rate == 0 {
		c.Rate = 44100
	}
	if c.Channels == 0 {
		c.Channels = 1
	}
	if c.MaxMessage == 0 {
		c.MaxMessage = 64 << 10
	}
	if c.MaxQueued == 0 {
		c.MaxQueued = 50 * time.Millisecond
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Ready == nil {
		c.Ready = func(bool) {}
	}
}

func (c *Config) validate() (Format, error) {
	var errs []error
	if c.FIFO == "" {
		errs = append(errs, errors.New("FIFO path is empty"))
	}
	pipe, err := PipeFormat(c.Format, c.Rate, c.Channels)
	if err != nil {
		errs = append(errs, fmt.Errorf("pipe format: %w", err))
	}
	if c.MaxQueued < 0 {
		errs = append(errs, fmt.Errorf("max queued audio %s is negative", c.MaxQueued))
	}
	if c.MaxMessage < 0 {
		errs = append(errs, fmt.Errorf("max message size %d is negative", c.MaxMessage))
	}
	if c.FFmpeg != "" && c.Reaper == nil {
		errs = append(errs, errors.New("an Opus decoder needs a Reaper"))
	}
	return pipe, errors.Join(errs...)
}

// Relay is the microphone websocket server. Create it with New, run it with Run.
type Relay struct {
	cfg  Config
	pipe Format
	srv  *wsserver.Server
	m    *metrics
	um   *undeclaredMetrics
	log  *slog.Logger

	// mu guards the sender and the writer: only the current sender writes,
	// and a replaced one finds out under the same lock, so its audio never
	// interleaves with the newcomer's.
	mu      sync.Mutex
	current *wsserver.Conn
	// writer outlives connections so the FIFO is not reopened for every
	// client.
	writer *pipeWriter
}

// New validates cfg and binds the listener, so a port in use is reported
// before anything else starts.
func New(cfg Config) (*Relay, error) {
	cfg.setDefaults()
	pipe, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	um, err := newUndeclaredMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	r := &Relay{
		um:     um,
		cfg:    cfg,
		pipe:   pipe,
		m:      m,
		log:    cfg.Log,
		writer: newPipeWriter(cfg.FIFO, pipe, cfg.MaxQueued, cfg.Log, m),
	}
	sc := cfg.Server
	sc.Service = "microphone"
	sc.Admit = r.admit
	sc.ReadLimit = int64(cfg.MaxMessage)
	if sc.Log == nil {
		sc.Log = cfg.Log
	}
	if sc.Registerer == nil {
		sc.Registerer = cfg.Registerer
	}
	if r.srv, err = wsserver.New(sc); err != nil {
		return nil, err
	}
	return r, nil
}

// Addr is the bound listen address (useful with port 0).
func (r *Relay) Addr() net.Addr { return r.srv.Addr() }

// Close releases the port of a Relay that will not Run.
func (r *Relay) Close() error { return r.srv.Close() }

// Run serves until ctx is cancelled, then closes every connection (close code
// 1001), waits for their handlers and returns nil. It returns an error only if
// serving fails on its own.
func (r *Relay) Run(ctx context.Context) error {
	r.log.Info("microphone relay listening", "addr", r.Addr().String(), "fifo", r.cfg.FIFO, "pipe_format", r.pipe.String())
	r.cfg.Ready(true)
	err := r.srv.Run(ctx)
	r.cfg.Ready(false)
	r.mu.Lock()
	r.writer.Close()
	r.mu.Unlock()
	return err
}

// admit reads the declared format from the query: cheap, before the
// upgrade, and before the sender slot is touched, so a malformed request
// never costs the current sender anything.
func (r *Relay) admit(req *http.Request) (wsserver.Session, error) {
	if isOpus(req.URL.Query()) { // issue 13, see opus.go
		return r.admitOpus(req)
	}
	if s := r.admitUndeclared(req.URL.Query()); s != nil {
		return s, nil
	}
	in, err := NegotiateFormat(req.URL.Query(), r.pipe)
	if err != nil {
		return nil, &wsserver.Refusal{Status: http.StatusBadRequest, Reason: wsserver.ReasonParams, Text: err.Error()}
	}
	return &sender{r: r, in: in}, nil
}

// sender is one admitted microphone websocket.
type sender struct {
	r      *Relay
	in     Format
	detect bool // undeclared: the rate is detected (undeclared.go)
}

// hold makes c the microphone's sender and keeps it pinged; the returned
// func stops the pings and gives the slot back. Every kind of sender
// (declared, undeclared, Opus) owns the microphone this one way.
func (r *Relay) hold(c *wsserver.Conn, log *slog.Logger) (release func()) {
	r.take(c, log)
	stop := make(chan struct{})
	pinger := make(chan struct{})
	go func() {
		defer close(pinger)
		c.KeepAlive(stop)
	}()
	return func() {
		close(stop)
		<-pinger
		r.release(c)
	}
}

func (s *sender) Serve(c *wsserver.Conn) {
	r := s.r
	log := r.log.With("peer", c.Peer())
	// The formats were validated in admit, so this cannot fail.
	conv, err := NewConverter(s.in, r.pipe)
	if err != nil {
		log.Error("microphone converter", "err", err)
		c.Close(websocket.CloseInternalServerErr, "converter")
		drainUntilClosed(c)
		return
	}
	defer r.hold(c, log)()
	var und *undeclaredStream
	if s.detect {
		und = r.newUndeclaredStream(c, log)
		defer und.close()
		log.Info("microphone sender connected", "format", "undeclared: f32le mono, rate to be detected")
	} else {
		log.Info("microphone sender connected", "format", s.in.String())
	}
	err = r.receive(c, conv, und)
	log.Info("microphone sender disconnected", "reason", err)
}

// take makes c the sender; the previous one is closed with CloseReplaced at
// once, whatever state its peer is in.
func (r *Relay) take(c *wsserver.Conn, log *slog.Logger) {
	r.mu.Lock()
	prev := r.current
	r.current = c
	r.m.senders.Set(1)
	r.mu.Unlock()
	if prev != nil {
		r.m.replaced.Inc()
		log.Info("microphone taken over by a newer sender", "previous", prev.Peer())
		prev.Close(CloseReplaced, "replaced by a newer sender")
	}
}

func (r *Relay) release(c *wsserver.Conn) {
	r.mu.Lock()
	if r.current == c {
		r.current = nil
		r.m.senders.Set(0)
	}
	r.mu.Unlock()
}

// receive reads audio messages until the peer goes away or breaks the
// protocol. Audio of a connection that is closing (replaced, stopping) is
// read and dropped.
func (r *Relay) receive(c *wsserver.Conn, conv *Converter, und *undeclaredStream) error {
	ws := c.WS()
	buf := make([]byte, r.cfg.MaxMessage+1)
	var out []byte
	for {
		kind, rd, err := ws.NextReader()
		if err != nil {
			return r.readError(c, err)
		}
		if kind != websocket.BinaryMessage {
			r.m.rejected.WithLabelValues(reasonText).Inc()
			c.Close(websocket.CloseUnsupportedData, "microphone audio must be sent as binary messages")
			drainUntilClosed(c)
			return errors.New("text message")
		}
		n, err := readMessage(rd, buf)
		if err != nil {
			return r.readError(c, err)
		}
		c.Alive()
		r.m.bytesIn.Add(float64(n))
		if und != nil {
			und.push(time.Now(), buf[:n])
			continue
		}
		out = r.writeCurrent(c, conv, out, buf[:n])
	}
}

// convert converts in with conv into out's storage and counts the samples
// it sanitised.
func (r *Relay) convert(conv *Converter, out, in []byte) []byte {
	out, san := conv.Convert(out[:0], in)
	r.m.sanitized.WithLabelValues(sanitizedNonFinite).Add(float64(san.NonFinite))
	r.m.sanitized.WithLabelValues(sanitizedClamped).Add(float64(san.Clamped))
	return out
}

// writeCurrent converts in and writes it to the pipe if c is the
// microphone's sender: a replaced sender's audio is dropped. It returns the
// converted audio's storage for the next call.
func (r *Relay) writeCurrent(c *wsserver.Conn, conv *Converter, out, in []byte) []byte {
	out = r.convert(conv, out, in)
	if len(out) > 0 {
		r.withPipe(c, func(w *pipeWriter) { w.Write(out) })
	}
	return out
}

// withPipe runs write with the pipe writer if c is the microphone's sender,
// and reports whether it is. Only the current sender writes, and a replaced
// one finds out under the same lock, so its audio never interleaves with
// the newcomer's.
func (r *Relay) withPipe(c *wsserver.Conn, write func(*pipeWriter)) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.current != c {
		return false
	}
	write(r.writer)
	return true
}

// isCurrent tells whether c is the microphone's sender.
func (r *Relay) isCurrent(c *wsserver.Conn) bool {
	return r.withPipe(c, func(*pipeWriter) {})
}

// closing tells whether the server is closing c (replaced by a newer
// sender, or the relay is stopping), as opposed to the peer having left: a
// closing sender's audio is dropped, and nothing of it is waited for.
func closing(c *wsserver.Conn) bool {
	return c != nil && c.Context().Err() != nil
}

// drainUntilClosed reads, after a close frame was sent, until the peer's
// close frame or the close deadline ends the connection: closing a socket
// that still holds unread client data makes the kernel send a reset, which
// can overtake the close frame and hide the code from the client.
func drainUntilClosed(c *wsserver.Conn) {
	for {
		if _, _, err := c.WS().NextReader(); err != nil {
			return
		}
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

func (r *Relay) readError(c *wsserver.Conn, err error) error {
	if errors.Is(err, websocket.ErrReadLimit) {
		// gorilla has already sent close 1009 (message too big).
		r.m.rejected.WithLabelValues(reasonTooBig).Inc()
		c.Drain()
		return fmt.Errorf("message over %d bytes", r.cfg.MaxMessage)
	}
	return err
}
