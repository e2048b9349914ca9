package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pulse-sidecar/pulse-sidecar/internal/ogg"
)

// opusRate is what Opus decodes to.
const opusRate = 48000

// WithCodec returns the speaker URL with ?codec= set.
func WithCodec(ws, codec string) (string, error) {
	u, err := url.Parse(ws)
	if err != nil {
		return "", fmt.Errorf("bench: speaker URL %q: %w", ws, err)
	}
	q := u.Query()
	q.Set("codec", codec)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// OpusLatency times tone bursts from PulseAudio to a ?codec=opus listener,
// up to the arrival of the Ogg page that carries each onset. ffmpeg decodes
// the pages as they come; the decoded sample at which the onset detector
// fires is mapped back to its page by counting each page's packet
// durations (which needs nothing of the granule positions, whoever wrote
// them: ffmpeg's followed PulseAudio's capture timestamps, the relay's count
// samples), and the delay is that page's
// arrival less the burst's start. Unlike Latency, whose figure is the moment
// ffmpeg's decoded output shows the onset, this excludes the listener's
// decoder: it is the stream's latency, which is what the relay and the
// encoder are responsible for.
//
// With Browser, the bursts are also timed as a person hears them: the
// sidecar's own web client (client.js, WebCodecs into its AudioWorklet
// jitter buffer) on the sidecar's own page in headless Chromium, tapped at
// its output as Latency taps JSMpeg's, with the same DelayNode proof.
type OpusLatency struct {
	Latency // Target.WS gets ?codec=opus
}

// OpusLatencyResult is an Opus latency run.
type OpusLatencyResult struct {
	Machine    Machine         `json:"machine"`
	FirstAudio time.Duration   `json:"first_audio_ns"`
	Player     string          `json:"player"`
	Delays     []time.Duration `json:"delays_ns"`
	Missed     int             `json:"missed_bursts"`
	Summary    Summary         `json:"summary"`
	// Decoded is the same bursts timed as Latency times MP2: when ffmpeg's
	// decoded output showed the onset.
	DecodedDelays []time.Duration `json:"decoded_delays_ns"`
	Decoded       Summary         `json:"decoded_summary"`
	// BytesPerSecond is what the listener received over the run, message
	// payloads only (websocket framing adds 2 bytes a message).
	BytesPerSecond float64 `json:"bytes_per_second"`
	PagesPerSecond float64 `json:"pages_per_second"`
	Load1          float64 `json:"load1_at_end"`
	// HeardDelays are, per burst, its start -> its onset at the output of
	// the sidecar's client.js in Chromium (0: not heard); Heard summarises
	// them, HeardAdded the tap behind the ProofDelay DelayNode minus the
	// direct one; Browser is what the page said about its audio output.
	HeardDelays []time.Duration `json:"heard_delays_ns,omitempty"`
	Heard       *Summary        `json:"heard,omitempty"`
	HeardAdded  *Summary        `json:"heard_added,omitempty"`
	ProofDelay  time.Duration   `json:"proof_delay_ns,omitempty"`
	Browser     []HeardPlayer   `json:"browser,omitempty"`
}

// pageSpan is one received audio page: when it arrived and the decoded
// sample index just past its audio.
type pageSpan struct {
	at  time.Time
	end int64
}

// pageMap follows the pages a listener received.
type pageMap struct {
	mu      sync.Mutex
	spans   []pageSpan
	total   int64 // decoded samples so far, pre-skip removed
	bytes   int64
	pages   int64
	first   time.Time
	last    time.Time
	s       ogg.Splitter
	preSkip int64
}

// add records one message (one page) that arrived at at.
func (m *pageMap) add(msg []byte, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.first.IsZero() {
		m.first = at
	}
	m.last = at
	m.bytes += int64(len(msg))
	m.pages++
	_, _ = m.s.Write(msg)
	for {
		p, ok := m.s.Next()
		if !ok {
			return
		}
		pkts, _ := p.Packets()
		switch p.Kind {
		case ogg.KindOpusHead:
			if len(pkts) > 0 {
				if h, err := ogg.ParseOpusHead(pkts[0]); err == nil {
					// A chained stream's decoder drops its pre-skip again.
					m.preSkip = int64(h.PreSkip)
				}
			}
		case ogg.KindAudio:
			for _, k := range pkts {
				if n, err := ogg.PacketSamples(k); err == nil {
					m.total += int64(n)
				}
			}
			if m.preSkip > 0 {
				skip := min(m.preSkip, m.total)
				m.total -= skip
				m.preSkip -= skip
			}
			m.spans = append(m.spans, pageSpan{at: at, end: m.total})
		}
	}
}

// arrival returns when the page holding decoded sample i arrived.
func (m *pageMap) arrival(i int64) (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := sort.Search(len(m.spans), func(k int) bool { return m.spans[k].end > i })
	if k == len(m.spans) {
		return time.Time{}, false
	}
	return m.spans[k].at, true
}

// Run measures time to first audio, then the bursts.
func (l *OpusLatency) Run(ctx context.Context) (OpusLatencyResult, error) {
	res := OpusLatencyResult{Machine: ThisMachine(l.Target.procRoot())}
	ws, err := WithCodec(l.Target.WS, "opus")
	if err != nil {
		return res, err
	}
	bursts := max(l.Bursts, 1)
	interval := l.Interval
	if interval == 0 {
		interval = time.Second
	}
	sink := l.Sink
	if sink == "" {
		sink = "speaker"
	}
	burstLen := l.BurstLen
	if burstLen == 0 {
		burstLen = 150 * time.Millisecond
	}
	dir, err := os.MkdirTemp("", "sidecar-bench")
	if err != nil {
		return res, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(dir)
	pcm := burstPCM(1000, burstLen)
	wav := filepath.Join(dir, "burst.wav")
	if err := os.WriteFile(wav, append(wavHeader(len(pcm)), pcm...), 0o600); err != nil {
		return res, fmt.Errorf("bench: %w", err)
	}
	env := append(os.Environ(), "PULSE_SERVER="+l.PulseServer)
	if l.CookieFile != "" {
		env = append(env, "PULSE_COOKIE="+l.CookieFile)
	}
	res.Player = "paplay"
	if l.Stream {
		res.Player = "pacat"
	}

	dialed := time.Now()
	conn, resp, err := (&websocket.Dialer{HandshakeTimeout: 30 * time.Second}).DialContext(ctx, ws, http.Header{})
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		return res, fmt.Errorf("bench: connecting to %s: %w", ws, err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, first, err := conn.ReadMessage()
	if err != nil {
		return res, fmt.Errorf("bench: waiting for the first message from %s: %w", ws, err)
	}
	res.FirstAudio = time.Since(dialed)
	_ = conn.SetReadDeadline(time.Time{})
	l.logf("opus: first message after %v", res.FirstAudio)

	m := &pageMap{}
	m.add(first, time.Now())
	cmd := exec.CommandContext(ctx, l.FFmpeg, "-nostdin", "-hide_banner", "-loglevel", "error",
		"-fflags", "nobuffer", "-flags", "low_delay", "-probesize", "32", "-analyzeduration", "0",
		"-f", "ogg", "-i", "pipe:0",
		"-f", "f32le", "-ac", "1", "-ar", fmt.Sprint(opusRate), "-flush_packets", "1", "pipe:1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return res, fmt.Errorf("bench: opus decoder: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return res, fmt.Errorf("bench: opus decoder: %w", err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("bench: starting decoder %s: %w", l.FFmpeg, err)
	}
	defer func() {
		stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	type onset struct{ page, decoded time.Time }
	onsets := make(chan onset, 16)
	decDone := make(chan error, 1)
	go func() {
		det := OnsetDetector{Window: opusRate / 400, Threshold: 0.05, Quiet: 40}
		buf := make([]byte, 8192)
		var rest []byte
		var samples []float32
		for {
			n, err := stdout.Read(buf)
			now := time.Now()
			if n > 0 {
				samples, rest = appendF32LE(samples[:0], append(rest, buf[:n]...))
				rest = append([]byte(nil), rest...)
				for _, i := range det.Feed(samples) {
					if at, ok := m.arrival(i); ok {
						select {
						case onsets <- onset{at, now}:
						default:
						}
					}
				}
			}
			if err != nil {
				decDone <- err
				return
			}
		}
	}()
	fwdDone := make(chan error, 1)
	go func() {
		if _, err := stdin.Write(first); err != nil {
			fwdDone <- err
			return
		}
		for {
			_, msg, err := conn.ReadMessage()
			if err == nil {
				m.add(msg, time.Now())
				_, err = stdin.Write(msg)
			}
			if err != nil {
				fwdDone <- err
				return
			}
		}
	}()
	defer func() {
		conn.Close()
		<-fwdDone
	}()

	var page *heardRun
	if l.Browser != nil {
		client, err := ClientPage(l.Target.WS)
		if err != nil {
			return res, err
		}
		l.logf("opus: starting the sidecar's client page %s in the browser", client)
		if page, err = l.Browser.listen(ctx, l.Target.WS, client, l.ProofDelay, bursts, interval); err != nil {
			return res, err
		}
		defer page.close()
		res.ProofDelay = l.ProofDelay
		l.logf("opus: client.js plays in the browser")
	}

	select {
	case <-time.After(time.Second):
	case <-ctx.Done():
		return res, ctx.Err()
	}
	play, stopPlayer, err := l.player(ctx, env, sink, wav, pcm)
	if err != nil {
		return res, err
	}
	defer stopPlayer()
	var heard []BurstTiming // the bursts' starts, for the page's onsets
	for i := 0; i < bursts; i++ {
		for drained := false; !drained; {
			select {
			case <-onsets:
			default:
				drained = true
			}
		}
		played, wait, err := play()
		if err != nil {
			return res, err
		}
		heard = append(heard, BurstTiming{Played: played})
		timeout := time.NewTimer(interval + 2*time.Second)
		select {
		case at := <-onsets:
			d := at.page.Sub(played)
			res.Delays = append(res.Delays, d)
			res.DecodedDelays = append(res.DecodedDelays, at.decoded.Sub(played))
			l.logf("opus burst %d: page %v, decoded %v", i+1, d, at.decoded.Sub(played))
		case err := <-decDone:
			timeout.Stop()
			_ = wait()
			return res, fmt.Errorf("bench: opus decoder ended: %v: %s", err, bytes.TrimSpace(stderr.Bytes()))
		case <-timeout.C:
			res.Missed++
			l.logf("opus burst %d: no onset seen", i+1)
		case <-ctx.Done():
		}
		timeout.Stop()
		if err := wait(); err != nil && ctx.Err() == nil {
			return res, err
		}
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		select {
		case <-time.After(time.Until(played.Add(interval))):
		case <-ctx.Done():
			return res, ctx.Err()
		}
	}
	m.mu.Lock()
	if secs := m.last.Sub(m.first).Seconds(); secs > 0 {
		res.BytesPerSecond = float64(m.bytes) / secs
		res.PagesPerSecond = float64(m.pages) / secs
	}
	m.mu.Unlock()
	res.Load1 = Load1(l.Target.procRoot())
	if page != nil {
		if res.Browser, err = page.fill(ctx, heard, interval, l.ProofDelay); err != nil {
			return res, err
		}
		for _, b := range heard {
			res.HeardDelays = append(res.HeardDelays, b.Heard)
			l.logf("opus burst at %s: heard %s ms, heard delayed %s ms", b.Played.Format("15:04:05.000"), ms(b.Heard), ms(b.HeardDelayed))
		}
		res.Heard, res.HeardAdded = heardSummaries(heard)
	}
	res.Summary = Summarize(append([]time.Duration(nil), res.Delays...))
	res.Decoded = Summarize(append([]time.Duration(nil), res.DecodedDelays...))
	if len(res.Delays) == 0 {
		return res, errors.New("bench: no burst reached the opus listener")
	}
	return res, nil
}

// WriteTable prints the Opus latency result for a terminal.
func (r OpusLatencyResult) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "machine: %d CPUs, load %.2f at start, %.2f at end, %s\n", r.Machine.CPUs, r.Machine.Load1, r.Load1, r.Machine.Date)
	fmt.Fprintf(w, "opus: first message after %s ms; %.0f bytes/s (%.1f kbit/s), %.1f pages/s\n",
		ms(r.FirstAudio), r.BytesPerSecond, r.BytesPerSecond*8/1000, r.PagesPerSecond)
	fmt.Fprintf(w, "opus onset at the page (%s, %d bursts, %d missed): p50 %s ms, p95 %s ms, p99 %s ms, max %s ms\n",
		r.Player, r.Summary.N, r.Missed, ms(r.Summary.P50), ms(r.Summary.P95), ms(r.Summary.P99), ms(r.Summary.Max))
	_, err := fmt.Fprintf(w, "opus onset at the decoder's output: p50 %s ms, p95 %s ms, max %s ms\n",
		ms(r.Decoded.P50), ms(r.Decoded.P95), ms(r.Decoded.Max))
	if r.Heard != nil {
		fmt.Fprintf(w, "opus heard: onset at the output of the sidecar's client.js in Chromium, %d bursts: p50 %s ms, p95 %s ms, max %s ms\n",
			r.Heard.N, ms(r.Heard.P50), ms(r.Heard.P95), ms(r.Heard.Max))
	}
	writeBrowser(w, r.Browser)
	if r.HeardAdded != nil {
		_, err = fmt.Fprintf(w, "proof: the page's tap behind a %s ms DelayNode heard the bursts %s ms later (median of %d; p95 %s ms)\n",
			ms(r.ProofDelay), ms(r.HeardAdded.P50), r.HeardAdded.N, ms(r.HeardAdded.P95))
	}
	return err
}

// StreamRate counts what a listener of ws receives over d, in bytes per
// second of message payload.
func StreamRate(ctx context.Context, ws string, d time.Duration) (float64, error) {
	conn, resp, err := (&websocket.Dialer{HandshakeTimeout: 30 * time.Second}).DialContext(ctx, ws, http.Header{})
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		return 0, fmt.Errorf("bench: connecting to %s: %w", ws, err)
	}
	defer conn.Close()
	// The first message may be a backlog or the encoder's start: count
	// from the second second.
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, _, err := conn.ReadMessage(); err != nil {
		return 0, fmt.Errorf("bench: %s: %w", ws, err)
	}
	warm := time.Now().Add(time.Second)
	var n int64
	var start time.Time
	end := warm.Add(d)
	for time.Now().Before(end) {
		_ = conn.SetReadDeadline(end)
		_, msg, err := conn.ReadMessage()
		now := time.Now()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) || now.After(end) {
				break
			}
			return 0, fmt.Errorf("bench: %s: %w", ws, err)
		}
		if now.Before(warm) {
			continue
		}
		if start.IsZero() {
			start = now
			continue
		}
		n += int64(len(msg))
	}
	if start.IsZero() {
		return 0, fmt.Errorf("bench: %s: nothing received", ws)
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// CodecComparison is an MP2 latency run and an Opus one against the same
// daemon, one after the other, with each stream's bytes per second. MP2 is
// timed as Latency times it; Opus at the page carrying the onset and at
// ffmpeg's decoded output.
type CodecComparison struct {
	MP2               LatencyResult     `json:"mp2"`
	MP2BytesPerSecond float64           `json:"mp2_bytes_per_second"`
	Opus              OpusLatencyResult `json:"opus"`
	// CPU is the relay's CPU at 1 and 100 listeners of each codec, when
	// the target names the relay's PID.
	CPU []CPUPoint `json:"cpu,omitempty"`
}

// WriteTable prints both runs side by side.
func (c CodecComparison) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "machine: %d CPUs, load %.2f at start, %.2f at end\n", c.MP2.Machine.CPUs, c.MP2.Machine.Load1, c.Opus.Load1)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "codec\ttimed at\tbursts\tmissed\tp50 ms\tp95 ms\tmax ms\tkbit/s\t")
	fmt.Fprintf(tw, "mp2\tas Latency times it\t%d\t%d\t%s\t%s\t%s\t%.1f\t\n", c.MP2.Summary.N, c.MP2.Missed,
		ms(c.MP2.Summary.P50), ms(c.MP2.Summary.P95), ms(c.MP2.Summary.Max), c.MP2BytesPerSecond*8/1000)
	fmt.Fprintf(tw, "opus\tdecoder output\t%d\t%d\t%s\t%s\t%s\t%.1f\t\n", c.Opus.Decoded.N, c.Opus.Missed,
		ms(c.Opus.Decoded.P50), ms(c.Opus.Decoded.P95), ms(c.Opus.Decoded.Max), c.Opus.BytesPerSecond*8/1000)
	fmt.Fprintf(tw, "opus\tpage arrival\t%d\t%d\t%s\t%s\t%s\t%.1f\t\n", c.Opus.Summary.N, c.Opus.Missed,
		ms(c.Opus.Summary.P50), ms(c.Opus.Summary.P95), ms(c.Opus.Summary.Max), c.Opus.BytesPerSecond*8/1000)
	// Heard: the onset at the page's audio output in Chromium; missed is
	// what the page did not hear of the bursts played.
	for _, h := range []struct {
		codec, at string
		s         *Summary
		played    int
	}{
		{"mp2", "heard: JSMpeg in Chromium", c.MP2.Heard, len(c.MP2.Bursts)},
		{"opus", "heard: client.js in Chromium", c.Opus.Heard, len(c.Opus.HeardDelays)},
	} {
		if h.s != nil {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\t\t\n", h.codec, h.at, h.s.N, h.played-h.s.N, ms(h.s.P50), ms(h.s.P95), ms(h.s.Max))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, p := range []struct {
		codec string
		delay time.Duration
		s     *Summary
	}{{"mp2", c.MP2.ProofDelay, c.MP2.HeardAdded}, {"opus", c.Opus.ProofDelay, c.Opus.HeardAdded}} {
		if p.s != nil {
			fmt.Fprintf(w, "proof (%s page): the tap behind a %s ms DelayNode heard the bursts %s ms later (median of %d; p95 %s ms)\n",
				p.codec, ms(p.delay), ms(p.s.P50), p.s.N, ms(p.s.P95))
		}
	}
	if s := opusClientStats(c.Opus.Browser); s != nil {
		fmt.Fprintf(w, "opus page's client.js at the end: buffer %.1f ms (target %.0f), %d underruns, %d dropped, its own latency estimate %.1f ms\n",
			s.BufferMs, s.TargetMs, s.Underruns, s.Dropped, s.LatencyMs)
	}
	if len(c.CPU) == 0 {
		return nil
	}
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "codec\tlisteners\trelay CPU %\tkbit/s each\tload\t")
	for _, p := range c.CPU {
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.1f\t%.2f\t\n", p.Codec, p.Listeners, 100*p.CPU, p.KbpsEach, p.Load1)
	}
	return tw.Flush()
}

