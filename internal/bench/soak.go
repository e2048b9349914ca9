package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// Soak runs everything that goes wrong in a day at once, for Duration:
// listeners come and go, some stall (never read), some TCP clients send
// half a request and wait, and PulseAudio and the encoder are killed in
// turn. One reference listener stays connected throughout; the result says
// what survived: the daemon, the reference listener, readiness, audio after
// each kill, and the daemon's footprint once everyone left.
type Soak struct {
	Target   Target // WS, PID (the daemon: its children are killed), MetricsURL
	ReadyURL string // /readyz; empty: not polled
	Duration time.Duration
	// ChurnRate is listeners connected (and properly closed after their
	// first message) per second.
	ChurnRate float64
	Stalled   int           // listeners that never read, connected at the start
	HalfOpen  int           // TCP connections that send half a request, at the start
	KillEvery time.Duration // SIGKILL PulseAudio and the encoder in turn (0: never)
	Settle    time.Duration // after everyone left, before the last footprint
	Progress  io.Writer
}

// SoakResult is what survived a soak.
type SoakResult struct {
	Machine Machine `json:"machine"`
	Seconds float64 `json:"seconds"`

	DaemonAlive  bool `json:"daemon_alive"`
	ReadyAtEnd   bool `json:"ready_at_end"`
	ReadyPolls   int  `json:"ready_polls"`
	NotReadyPoll int  `json:"not_ready_polls"`

	ReferenceBytes     int64   `json:"reference_bytes"`
	ReferenceConnected bool    `json:"reference_connected_throughout"`
	ReferenceMaxGap    float64 `json:"reference_longest_gap_s"`

	ChurnOK       int64  `json:"churn_ok"`
	ChurnFailed   int64  `json:"churn_failed"`
	ChurnFirstErr string `json:"churn_first_error,omitempty"`

	Stalled          int `json:"stalled_connected"`
	HalfOpen         int `json:"half_open_connected"`
	HalfOpenClosed   int `json:"half_open_closed_by_daemon"`
	ListenersAtPeak  int `json:"listeners_metric_at_end_of_load"`
	ListenersAtClose int `json:"listeners_metric_after_all_left"`

	Kills []SoakKill `json:"kills"`

	Before  Snapshot `json:"before"`
	Settled Snapshot `json:"after_settle"`
}

// SoakKill is one kill and how long the reference listener waited for
// audio again.
type SoakKill struct {
	What      string  `json:"what"`
	At        float64 `json:"at_s"`
	Recovered bool    `json:"recovered"`
	// Seconds from the kill until the reference listener had 8 KiB (~0.3 s
	// of the 207 kbit/s stream) more than half a second after it.
	Seconds float64 `json:"seconds"`
}

// reference is the listener that stays from start to end.
type reference struct {
	conn   *websocket.Conn
	bytes  atomic.Int64
	last   atomic.Int64 // unix nanos of the last message
	maxGap atomic.Int64
	done   chan struct{}
	err    error
}

func (r *reference) read() {
	defer close(r.done)
	for {
		_, rd, err := r.conn.NextReader()
		if err != nil {
			r.err = err
			return
		}
		n, err := io.Copy(io.Discard, rd)
		now := time.Now().UnixNano()
		if prev := r.last.Swap(now); prev != 0 && now-prev > r.maxGap.Load() {
			r.maxGap.Store(now - prev)
		}
		r.bytes.Add(n)
		if err != nil {
			r.err = err
			return
		}
	}
}

