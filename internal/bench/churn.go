package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/gorilla/websocket"
)

// Churn connects and disconnects listeners at a set rate, then compares the
// relay's goroutines, descriptors and memory with where they started: a leak
// of one goroutine per listener shows as thousands.
type Churn struct {
	Target Target
	Cycles int
	Rate   float64       // cycles started per second
	Settle time.Duration // wait after the last cycle before the final reading
	// Concurrency bounds cycles in flight (64 when 0), so a relay that
	// stalls slows the churn down instead of piling up sockets here.
	Concurrency int
	Progress    io.Writer
}

// ChurnResult is a churn run.
type ChurnResult struct {
	Machine  Machine  `json:"machine"`
	Cycles   int      `json:"cycles"`
	Failed   int64    `json:"failed"`
	Seconds  float64  `json:"seconds"`
	Before   Snapshot `json:"before"`
	Left     Snapshot `json:"after_all_left"`
	Settled  Snapshot `json:"after_settle"`
	FirstErr string   `json:"first_error,omitempty"`
}

// Run performs the cycles.
func (c *Churn) Run(ctx context.Context) (ChurnResult, error) {
	res := ChurnResult{Machine: ThisMachine(c.Target.procRoot()), Cycles: c.Cycles}
	var err error
	if res.Before, err = c.Target.Snapshot(ctx); err != nil {
		return res, err
	}
	conc := c.Concurrency
	if conc <= 0 {
		conc = 64
	}
	var every time.Duration
	if c.Rate > 0 {
		every = time.Duration(float64(time.Second) / c.Rate)
	}
	d := websocket.Dialer{HandshakeTimeout: 30 * time.Second, ReadBufferSize: 1024, WriteBufferSize: 256}
	var (
		wg       sync.WaitGroup
		failed   atomic.Int64
		firstErr sync.Once
		sem      = make(chan struct{}, conc)
	)
	start := time.Now()
	for i := 0; i < c.Cycles && ctx.Err() == nil; i++ {
		if every > 0 {
			if wait := time.Until(start.Add(time.Duration(i) * every)); wait > 0 {
				time.Sleep(wait)
			}
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := cycle(ctx, d, c.Target.WS); err != nil {
				failed.Add(1)
				firstErr.Do(func() { res.FirstErr = err.Error() })
			}
		}()
		if c.Progress != nil && (i+1)%1000 == 0 {
			fmt.Fprintf(c.Progress, "%d cycles\n", i+1)
		}
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	res.Failed = failed.Load()
	if err := c.Target.WaitListeners(ctx, 0, 30*time.Second); err != nil {
		return res, err
	}
	if res.Left, err = c.Target.Snapshot(ctx); err != nil {
		return res, err
	}
	select {
	case <-time.After(c.Settle):
	case <-ctx.Done():
		return res, ctx.Err()
	}
	res.Settled, err = c.Target.Snapshot(ctx)
	return res, err
}

// cycle is one listener's life: connect, take one message so the relay has
// really served it, say goodbye properly.
func cycle(ctx context.Context, d websocket.Dialer, url string) error {
	conn, resp, err := d.DialContext(ctx, url, http.Header{})
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := conn.NextReader(); err != nil {
		return fmt.Errorf("bench: first message from %s: %w", url, err)
	}
	return conn.WriteControl(websocket.CloseMessage,
		websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
}

// WriteTable prints the churn result for a terminal.
func (r ChurnResult) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "machine: %d CPUs, %s MiB, load %.2f at start, %s\n", r.Machine.CPUs, mib(r.Machine.MemTotal), r.Machine.Load1, r.Machine.Date)
	fmt.Fprintf(w, "%d cycles in %.1f s, %d failed %s\n", r.Cycles, r.Seconds, r.Failed, r.FirstErr)
	fmt.Fprintf(w, "%-14s %10s %10s %10s\n", "", "before", "all left", "settled")
	fmt.Fprintf(w, "%-14s %10d %10d %10d\n", "goroutines", r.Before.Goroutines, r.Left.Goroutines, r.Settled.Goroutines)
	fmt.Fprintf(w, "%-14s %10d %10d %10d\n", "FDs", r.Before.FDs, r.Left.FDs, r.Settled.FDs)
	fmt.Fprintf(w, "%-14s %10d %10d %10d\n", "threads", r.Before.Threads, r.Left.Threads, r.Settled.Threads)
	_, err := fmt.Fprintf(w, "%-14s %10s %10s %10s\n", "RSS MiB", mib(r.Before.RSS), mib(r.Left.RSS), mib(r.Settled.RSS))
	return err
}

// WriteTable prints the latency result for a terminal.
func (r LatencyResult) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "machine: %d CPUs, %s MiB, load %.2f at start, %.2f at end, %s\n",
		r.Machine.CPUs, mib(r.Machine.MemTotal), r.Machine.Load1, r.Load1, r.Machine.Date)
	cold := "unknown"
	if r.Cold != nil {
		cold = fmt.Sprint(*r.Cold)
	}
	fmt.Fprintf(w, "time to first audio: %s ms (encoder cold: %s)\n", ms(r.FirstAudio), cold)
	fmt.Fprintf(w, "listener stream: %d MP2 frames, %d continuity errors, %d bytes skipped\n", r.Frames, r.Lost, r.Resyncs)
	fmt.Fprintf(w, "%s start -> arrival of the TS packet completing the onset's frame, %d bursts (%d missed), %d background listeners:\n",
		r.Player, r.Summary.N, r.Missed, r.Background)
	fmt.Fprintf(w, "  median %s ms, p95 %s ms, max %s ms\n", ms(r.Summary.P50), ms(r.Summary.P95), ms(r.Summary.Max))
	if len(r.Stages) > 0 {
		fmt.Fprintf(w, "breakdown (per-burst differences; encoder copy: %s):\n", strings.Join(r.Encoder, " "))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  stage\tn\tmedian ms\tp95 ms\t")
		for _, s := range r.Stages {
			fmt.Fprintf(tw, "  %s\t%d\t%s\t%s\t\n", s.Name, s.Summary.N, ms(s.Summary.P50), ms(s.Summary.P95))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	for _, p := range r.Pulse {
		fmt.Fprintf(w, "pulseaudio: %s\n", p)
	}
	if r.Heard != nil {
		fmt.Fprintf(w, "heard: %s start -> onset at JSMpeg's audio output in Chromium, %d bursts: median %s ms, p95 %s ms, max %s ms\n",
			r.Player, r.Heard.N, ms(r.Heard.P50), ms(r.Heard.P95), ms(r.Heard.Max))
		writeBrowser(w, r.Browser)
	}
	if r.HeardAdded != nil {
		fmt.Fprintf(w, "proof: the page's tap behind a %s ms DelayNode heard the bursts %s ms later (median of %d; p95 %s ms)\n",
			ms(r.ProofDelay), ms(r.HeardAdded.P50), r.HeardAdded.N, ms(r.HeardAdded.P95))
	}
	if r.Added != nil {
		fmt.Fprintf(w, "proof: listener behind a %s ms delay proxy measured %s ms more (median of %d bursts; p95 %s ms)\n",
			ms(r.ProofDelay), ms(r.Added.P50), r.Added.N, ms(r.Added.P95))
	}
	return nil
}
