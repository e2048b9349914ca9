// Package speaker relays the desktop's sound to browsers: ffmpeg encodes
// PulseAudio's speaker monitor into MPEG-TS and writes it to a FIFO; the relay
// reads the FIFO, cuts it into whole TS packets and fans them out to
// websocket listeners, each behind its own bounded queue. The encoder runs
// only while someone listens.
//
// Files: relay.go wires the parts and runs them; reader.go drains the FIFO;
// packet.go cuts packets; hub.go fans them out; listener.go serves one
// websocket; encoder.go runs ffmpeg on demand and restarts it when it stalls;
// opus.go is the second stream (?codec=opus): Ogg Opus pages, one per message.
package speaker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulse-sidecar/pulse-sidecar/internal/fifo"
	"github.com/pulse-sidecar/pulse-sidecar/internal/supervise"
	"github.com/pulse-sidecar/pulse-sidecar/internal/wsserver"
)

// Config configures a Relay. Zero durations and sizes take the defaults in
// brackets.
type Config struct {
	// Server is the websocket port: address, origins, authentication,
	// connection limits, pings. Service, Admit, MaxSessions and SendBuffer
	// are the relay's to set.
	Server wsserver.Config
	FIFO   string // speaker FIFO; created (0600) if missing, removed on exit
	// FFmpeg is the encoder binary. Empty: no encoder is run and the relay
	// only forwards whatever something else writes into the FIFO.
	FFmpeg      string
	PulseServer string        // PULSE_SERVER for the encoder, e.g. "unix:/tmp/.pulse.sock"
	CookieFile  string        // PULSE_COOKIE for the encoder
	Linger      time.Duration // encoder keeps running after the last listener left [10s]
	Grace       time.Duration // encoder stop: TERM, then KILL after Grace [MaxEncoderGrace]
	// StallAfter: with listeners connected and no stream from the encoder
	// for this long, the relay reports not ready and restarts it [5s].
	StallAfter time.Duration

	MaxListeners int // listeners at once; more get 503 before the upgrade [64]
	// MaxBehind bounds how far, in audio time, a listener may lag behind
	// live, kernel send buffer included; past it the listener skips to live
	// [0.5s].
	MaxBehind      time.Duration
	SlowCloseAfter time.Duration // a listener behind this long is closed [10s]

	// OpusBitrate is the Opus stream's bitrate in bits/s [96000]; OpusFrame
	// its frame duration, one of OpusFrames [10ms].
	OpusBitrate int
	OpusFrame   time.Duration

	Reaper     *supervise.Reaper // required with FFmpeg
	Log        *slog.Logger      // [discard]
	Ready      func(bool)        // told true once serving, false when stopping or stalled [none]
	Registerer prometheus.Registerer
}

// MaxEncoderGrace is as long as an encoder is given to exit on TERM before
// the KILL. ffmpeg exits within tens of milliseconds when it sees the TERM,
// and an encoder has nothing to save at a stop; but one blocked where it
// never looks at its signal flag (seen: waiting on a PulseAudio that went
// away in the same moment) would otherwise hold the daemon's stop for the
// whole grace PulseAudio gets.
const MaxEncoderGrace = 500 * time.Millisecond

// pipeSize bounds what can sit in the FIFO unread: ~0.6 s of stream. The
// reader drains the pipe continuously, so this only matters if it stalls.
const pipeSize = 16 << 10

// readSize is large enough to take a full pipe in one read, so a backlog
// turns into one chunk and one wakeup per listener.
const readSize = 32 << 10

// wireBitRate is the MP2 stream's rate on the wire: 128 kbit/s of MP2
// become ~207 kbit/s in MPEG-TS once every ~26 ms frame is flushed as its
// own PES (measured from the stream, see docs/BENCHMARKS.md). MaxBehind is
// converted to bytes with it.
const wireBitRate = 207_000

// sendBuffer is asked of the kernel for every listener socket (Linux
// doubles it). Left alone, loopback and LAN sockets autotune up to
// tcp_wmem's 4 MiB, minutes of audio, before the hub ever sees a listener
// fall behind.
const sendBuffer = 4 << 10

// queueBytes is the hub's per-listener bound for maxBehind of audio: what
// the stream carries in that time, less what the kernel may hold in the
// socket's send buffer, and never less than a few packets.
func queueBytes(maxBehind time.Duration) int {
	budget := int(maxBehind.Seconds() * wireBitRate / 8)
	return max(budget-2*sendBuffer, 4*PacketSize)
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.Linger, 10*time.Second)
	def(&c.Grace, MaxEncoderGrace)
	def(&c.StallAfter, 5*time.Second)
	def(&c.MaxBehind, 500*time.Millisecond)
	def(&c.SlowCloseAfter, 10*time.Second)
	if c.MaxListeners == 0 {
		c.MaxListeners = 64
	}
	if c.OpusBitrate == 0 {
		c.OpusBitrate = defaultOpusBitrate
	}
	def(&c.OpusFrame, defaultOpusFrame)
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Ready == nil {
		c.Ready = func(bool) {}
	}
}