// Run performs the soak.
func (s *Soak) Run(ctx context.Context) (SoakResult, error) {
	res := SoakResult{Machine: ThisMachine(s.Target.procRoot())}
	var err error
	if res.Before, err = s.Target.Snapshot(ctx); err != nil {
		return res, err
	}
	start := time.Now()
	d := websocket.Dialer{HandshakeTimeout: 30 * time.Second, ReadBufferSize: 4096, WriteBufferSize: 512}
	conn, resp, err := d.DialContext(ctx, s.Target.WS, http.Header{})
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		return res, fmt.Errorf("bench: reference listener: %w", err)
	}
	ref := &reference{conn: conn, done: make(chan struct{})}
	go ref.read()
	defer func() { conn.Close(); <-ref.done }()

	pool := &Pool{URL: s.Target.WS}
	defer pool.Close()
	if s.Stalled > 0 {
		if err := pool.AddSlow(ctx, s.Stalled); err != nil {
			return res, err
		}
		res.Stalled = s.Stalled
	}
	half, err := halfOpen(ctx, s.Target.WS, s.HalfOpen)
	defer func() {
		for _, c := range half {
			c.Close()
		}
	}()
	if err != nil {
		return res, err
	}
	res.HalfOpen = len(half)

	runCtx, stop := context.WithTimeout(ctx, s.Duration)
	defer stop()
	var wg sync.WaitGroup
	var mu sync.Mutex
	wg.Add(3)
	go func() { defer wg.Done(); s.churn(runCtx, &res, &mu) }()
	go func() { defer wg.Done(); s.pollReady(runCtx, &res, &mu) }()
	go func() { defer wg.Done(); s.kill(runCtx, ref, start, &res, &mu) }()
	wg.Wait()
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	res.Seconds = time.Since(start).Seconds()

	if snap, err := s.Target.Snapshot(ctx); err == nil {
		res.ListenersAtPeak = snap.Listeners
	}
	res.ReferenceBytes = ref.bytes.Load()
	res.ReferenceMaxGap = time.Duration(ref.maxGap.Load()).Seconds()
	select {
	case <-ref.done:
	default:
		res.ReferenceConnected = true
	}
	for _, c := range half {
		c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		var b [1]byte
		if _, err := c.Read(b[:]); err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				res.HalfOpenClosed++
			}
		}
	}
	res.DaemonAlive = s.Target.PID <= 0 || syscall.Kill(s.Target.PID, 0) == nil
	res.ReadyAtEnd = s.waitReady(ctx, 30*time.Second)

	pool.Close()
	conn.Close()
	for _, c := range half {
		c.Close()
	}
	if err := s.Target.WaitListeners(ctx, 0, 30*time.Second); err != nil {
		return res, err
	}
	if snap, err := s.Target.Snapshot(ctx); err == nil {
		res.ListenersAtClose = snap.Listeners
	}
	select {
	case <-time.After(s.Settle):
	case <-ctx.Done():
		return res, ctx.Err()
	}
	res.Settled, err = s.Target.Snapshot(ctx)
	return res, err
}

func (s *Soak) churn(ctx context.Context, res *SoakResult, mu *sync.Mutex) {
	if s.ChurnRate <= 0 {
		return
	}
	every := time.Duration(float64(time.Second) / s.ChurnRate)
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, ReadBufferSize: 1024, WriteBufferSize: 256}
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		select {
		case sem <- struct{}{}:
		default:
			continue // 64 in flight: the daemon is slow; do not pile up
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			// Not runCtx: a cycle started before the end finishes.
			cctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			err := cycle(cctx, d, s.Target.WS)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.ChurnFailed++
				if res.ChurnFirstErr == "" {
					res.ChurnFirstErr = err.Error()
				}
				return
			}
			res.ChurnOK++
		}()
	}
}

func (s *Soak) pollReady(ctx context.Context, res *SoakResult, mu *sync.Mutex) {
	if s.ReadyURL == "" {
		return
	}
	c := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		ok := readyOnce(ctx, c, s.ReadyURL)
		mu.Lock()
		res.ReadyPolls++
		if !ok {
			res.NotReadyPoll++
		}
		mu.Unlock()
	}
}

func readyOnce(ctx context.Context, c *http.Client, u string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return false
	}
	resp, err := c.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func (s *Soak) waitReady(ctx context.Context, within time.Duration) bool {
	if s.ReadyURL == "" {
		return true
	}
	c := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if readyOnce(ctx, c, s.ReadyURL) {
			return true
		}
		time.Sleep(200 * time.Millisecond)
	}
	return false
}

