package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"
)

// Fanout feeds a synthetic stream into the FIFO and ramps reading listeners
// through Steps, measuring each step for Duration after Warmup.
type Fanout struct {
	Target   Target
	Steps    []int
	Slow     int           // listeners that never read, connected before the first step
	Duration time.Duration // measured time per step
	Warmup   time.Duration // after connecting, before measuring (1s when 0)
	// Settle is how long to wait after everyone left before the last RSS
	// reading, so the runtime can hand freed memory back.
	Settle time.Duration
	// Writer paces the synthetic stream; a zero PID means DefaultPID (PID
	// 0 is the PAT, which a real player would try to parse).
	Writer   Writer
	Progress io.Writer // one line per phase; nil: silent
}

// StepResult is one step of the ramp.
type StepResult struct {
	Listeners int     `json:"listeners"`
	Slow      int     `json:"slow"`
	Seconds   float64 `json:"seconds"`
	// BytesPerListener is how much of the synthetic stream an average
	// reading listener received in the step, KbpsPerListener the same as a
	// rate; OtherBytesPerListener is whatever else the relay sent (its own
	// encoder's stream, if it runs one).
	BytesPerListener      float64 `json:"bytes_per_listener"`
	OtherBytesPerListener float64 `json:"other_bytes_per_listener"`
	KbpsPerListener       float64 `json:"kbps_per_listener"`
	Delay                 Summary `json:"delay"`
	Lost                  uint64  `json:"lost_packets"`
	Dropped               int     `json:"dropped_listeners"`
	CPU                   float64 `json:"cpu_share"` // of one core
	RSS                   int64   `json:"rss_bytes"`
	RSSAnon               int64   `json:"rss_anon_bytes,omitempty"`
	RSSPerListener        float64 `json:"rss_growth_per_listener_bytes"`
	Goroutines            int     `json:"goroutines,omitempty"`
	FDs                   int     `json:"fds"`
	Load1                 float64 `json:"load1"`
}

// FanoutResult is the whole run.
type FanoutResult struct {
	Machine Machine      `json:"machine"`
	BitRate int          `json:"bit_rate"`
	Idle    Snapshot     `json:"idle"`
	Steps   []StepResult `json:"steps"`
	Left    Snapshot     `json:"after_all_left"`
	Settled Snapshot     `json:"after_settle"`
	Written WriterStats  `json:"written"`
}

func (f *Fanout) logf(format string, args ...any) {
	if f.Progress != nil {
		fmt.Fprintf(f.Progress, format+"\n", args...)
	}
}

// Run performs the ramp. Listeners and the writer are gone when it returns.
func (f *Fanout) Run(ctx context.Context) (FanoutResult, error) {
	res := FanoutResult{Machine: ThisMachine(f.Target.procRoot()), BitRate: f.Writer.BitRate}
	if len(f.Steps) == 0 {
		return res, errors.New("bench: fanout needs at least one listener step")
	}
	warmup := f.Warmup
	if warmup == 0 {
		warmup = time.Second
	}
	if f.Writer.PID == 0 {
		f.Writer.PID = DefaultPID
	}
	var err error
	if res.Idle, err = f.Target.Snapshot(ctx); err != nil {
		return res, err
	}

	out, err := openFIFO(f.Target.FIFO)
	if err != nil {
		return res, err
	}
	wctx, stopWriter := context.WithCancel(ctx)
	type written struct {
		st  WriterStats
		err error
	}
	wdone := make(chan written, 1)
	go func() {
		st, err := f.Writer.Run(wctx, out)
		wdone <- written{st, err}
	}()
	// Closing the FIFO is what unblocks a max-rate write into a full pipe.
	stop := func() error {
		stopWriter()
		out.Close()
		w := <-wdone
		res.Written = w.st
		if errors.Is(w.err, os.ErrClosed) {
			return nil
		}
		return w.err
	}

	pool := &Pool{URL: f.Target.WS, PID: f.Writer.PID}
	runErr := f.ramp(ctx, pool, &res, warmup)
	pool.Close()
	werr := stop()
	if err := errors.Join(runErr, werr); err != nil {
		return res, err
	}

	f.logf("all listeners left; waiting for the relay to notice")
	if err := f.Target.WaitListeners(ctx, 0, 30*time.Second); err != nil {
		return res, err
	}
	if res.Left, err = f.Target.Snapshot(ctx); err != nil {
		return res, err
	}
	if f.Settle > 0 {
		f.logf("settling %v", f.Settle)
		select {
		case <-time.After(f.Settle):
		case <-ctx.Done():
			return res, ctx.Err()
		}
	}
	res.Settled, err = f.Target.Snapshot(ctx)
	return res, err
}