// CompareCodecs runs the MP2 latency run of l, then the same bursts on the
// Opus stream, then measures each stream's rate for five seconds.
func CompareCodecs(ctx context.Context, l *Latency) (CodecComparison, error) {
	var c CodecComparison
	var err error
	if c.MP2, err = l.Run(ctx); err != nil {
		return c, err
	}
	if c.Opus, err = (&OpusLatency{Latency: *l}).Run(ctx); err != nil {
		return c, err
	}
	if c.MP2BytesPerSecond, err = StreamRate(ctx, l.Target.WS, 5*time.Second); err != nil {
		return c, err
	}
	if l.Target.PID <= 0 {
		return c, nil
	}
	opus, err := WithCodec(l.Target.WS, "opus")
	if err != nil {
		return c, err
	}
	for _, n := range []int{1, 100} {
		for _, s := range []struct{ codec, ws string }{{"mp2", l.Target.WS}, {"opus", opus}} {
			l.logf("relay CPU: %d %s listeners", n, s.codec)
			p, err := RelayCPU(ctx, l.Target, s.ws, n, 10*time.Second)
			if err != nil {
				return c, err
			}
			p.Codec = s.codec
			c.CPU = append(c.CPU, p)
		}
	}
	return c, nil
}

// CPUPoint is the relay's CPU with n listeners of one codec reading.
type CPUPoint struct {
	Codec     string  `json:"codec"`
	Listeners int     `json:"listeners"`
	CPU       float64 `json:"cpu_share"` // of one core, the relay process alone (not its encoders)
	KbpsEach  float64 `json:"kbit_per_second_each"`
	Load1     float64 `json:"load1"`
}