// kill takes turns killing the daemon's PulseAudio and encoder, and times
// how long the reference listener waits for audio again.
func (s *Soak) kill(ctx context.Context, ref *reference, start time.Time, res *SoakResult, mu *sync.Mutex) {
	if s.KillEvery <= 0 || s.Target.PID <= 0 {
		return
	}
	victims := []string{"pulseaudio", "ffmpeg"}
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.KillEvery):
		}
		what := victims[i%len(victims)]
		pids := childrenNamed(s.Target.procRoot(), s.Target.PID, what)
		if len(pids) == 0 {
			continue
		}
		at := time.Now()
		for _, p := range pids {
			syscall.Kill(p, syscall.SIGKILL)
		}
		k := SoakKill{What: what, At: at.Sub(start).Seconds()}
		// Bytes in flight at the kill still arrive; count only what comes
		// after the pipeline had time to notice.
		time.Sleep(500 * time.Millisecond)
		base := ref.bytes.Load()
		bound := time.Now().Add(max(s.KillEvery, 30*time.Second))
		for time.Now().Before(bound) {
			if ref.bytes.Load() >= base+8<<10 {
				k.Recovered = true
				k.Seconds = time.Since(at).Seconds()
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if s.Progress != nil {
			fmt.Fprintf(s.Progress, "killed %s at %.1f s: audio again after %.2f s (recovered %v)\n", what, k.At, k.Seconds, k.Recovered)
		}
		mu.Lock()
		res.Kills = append(res.Kills, k)
		mu.Unlock()
	}
}

// childrenNamed returns the live children of ppid whose command is comm.
func childrenNamed(root string, ppid int, comm string) []int {
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join(root, e.Name(), "stat"))
		if err != nil {
			continue
		}
		if pp, err := ParseStatPPID(stat); err == nil && pp == ppid && commOf(stat) == comm {
			out = append(out, pid)
		}
	}
	return out
}

// halfOpen opens n TCP connections to the websocket's host that send the
// start of a request and nothing more.
func halfOpen(ctx context.Context, wsURL string, n int) ([]net.Conn, error) {
	if n <= 0 {
		return nil, nil
	}
	u, err := url.Parse(wsURL)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	var nd net.Dialer
	var out []net.Conn
	for i := 0; i < n; i++ {
		c, err := nd.DialContext(ctx, "tcp", u.Host)
		if err != nil {
			return out, fmt.Errorf("bench: half-open connection %d: %w", i, err)
		}
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: "+u.Host+"\r\nUpgrade: webs"); err != nil {
			c.Close()
			return out, fmt.Errorf("bench: half-open connection %d: %w", i, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// WriteTable prints the soak result for a terminal.
func (r SoakResult) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "machine: %d CPUs, %s MiB, load %.2f at start, %s\n", r.Machine.CPUs, mib(r.Machine.MemTotal), r.Machine.Load1, r.Machine.Date)
	fmt.Fprintf(w, "soak of %.0f s\n", r.Seconds)
	fmt.Fprintf(w, "daemon alive %v, ready at end %v, not ready in %d of %d polls\n", r.DaemonAlive, r.ReadyAtEnd, r.NotReadyPoll, r.ReadyPolls)
	fmt.Fprintf(w, "reference listener: connected throughout %v, %d bytes, longest gap %.2f s\n", r.ReferenceConnected, r.ReferenceBytes, r.ReferenceMaxGap)
	fmt.Fprintf(w, "churn: %d ok, %d failed %s\n", r.ChurnOK, r.ChurnFailed, r.ChurnFirstErr)
	fmt.Fprintf(w, "stalled listeners %d; half-open connections %d, closed by the daemon %d\n", r.Stalled, r.HalfOpen, r.HalfOpenClosed)
	recovered, worst := 0, 0.0
	for _, k := range r.Kills {
		if k.Recovered {
			recovered++
			worst = max(worst, k.Seconds)
		}
	}
	fmt.Fprintf(w, "kills: %d, audio back after %d (slowest %.2f s)\n", len(r.Kills), recovered, worst)
	fmt.Fprintf(w, "listeners metric: %d at the end of the load, %d after all left\n", r.ListenersAtPeak, r.ListenersAtClose)
	fmt.Fprintf(w, "%-14s %10s %10s\n", "", "before", "settled")
	fmt.Fprintf(w, "%-14s %10d %10d\n", "goroutines", r.Before.Goroutines, r.Settled.Goroutines)
	fmt.Fprintf(w, "%-14s %10d %10d\n", "FDs", r.Before.FDs, r.Settled.FDs)
	_, err := fmt.Fprintf(w, "%-14s %10s %10s\n", "RSS MiB", mib(r.Before.RSS), mib(r.Settled.RSS))
	return err
}