func (f *Fanout) ramp(ctx context.Context, pool *Pool, res *FanoutResult, warmup time.Duration) error {
	if f.Slow > 0 {
		f.logf("connecting %d slow listeners", f.Slow)
		if err := pool.AddSlow(ctx, f.Slow); err != nil {
			return err
		}
	}
	for _, n := range f.Steps {
		f.logf("step: %d listeners", n)
		if err := pool.Grow(ctx, n); err != nil {
			return err
		}
		select {
		case <-time.After(warmup):
		case <-ctx.Done():
			return ctx.Err()
		}
		pool.Take()
		before, err := f.Target.Snapshot(ctx)
		if err != nil {
			return err
		}
		select {
		case <-time.After(f.Duration):
		case <-ctx.Done():
			return ctx.Err()
		}
		st := pool.Take()
		after, err := f.Target.Snapshot(ctx)
		if err != nil {
			return err
		}
		secs := after.At.Sub(before.At).Seconds()
		sr := StepResult{
			Listeners:  st.Readers,
			Slow:       f.Slow,
			Seconds:    secs,
			Delay:      Summarize(st.Delays),
			Lost:       st.Lost,
			Dropped:    st.Dropped,
			CPU:        CPUShareBetween(before, after),
			RSS:        after.RSS,
			RSSAnon:    after.RSSAnon,
			Load1:      Load1(f.Target.procRoot()),
			Goroutines: after.Goroutines,
			FDs:        after.FDs,
		}
		if st.Readers > 0 {
			ours := float64(st.Stamped * PacketSize)
			sr.BytesPerListener = ours / float64(st.Readers)
			sr.OtherBytesPerListener = (float64(st.Bytes) - ours) / float64(st.Readers)
			sr.KbpsPerListener = sr.BytesPerListener * 8 / 1000 / secs
			// Anonymous memory when /proc has it: the file-backed part is
			// the binary's code, paged in once whatever the listener count.
			grown := after.RSS - res.Idle.RSS
			if after.RSSAnon > 0 {
				grown = after.RSSAnon - res.Idle.RSSAnon
			}
			sr.RSSPerListener = float64(grown) / float64(st.Readers+f.Slow)
		}
		res.Steps = append(res.Steps, sr)
		f.logf("  %s", sr.line())
	}
	return nil
}

// openFIFO opens the speaker FIFO for writing, refusing anything else: a
// regular file there would silently swallow the stream.
func openFIFO(path string) (*os.File, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("bench: speaker FIFO: %w", err)
	}
	if fi.Mode()&os.ModeNamedPipe == 0 {
		return nil, fmt.Errorf("bench: speaker FIFO %s is a %v, not a FIFO", path, fi.Mode().Type())
	}
	// O_NONBLOCK makes the open fail with ENXIO when no relay reads the
	// FIFO instead of hanging, and lets Go's poller park a write into a full
	// pipe, so closing the file ends it. Writes of up to PIPE_BUF bytes
	// stay atomic in this mode.
	f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("bench: opening speaker FIFO %s (is the relay running?): %w", path, err)
	}
	return f, nil
}
