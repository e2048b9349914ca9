// Package speaker relays the desktop's sound to browsers: ffmpeg encodes
// PulseAudio's speaker monitor into MPEG-TS and writes it to a FIFO; the relay
// reads the FIFO, cuts it into whole TS packets and fans them out to
// websocket listeners, each behind its own bounded queue. The encoder runs
// only while someone listens.
package speaker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulse-sidecar/pulse-sidecar/internal/fifo"
	"github.com/pulse-sidecar/pulse-sidecar/internal/origin"
	"github.com/pulse-sidecar/pulse-sidecar/internal/supervise"
)

// Config configures a Relay. Zero durations and sizes take the defaults
// noted on each field.
type Config struct {
	Addr string // listen address, e.g. "127.0.0.1:29788"
	FIFO string // speaker FIFO; created (0600) if missing, removed on exit
	// FFmpeg is the encoder binary. Empty: no encoder is run and the relay
	// only forwards whatever something else writes into the FIFO.
	FFmpeg      string
	PulseServer string        // PULSE_SERVER for the encoder, e.g. "unix:/tmp/.pulse.sock"
	CookieFile  string        // PULSE_COOKIE for the encoder
	Linger      time.Duration // encoder keeps running after the last listener left (10s)

	// AllowedOrigins lists the browser origins (scheme://host[:port]) that
	// may connect; empty allows any.
	AllowedOrigins []string
	PingInterval   time.Duration // 20s; keeps proxies with a 60s read timeout from cutting idle streams
	PongWait       time.Duration // a listener silent this long is dropped (PingInterval*3/2)
	WriteWait      time.Duration // bound of one write to a listener (10s)
	QueueBytes     int           // per-listener queue bound (32 KiB, ~1.2 s of audio)
	SlowCloseAfter time.Duration // a listener behind this long is closed (10s)
	Grace          time.Duration // encoder stop: TERM, then KILL after Grace (2s)

	Reaper     *supervise.Reaper // required with FFmpeg
	Log        *slog.Logger
	Ready      func(bool)            // told true once serving, false when stopping
	Registerer prometheus.Registerer // nil: metrics are kept but not exported
}

// pipeSize bounds what can sit in the FIFO unread: ~0.6 s of stream. The
// reader drains the pipe continuously, so this only matters if it stalls.
const pipeSize = 16 << 10

// readSize is large enough to take a full pipe in one read, so a backlog
// turns into one chunk and one wakeup per listener.
const readSize = 32 << 10

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.Linger, 10*time.Second)
	def(&c.PingInterval, 20*time.Second)
	def(&c.PongWait, c.PingInterval*3/2)
	def(&c.WriteWait, 10*time.Second)
	def(&c.SlowCloseAfter, 10*time.Second)
	def(&c.Grace, 2*time.Second)
	if c.QueueBytes == 0 {
		c.QueueBytes = 32 << 10
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
	if c.FIFO == "" {
		errs = append(errs, errors.New("FIFO path is empty"))
	}
	if c.FFmpeg != "" && c.Reaper == nil {
		errs = append(errs, errors.New("an encoder needs a Reaper"))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"linger", c.Linger}, {"ping interval", c.PingInterval}, {"pong wait", c.PongWait},
		{"write wait", c.WriteWait}, {"slow close after", c.SlowCloseAfter}, {"grace", c.Grace},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s %v is negative", d.name, d.v))
		}
	}
	if c.PongWait <= c.PingInterval {
		errs = append(errs, fmt.Errorf("pong wait %v must exceed the ping interval %v, or every listener times out", c.PongWait, c.PingInterval))
	}
	if c.QueueBytes < PacketSize {
		errs = append(errs, fmt.Errorf("queue bytes %d is less than one TS packet", c.QueueBytes))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("speaker: invalid config: %w", err)
	}
	return nil
}

