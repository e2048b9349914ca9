package speaker

import (
	"context"
	"os"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/pulse-sidecar/pulse-sidecar/internal/supervise"
)

// monitorSource is what gets encoded: everything played to the null sink
// "speaker".
const monitorSource = "speaker.monitor"

// ffmpegArgs is the encoder's command line. The stream format is fixed by the
// browser side (JSMpeg decodes MP2 in MPEG-TS): MP2, 128 kbit/s, mono,
// 44100 Hz. Everything else is there to cut latency (docs/BENCHMARKS.md,
// "Speaker latency (MP2), second wave", has the figures):
//
//   - -fflags nobuffer, -flags low_delay, -probesize 32, -analyzeduration 0:
//     no input probing or buffering, so the first frame goes out as soon as
//     PulseAudio delivers samples instead of after a ~1-2 s probe;
//   - -sample_rate 44100 -channels 1 on the input: the pulse input defaults
//     to 48 kHz stereo, which would add a resampler;
//   - -fragment_size 256: PulseAudio hands over 128 samples (2.9 ms) at a
//     time, and since ffmpeg asks for that latency, the null sink renders in
//     blocks that small too (its block is the smallest latency a stream
//     asks for: pactl shows "configured 2902 usec"). Against 512 bytes this
//     took the median from 48-50 ms to 42-43 ms on a quiet machine, for
//     ~5 % of a core more while someone listens (PulseAudio and ffmpeg wake
//     twice as often); 128 bytes bought nothing more and cost 6 % again;
//   - -pes_payload_size 0: every MP2 frame is its own PES, written as soon
//     as it is encoded. By default the TS muxer collects audio frames into
//     one PES of up to 2930 bytes and, with -muxdelay 0.001, writes a frame
//     only when the next one arrives: one frame (26.1 ms) late;
//   - -muxdelay 0 -muxpreload 0: no PCR/PTS offset to wait for;
//   - -flush_packets 1: each frame's packets leave ffmpeg's output buffer at
//     once instead of in 32 KiB writes;
//   - -correct_ts_overflow 0: keep timestamps as they are, like the original.
func ffmpegArgs() []string {
	return []string{
		"-nostdin", "-hide_banner", "-loglevel", "warning",
		"-fflags", "nobuffer", "-flags", "low_delay",
		"-probesize", "32", "-analyzeduration", "0",
		"-f", "pulse", "-sample_rate", "44100", "-channels", "1",
		"-fragment_size", "256",
		"-i", monitorSource,
		"-f", "mpegts", "-correct_ts_overflow", "0",
		"-codec:a", "mp2", "-b:a", "128k", "-ac", "1", "-ar", "44100",
		"-pes_payload_size", "0", "-muxdelay", "0", "-muxpreload", "0",
		"-flush_packets", "1",
		"pipe:1",
	}
}

// ffmpegEnv is the encoder's complete environment: the child gets nothing of
// the daemon's (which holds the cookie value itself), only where PulseAudio
// is and the file holding the cookie.
func ffmpegEnv(server, cookieFile string) []string {
	var env []string
	if server != "" {
		env = append(env, "PULSE_SERVER="+server)
	}
	if cookieFile != "" {
		env = append(env, "PULSE_COOKIE="+cookieFile)
	}
	return env
}

// encoder runs ffmpeg while anyone listens. Starting on the first listener
// rather than at boot saves a CPU's worth of encoding on idle desktops;
// lingering after the last one leaves means a page reload does not pay the
// encoder's start-up again.
type encoder struct {
	// sup makes the supervisor of one period of demand; its child writes
	// into the FIFO.
	sup    func() *supervise.Supervisor
	linger time.Duration
	// demand reports how many listeners there are; nudge wakes the loop when
	// that may have changed.
	demand func() int
	nudge  <-chan struct{}
	// stallAfter: a running encoder that has listeners and delivered
	// nothing for this long (lastData) is stuck; stalled is told, and the
	// encoder restarted.
	stallAfter time.Duration
	lastData   func() time.Time
	stalled    func()
	// started is called on every start of a child, restart tells whether it
	// replaced one that died while listeners were connected.
	started  func(p *supervise.Process, restart bool)
	stopping func() // optional
	stopped  func()
}