func (c *Config) validate() error {
	var errs []error
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
		{"linger", c.Linger}, {"grace", c.Grace}, {"stall after", c.StallAfter},
		{"max behind", c.MaxBehind}, {"slow close after", c.SlowCloseAfter},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s %v is negative", d.name, d.v))
		}
	}
	if c.MaxListeners < 0 {
		errs = append(errs, fmt.Errorf("max listeners %d is negative", c.MaxListeners))
	}
	// libopus's own range.
	if c.OpusBitrate < 6000 || c.OpusBitrate > 510000 {
		errs = append(errs, fmt.Errorf("opus bitrate %d: want 6000..510000 bits/s", c.OpusBitrate))
	}
	if !validOpusFrame(c.OpusFrame) {
		errs = append(errs, fmt.Errorf("opus frame %v: want one of %v", c.OpusFrame, OpusFrames))
	}
	return errors.Join(errs...)
}

// Relay is the speaker websocket server and the encoder it runs on demand.
type Relay struct {
	cfg   Config
	srv   *wsserver.Server
	m     *metrics
	hub   *hub
	nudge chan struct{} // listener count changed; buffered 1
	opus  *opusStream   // the ?codec=opus stream, see opus.go

	// resetPacketizer is set before an encoder is forked, so the reader
	// drops a partial packet left by the previous one.
	resetPacketizer atomic.Bool
	// lastData is when the reader last got bytes (UnixNano): the encoder
	// watchdog's evidence that ffmpeg is alive.
	lastData atomic.Int64

	readyMu sync.Mutex
	serving bool
	stalled bool
	// replaced: an encoder was started since the stall. Until then what
	// flows is the stuck encoder's last output (SIGCONT before TERM lets
	// it flush), which says nothing about the next one.
	replaced bool
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
	r := &Relay{cfg: cfg, m: m, nudge: make(chan struct{}, 1)}
	r.hub = &hub{
		queueBytes: queueBytes(cfg.MaxBehind),
		slowAfter:  cfg.SlowCloseAfter,
		m:          m,
		changed: func() {
			select {
			case r.nudge <- struct{}{}:
			default:
			}
		},
	}
	r.opus = r.newOpusStream()
	sc := cfg.Server
	sc.Service = "speaker"
	sc.MaxSessions = cfg.MaxListeners
	sc.SendBuffer = sendBuffer
	sc.Admit = r.admit
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

// Addr is the address the relay listens on (useful with port 0).
func (r *Relay) Addr() net.Addr { return r.srv.Addr() }

// Run serves until ctx is cancelled; then it closes every listener, stops the
// encoder, removes the FIFO and returns nil. It returns an error only when
// the relay cannot start or its listener fails.
func (r *Relay) Run(ctx context.Context) error {
	// The daemon owns this path: a FIFO found there is one a previous run
	// left behind when it died, so it is reused and removed on exit like a
	// fresh one. Anything else there is refused and left alone.
	if err := fifo.Make(r.cfg.FIFO, 0o600); err != nil {
		return err
	}
	defer func() {
		if err := fifo.Remove(r.cfg.FIFO); err != nil {
			r.cfg.Log.Warn("removing speaker FIFO", "path", r.cfg.FIFO, "err", err)
		}
	}()
	in, err := fifo.OpenReadWrite(r.cfg.FIFO)
	if err != nil {
		return err
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
			return err
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

	opusDone := make(chan error, 1)
	go func() {
		err := r.runOpus(ctx)
		if err != nil {
			// The Opus stream is part of the relay: rather than serve on
			// with a deaf Opus encoder, the relay stops, and the group.
			cancel()
		}
		opusDone <- err
	}()

	r.cfg.Log.Info("speaker relay listening", "addr", r.Addr().String(), "fifo", r.cfg.FIFO,
		"max_listeners", r.cfg.MaxListeners, "queue_bytes", r.hub.queueBytes,
		"opus_bitrate", r.cfg.OpusBitrate, "opus_frame", r.cfg.OpusFrame, "opus_queue_bytes", r.opus.hub.queueBytes)
	r.setReady(func() { r.serving = true })
	defer r.setReady(func() { r.serving = false })
	serveErr := r.srv.Run(ctx)
	cancel()
	if err := <-opusDone; err != nil {
		return fmt.Errorf("opus stream: %w", err)
	}
	return serveErr
}

// setReady changes the readiness inputs under one lock and reports the
// result, so that a stall cleared during shutdown cannot report ready.
func (r *Relay) setReady(change func()) {
	r.readyMu.Lock()
	defer r.readyMu.Unlock()
	change()
	r.cfg.Ready(r.serving && !r.stalled)
}

// Close releases the port of a Relay that will not Run.
func (r *Relay) Close() error { return r.srv.Close() }
