package pulse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/pulse-sidecar/pulse-sidecar/internal/supervise"
)

// WarmLatency is the latency the warmer asks of the speaker's monitor. It is
// the ceiling on how long a freshly started encoder waits for its first
// samples; PulseAudio wakes up once per period for it, so a shorter period
// costs more idle CPU.
const WarmLatency = 30 * time.Millisecond

// Warmer keeps a low-latency recording stream on the speaker's monitor.
//
// Why: an idle module-null-sink renders in blocks of its maximum latency (2 s)
// and a recording stream that connects waits for the current block to end. An
// encoder started on demand would therefore deliver its first audio ~2 s after
// a listener arrived (measured here: 2.07 s median; 0.25 s with a warm sink).
// A stream that stays connected keeps the sink rendering in WarmLatency
// blocks, at a measured cost of about 1-2 % of one core while idle. Setting
// the warmer's binary to "" turns it off for deployments that prefer the
// idle CPU to the start-up latency.
type Warmer struct {
	Parec      string // parecord/parec binary (pulseaudio-utils)
	Socket     string
	CookieFile string
	Cookie     []byte
	Reaper     *supervise.Reaper
	Log        *slog.Logger
	// Ready reports whether the warming stream delivers audio. The daemon is
	// not ready before: an encoder started by a listener that came in
	// earlier would still wait for the idle sink's 2 s block.
	Ready func(bool)
}

// Run keeps the warming stream connected until ctx is cancelled.
func (w *Warmer) Run(ctx context.Context) error {
	ready := w.Ready
	if ready == nil {
		ready = func(bool) {}
	}
	if w.Parec == "" {
		ready(true)
		<-ctx.Done()
		return nil
	}
	if w.Reaper == nil {
		return errors.New("pulse warmer: no reaper")
	}
	// The recorder writes into a pipe the warmer drains, rather than into
	// /dev/null, so that the first bytes tell when the sink is warm. The
	// warmer keeps the write end open too: a recorder exiting is then not
	// EOF, and every restart gets the same pipe.
	r, wr, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("pulse warmer: %w", err)
	}
	defer wr.Close()
	var flowing atomic.Bool
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		buf := make([]byte, 16<<10)
		for {
			if _, err := r.Read(buf); err != nil {
				return
			}
			if flowing.CompareAndSwap(false, true) {
				ready(true)
			}
		}
	}()
	defer func() {
		r.Close()
		<-drained
	}()
	sup := &supervise.Supervisor{
		Reaper: w.Reaper,
		Spec: supervise.Spec{
			Name: "warmer",
			Path: w.Parec,
			Args: []string{
				fmt.Sprintf("--latency-msec=%d", WarmLatency.Milliseconds()),
				"--device=speaker.monitor", "--raw",
				"--format=s16le", "--rate=44100", "--channels=1",
				"--client-name=pulse-sidecar-warmer", "--stream-name=keep speaker warm",
			},
			Env:    []string{"PULSE_SERVER=unix:" + w.Socket, "PULSE_COOKIE=" + w.CookieFile},
			Stdout: wr,
			Log:    w.Log,
		},
		Backoff: supervise.Backoff{Min: 200 * time.Millisecond, Max: 5 * time.Second},
		Grace:   time.Second,
		Log:     w.Log,
		// Starting before PulseAudio answers would only fail and log; wait for it.
		BeforeStart: func(ctx context.Context) error {
			for {
				pctx, cancel := context.WithTimeout(ctx, time.Second)
				err := Probe(pctx, w.Socket, w.Cookie)
				cancel()
				if err == nil {
					return nil
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(100 * time.Millisecond):
				}
			}
		},
		OnExit: func(*supervise.Process, error) {
			flowing.Store(false)
			ready(false)
		},
	}
	return sup.Run(ctx)
}