// Relay is the speaker websocket server and the encoder it runs on demand.
type Relay struct {
	cfg      Config
	ln       net.Listener
	m        *metrics
	hub      *hub
	upgrader websocket.Upgrader
	nudge    chan struct{} // listener count changed; buffered 1

	// resetPacketizer is set before an encoder is forked, so the reader
	// drops a partial packet left by the previous one.
	resetPacketizer atomic.Bool
	encoderPid      atomic.Int64 // 0 while no encoder runs

	// serveCtx ends when Run stops. Listeners outlive their HTTP handler:
	// returning from it right after the upgrade lets net/http drop its
	// per-connection buffers (20 instead of 33 KiB per listener).
	serveCtx context.Context

	// mu guards conns: handlers register under it unless shutdown
	// began, so Wait never races an Add.
	mu       sync.Mutex
	stopping bool
	conns    sync.WaitGroup
}

// New checks cfg and binds the listen address, so a port in use fails at
// start-up rather than when the first browser connects.
func New(cfg Config) (*Relay, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("speaker: listen on %s: %w", cfg.Addr, err)
	}
	r := &Relay{cfg: cfg, ln: ln, m: m, nudge: make(chan struct{}, 1)}
	r.hub = &hub{
		queueBytes: cfg.QueueBytes,
		slowAfter:  cfg.SlowCloseAfter,
		now:        time.Now,
		m:          m,
		changed: func() {
			select {
			case r.nudge <- struct{}{}:
			default:
			}
		},
	}
	r.upgrader = websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		ReadBufferSize:   256,
		// A pool instead of per-connection buffers: a thousand idle
		// listeners should not pin a thousand write buffers.
		WriteBufferPool: &sync.Pool{},
		CheckOrigin:     origin.Checker(cfg.AllowedOrigins),
	}
	return r, nil
}

// Addr is the address the relay listens on (useful with port 0).
func (r *Relay) Addr() net.Addr { return r.ln.Addr() }

// Run serves until ctx is cancelled; then it closes every listener, stops the
// encoder, removes the FIFO and returns nil. It returns an
// error only when the relay cannot start or its listener fails.
func (r *Relay) Run(ctx context.Context) error {
	defer r.ln.Close()
	// The daemon owns this path: a FIFO found there is one a previous run
	// left behind when it died, so it is reused and removed on exit like a
	// fresh one. Anything else there is refused and left alone.
	if err := fifo.Make(r.cfg.FIFO, 0o600); err != nil {
		return fmt.Errorf("speaker: %w", err)
	}
	defer func() {
		if err := fifo.Remove(r.cfg.FIFO); err != nil {
			r.cfg.Log.Warn("removing speaker FIFO", "path", r.cfg.FIFO, "err", err)
		}
	}()
	in, err := fifo.OpenReadWrite(r.cfg.FIFO)
	if err != nil {
		return fmt.Errorf("speaker: %w", err)
	}
	if _, err := fifo.SetPipeSize(in, pipeSize); err != nil {
		r.cfg.Log.Warn("shrinking speaker FIFO buffer", "path", r.cfg.FIFO, "err", err)
	}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		r.read(in)
	}()
	// Closing the read end is what ends the reader; it goes last so that
	// the encoder never writes into a pipe nobody drains.
	defer func() {
		in.Close()
		<-readDone
	}()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if r.cfg.FFmpeg != "" {
		// The relay's read-write descriptor is a reader, so this open
		// does not block.
		out, err := fifo.OpenWriteBlocking(r.cfg.FIFO)
		if err != nil {
			return fmt.Errorf("speaker: %w", err)
		}
		defer out.Close()
		enc := r.encoder(out)
		encDone := make(chan struct{})
		go func() {
			defer close(encDone)
			enc.run(ctx)
		}()
		defer func() {
			cancel()
			<-encDone
		}()
	}

	r.serveCtx = ctx
	srv := &http.Server{
		Handler:           r,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(r.cfg.Log.Handler(), slog.LevelDebug),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(r.ln) }()
	r.cfg.Log.Info("speaker relay listening", "addr", r.ln.Addr().String(), "fifo", r.cfg.FIFO)
	if r.cfg.Ready != nil {
		r.cfg.Ready(true)
	}

	select {
	case <-ctx.Done():
		err = nil
	case err = <-serveErr:
		err = fmt.Errorf("speaker: serving %s: %w", r.ln.Addr(), err)
	}
	if r.cfg.Ready != nil {
		r.cfg.Ready(false)
	}
	// Shutdown closes the listener and waits for plain HTTP requests; the
	// hijacked websockets are not its business, so they are told through
	// ctx and waited for here. Every handler returns right after the
	// upgrade, so nothing worth waiting for is left to Shutdown, and it
	// would otherwise wait its whole timeout for a connection that never
	// sent a request: the short grace and Close keep SIGTERM prompt.
	sctx, scancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer scancel()
	if srv.Shutdown(sctx) != nil {
		_ = srv.Close()
	}
	if err == nil {
		<-serveErr
	}
	r.mu.Lock()
	r.stopping = true
	r.mu.Unlock()
	cancel()
	r.conns.Wait()
	return err
}