// run starts and stops the encoder following demand until ctx is cancelled,
// and returns once the encoder is stopped.
func (e *encoder) run(ctx context.Context) {
	var (
		cancel  context.CancelFunc
		done    chan struct{}
		startAt time.Time
	)
	// The watchdog looks a few times per stall period, and only while an
	// encoder runs: an idle relay has no timer firing.
	watch := time.NewTicker(max(e.stallAfter/4, 10*time.Millisecond))
	watch.Stop()
	defer watch.Stop()
	stop := func() {
		if cancel == nil {
			return
		}
		watch.Stop()
		if e.stopping != nil {
			e.stopping()
		}
		cancel()
		<-done
		cancel, done = nil, nil
		e.stopped()
	}
	defer stop()
	start := func() {
		sctx, c := context.WithCancel(ctx)
		d := make(chan struct{})
		s := e.sup()
		var starts atomic.Int64
		onStart := s.OnStart
		s.OnStart = func(ctx context.Context, p *supervise.Process) {
			e.started(p, starts.Add(1) > 1)
			if onStart != nil {
				onStart(ctx, p)
			}
		}
		go func() {
			defer close(d)
			_ = s.Run(sctx) // Run only returns once sctx is done
		}()
		cancel, done = c, d
		startAt = time.Now()
		watch.Reset(max(e.stallAfter/4, 10*time.Millisecond))
	}

	linger := time.NewTimer(0)
	<-linger.C
	var lingerC <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			linger.Stop()
			return
		case <-e.nudge:
			switch {
			case e.demand() > 0:
				if lingerC != nil {
					linger.Stop()
					lingerC = nil
				}
				if cancel == nil {
					start()
				}
			case cancel != nil && lingerC == nil:
				linger.Reset(e.linger)
				lingerC = linger.C
			}
		case <-lingerC:
			lingerC = nil
			if e.demand() == 0 {
				stop()
			}
		case now := <-watch.C:
			if cancel == nil || e.demand() == 0 {
				continue
			}
			since := startAt
			if t := e.lastData(); t.After(since) {
				since = t
			}
			if now.Sub(since) > e.stallAfter {
				e.stalled()
				stop()
				start()
			}
		}
	}
}

// encoder wires the on-demand MP2 encoder to the relay: ffmpeg writes into
// out, every fork is preceded by a packetizer reset, and starts count in the
// metrics.
func (r *Relay) encoder(out *os.File) *encoder {
	return r.encoderFor(encoderWiring{
		codec: CodecMP2, args: ffmpegArgs(), out: out,
		hub: r.hub, nudge: r.nudge, lastData: &r.lastData,
		beforeStart: func() { r.resetPacketizer.Store(true) },
	})
}

// encoderWiring is what differs between the codecs' encoders: each has its
// own command, output, hub and evidence of life, and starts and stops with
// its own listeners.
type encoderWiring struct {
	codec    string
	args     []string
	out      *os.File
	hub      *hub
	nudge    chan struct{}
	lastData *atomic.Int64
	// beforeStart runs before every fork, once the previous child is
	// reaped: the reader drops a partial packet or page from then on.
	beforeStart func()
	// stopping, when set, runs as the encoder is told to stop for lack of
	// listeners (or the relay stopping), before it has exited.
	stopping func()
}

func (r *Relay) encoderFor(w encoderWiring) *encoder {
	log := r.cfg.Log.With("codec", w.codec)
	e := &encoder{
		stopping:   w.stopping,
		linger:     r.cfg.Linger,
		demand:     w.hub.len,
		nudge:      w.nudge,
		stallAfter: r.cfg.StallAfter,
		lastData:   func() time.Time { return time.Unix(0, w.lastData.Load()) },
		stalled: func() {
			r.m.encoderStalls.Inc()
			log.Error("encoder stalled: no stream from ffmpeg with listeners connected, restarting it",
				"stall_after", r.cfg.StallAfter, "listeners", w.hub.len())
			r.encoderStalled()
		},
		sup: func() *supervise.Supervisor {
			return &supervise.Supervisor{
				Reaper: r.cfg.Reaper,
				Spec: supervise.Spec{
					Name:   "ffmpeg",
					Path:   r.cfg.FFmpeg,
					Args:   w.args,
					Env:    ffmpegEnv(r.cfg.PulseServer, r.cfg.CookieFile),
					Stdout: w.out,
				},
				Backoff: supervise.Backoff{Min: 250 * time.Millisecond, Max: 5 * time.Second},
				Grace:   r.cfg.Grace,
				Log:     log,
				// The previous child is reaped and the new one not forked
				// yet, so whatever the reader gets from now on is the new
				// encoder's: OnStart would run after the fork, late enough
				// for the new child's first bytes to be glued to the old
				// one's partial packet.
				BeforeStart: func(context.Context) error {
					w.beforeStart()
					return nil
				},
			}
		},
		started: func(p *supervise.Process, restart bool) {
			r.m.encoderStarts.Inc()
			if restart {
				r.m.encoderRestarts.Inc()
			}
			log.Info("encoder started", "pid", p.Pid(), "restart", restart)
			r.encoderStarted()
		},
		stopped: func() {
			log.Info("encoder stopped", "listeners", w.hub.len())
			// Idle again: give back what the listeners' buffers and
			// stacks took, which the scavenger would return only slowly.
			debug.FreeOSMemory()
		},
	}
	return e
}