// RelayCPU connects n listeners to ws that read and discard, waits for the
// stream to settle, and reads the relay's CPU over d from /proc (Target.PID).
func RelayCPU(ctx context.Context, t Target, ws string, n int, d time.Duration) (CPUPoint, error) {
	p := CPUPoint{Listeners: n}
	if t.PID <= 0 {
		return p, errors.New("bench: relay CPU needs --pid")
	}
	var (
		mu    sync.Mutex
		bytes int64
		wg    sync.WaitGroup
		conns []*websocket.Conn
	)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
		wg.Wait()
	}()
	dialer := &websocket.Dialer{HandshakeTimeout: 30 * time.Second}
	for range n {
		c, resp, err := dialer.DialContext(ctx, ws, nil)
		if resp != nil && resp.Body != nil {
			resp.Body.Close()
		}
		if err != nil {
			return p, fmt.Errorf("bench: listener %d of %d on %s: %w", len(conns)+1, n, ws, err)
		}
		conns = append(conns, c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				_, msg, err := c.ReadMessage()
				if err != nil {
					return
				}
				mu.Lock()
				bytes += int64(len(msg))
				mu.Unlock()
			}
		}()
	}
	select {
	case <-time.After(2 * time.Second):
	case <-ctx.Done():
		return p, ctx.Err()
	}
	a, err := t.Snapshot(ctx)
	if err != nil {
		return p, err
	}
	mu.Lock()
	b0 := bytes
	mu.Unlock()
	select {
	case <-time.After(d):
	case <-ctx.Done():
		return p, ctx.Err()
	}
	b, err := t.Snapshot(ctx)
	if err != nil {
		return p, err
	}
	mu.Lock()
	b1 := bytes
	mu.Unlock()
	p.CPU = CPUShareBetween(a, b)
	p.KbpsEach = float64(b1-b0) * 8 / 1000 / b.At.Sub(a.At).Seconds() / float64(n)
	p.Load1 = Load1(t.procRoot())
	return p, nil
}
