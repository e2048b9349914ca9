package pulse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
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
}

// Run keeps the warming stream connected until ctx is cancelled.
func (w *Warmer) Run(ctx context.Context) error {
	if w.Parec == "" {
		<-ctx.Done()
		return nil
	}
	if w.Reaper == nil {
		return errors.New("pulse warmer: no reaper")
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("pulse warmer: %w", err)
	}
	defer devnull.Close()
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
			Stdout: devnull,
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
	}
	return sup.Run(ctx)
}