// shutdownGrace is how long stopping waits for HTTP connections the server
// still tracks: upgrades half done and connections that never sent a request.
const shutdownGrace = 200 * time.Millisecond

// read drains the FIFO for the relay's whole life, with or without
// listeners or an encoder, so nothing stale accumulates in the pipe; it
// returns when the file is closed.
func (r *Relay) read(in io.Reader) {
	var (
		p       Packetizer
		buf     = make([]byte, readSize)
		scratch = make([]byte, 0, readSize+PacketSize)
		resyncs uint64
	)
	for {
		n, err := in.Read(buf)
		if n > 0 {
			if r.resetPacketizer.Swap(false) {
				p.Reset()
			}
			// Each broadcast chunk is a fresh slice, since listeners hold
			// on to it; with nobody listening, a reused one is enough to
			// keep the packetizer in step.
			dst := scratch[:0]
			listening := r.hub.len() > 0
			if listening {
				dst = make([]byte, 0, n+PacketSize)
			}
			out := p.Append(dst, buf[:n])
			r.m.packetsIn.Add(float64(len(out) / PacketSize))
			if got := p.Resyncs(); got != resyncs {
				r.m.resyncs.Add(float64(got - resyncs))
				resyncs = got
			}
			if listening && len(out) > 0 {
				if err := r.hub.broadcast(out); err != nil {
					r.cfg.Log.Error("broadcast", "err", err)
				}
			}
		}
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				r.cfg.Log.Error("reading speaker FIFO", "path", r.cfg.FIFO, "err", err)
			}
			return
		}
	}
}

// encoder wires the on-demand encoder to the relay: ffmpeg writes into out,
// every fork is preceded by a packetizer reset, and starts count in the
// metrics.
func (r *Relay) encoder(out *os.File) *encoder {
	return &encoder{
		linger: r.cfg.Linger,
		demand: r.hub.len,
		nudge:  r.nudge,
		sup: func() *supervise.Supervisor {
			return &supervise.Supervisor{
				Reaper: r.cfg.Reaper,
				Spec: supervise.Spec{
					Name:   "ffmpeg",
					Path:   r.cfg.FFmpeg,
					Args:   ffmpegArgs(),
					Env:    ffmpegEnv(r.cfg.PulseServer, r.cfg.CookieFile),
					Stdout: out,
				},
				Backoff: supervise.Backoff{Min: 250 * time.Millisecond, Max: 5 * time.Second},
				Grace:   r.cfg.Grace,
				Log:     r.cfg.Log,
				// The previous child is reaped and the new one not forked
				// yet, so whatever the reader gets from now on is the new
				// encoder's: OnStart would run after the fork, late enough
				// for the new child's first bytes to be glued to the old
				// one's partial packet.
				BeforeStart: func(context.Context) error {
					r.resetPacketizer.Store(true)
					return nil
				},
				OnExit: func(p *supervise.Process, err error) {
					r.encoderPid.CompareAndSwap(int64(p.Pid()), 0)
				},
			}
		},
		started: func(p *supervise.Process, restart bool) {
			r.encoderPid.Store(int64(p.Pid()))
			r.m.encoderStarts.Inc()
			if restart {
				r.m.encoderRestarts.Inc()
			}
			r.cfg.Log.Info("encoder started", "pid", p.Pid(), "restart", restart)
		},
		stopped: func() {
			r.cfg.Log.Info("encoder stopped", "listeners", r.hub.len())
			// Idle again: give back what the listeners' buffers and
			// stacks took, which the scavenger would return only slowly.
			debug.FreeOSMemory()
		},
	}
}
