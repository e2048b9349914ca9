package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/sys/unix"
)

// toneRate is the speaker sink's rate; decoding to it avoids a resampler
// smearing the onset.
const toneRate = 44100

// Latency plays tone bursts into PulseAudio's speaker sink and times each
// from the start of its player to the arrival, at a websocket listener, of
// the TS packet that completes the first MP2 frame whose decoded audio holds
// the burst's onset. The stream is recorded with arrival times and decoded
// after the bursts, and every decoded sample is mapped back to the frame,
// and so the message, that carried it: the figure is the stream's, not a
// decoder's (which would add the frame it waits for before emitting one).
//
// Alongside, the same bursts are timed at two earlier points, so the run
// breaks its own figure down: a raw PCM recorder on speaker.monitor
// (PulseAudio's side), and a copy of the relay's own encoder, started with
// its exact command line read from /proc, writing to a pipe the tool reads
// (ffmpeg's side). The last leg, the FIFO, the relay and the websocket, is
// timed directly: stamped packets on a PID of their own written into the
// speaker FIFO (Target.FIFO) between the encoder's, timed to the listener.
type Latency struct {
	Target      Target
	PulseServer string // PULSE_SERVER for paplay, e.g. unix:/tmp/.pulse.sock
	CookieFile  string // PULSE_COOKIE for paplay; empty: none
	Sink        string // "speaker" when empty
	Paplay      string // paplay binary
	// Pacat is the pacat binary: the PCM recorder of the breakdown, and
	// the player with Stream.
	Pacat string
	// Stream plays the bursts through one long-lived pacat stream fed in
	// real time instead of one paplay per burst, which takes paplay's
	// start and connection out of the figure.
	Stream     bool
	FFmpeg     string        // ffmpeg binary, to decode the recorded streams
	Bursts     int           // at least 20 for a p95 worth reading
	Interval   time.Duration // between burst starts (1s when 0)
	BurstLen   time.Duration // 150ms when 0
	Background int           // extra reading listeners during the bursts
	// Breakdown adds the PCM recorder, the encoder copy and the stamped
	// packets; it needs Pacat (as a recorder), Target.PID (to find the
	// encoder) and Target.FIFO.
	Breakdown bool
	// ProofDelay, when positive, adds a second listener behind a TCP proxy
	// that holds the stream for this long: the run must report it back.
	ProofDelay time.Duration
	// Browser, when set, also times the bursts as a person hears them:
	// JSMpeg in headless Chromium, at the page's audio output. With
	// ProofDelay the page also taps its output behind a DelayNode of that
	// length, which the run must report back.
	Browser  *Browser
	Progress io.Writer
}

// Stage is one leg of the path with its per-burst durations.
type Stage struct {
	Name    string  `json:"name"`
	Summary Summary `json:"summary"`
}

// BurstTiming is one burst. A zero duration means the burst was not seen at
// that point.
type BurstTiming struct {
	Played time.Time `json:"played"`
	// Listener is play -> arrival of the packet completing the onset frame.
	Listener time.Duration `json:"listener_ns"`
	PCM      time.Duration `json:"pcm_ns,omitempty"`
	Encoder  time.Duration `json:"encoder_ns,omitempty"`
	Delayed  time.Duration `json:"delayed_ns,omitempty"`
	// Heard is play -> the onset leaving JSMpeg's WebAudio output in
	// Chromium; HeardDelayed the same behind the page's proof DelayNode.
	Heard        time.Duration `json:"heard_ns,omitempty"`
	HeardDelayed time.Duration `json:"heard_delayed_ns,omitempty"`
	// FrameFill is how much of the onset's frame was still to come after
	// the decoded onset: the encoder cannot emit the frame before that.
	FrameFill time.Duration `json:"frame_fill_ns"`
}

// LatencyResult is a latency run.
type LatencyResult struct {
	Machine Machine `json:"machine"`
	Load1   float64 `json:"load1_end"`
	// FirstAudio is from the first listener's dial to its first stream
	// message; Cold says the relay started an encoder for it (from
	// /metrics), i.e. the figure includes the encoder's start.
	FirstAudio time.Duration `json:"first_audio_ns"`
	Cold       *bool         `json:"encoder_cold,omitempty"`
	Background int           `json:"background_listeners"`
	Player     string        `json:"player"`
	// Delays are the listener's figures of the bursts seen, Summary theirs.
	Delays  []time.Duration `json:"delays_ns"`
	Missed  int             `json:"missed_bursts"`
	Summary Summary         `json:"summary"`
	Bursts  []BurstTiming   `json:"bursts"`
	// Stages break Summary down, each from per-burst differences.
	Stages []Stage `json:"stages,omitempty"`
	// Encoder is the command line of the relay's encoder that the breakdown
	// ran a copy of.
	Encoder []string `json:"encoder,omitempty"`
	// Pulse is what PulseAudio reported about its streams' latencies in the
	// middle of the run (pactl list).
	Pulse []string `json:"pulse,omitempty"`
	// ProofDelay is the proxy's delay; Added summarises, per burst, the
	// delayed listener's figure minus the direct one's.
	ProofDelay time.Duration `json:"proof_delay_ns,omitempty"`
	Added      *Summary      `json:"added,omitempty"`
	// Heard summarises the bursts at the browser's output, HeardAdded the
	// tap behind the proof DelayNode minus the direct one; Browser is what
	// the page said about its audio output.
	Heard      *Summary      `json:"heard,omitempty"`
	HeardAdded *Summary      `json:"heard_added,omitempty"`
	Browser    []HeardPlayer `json:"browser,omitempty"`
	// Relay are the delays of the stamped packets from the FIFO write to
	// the listener.
	Relay []time.Duration `json:"relay_ns,omitempty"`
	// Frames, Lost and Resyncs describe the listener's stream: frames
	// decoded, continuity counter jumps, bytes skipped to find a frame.
	Frames  int `json:"frames"`
	Lost    int `json:"cc_errors"`
	Resyncs int `json:"resyncs"`
}

func (l *Latency) logf(format string, args ...any) {
	if l.Progress != nil {
		fmt.Fprintf(l.Progress, format+"\n", args...)
	}
}

// chunk is bytes as they arrived.
type chunk struct {
	at time.Time
	b  []byte
}

// recording collects chunks from one reader until it ends.
type recording struct {
	mu     sync.Mutex
	chunks []chunk
	err    error
	done   chan struct{}
}

func record(read func() ([]byte, error)) *recording {
	r := &recording{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for {
			b, err := read()
			at := time.Now()
			r.mu.Lock()
			if len(b) > 0 {
				r.chunks = append(r.chunks, chunk{at, b})
			}
			if err != nil {
				r.err = err
				r.mu.Unlock()
				return
			}
			r.mu.Unlock()
		}
	}()
	return r
}

func (r *recording) snapshot() []chunk {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]chunk(nil), r.chunks...)
}

// readerFunc reads an io.Reader in pieces as they come.
func readerFunc(rd io.Reader) func() ([]byte, error) {
	return func() ([]byte, error) {
		buf := make([]byte, 16<<10)
		n, err := rd.Read(buf)
		return buf[:n], err
	}
}

// Run measures time to first audio, then the bursts.
func (l *Latency) Run(ctx context.Context) (LatencyResult, error) {
	res := LatencyResult{Machine: ThisMachine(l.Target.procRoot()), Background: l.Background, ProofDelay: l.ProofDelay}
	bursts := max(l.Bursts, 1)
	interval := l.Interval
	if interval == 0 {
		interval = time.Second
	}
	sink := l.Sink
	if sink == "" {
		sink = "speaker"
	}
	dir, err := os.MkdirTemp("", "sidecar-bench")
	if err != nil {
		return res, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(dir)
	burstLen := l.BurstLen
	if burstLen == 0 {
		burstLen = 150 * time.Millisecond
	}
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
		res.Player = "pacat stream"
	}

	startsBefore, haveStarts := l.encoderStarts(ctx)
	dialed := time.Now()
	conn, err := dialWS(ctx, l.Target.WS)
	if err != nil {
		return res, err
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, first, err := conn.ReadMessage()
	if err != nil {
		return res, fmt.Errorf("bench: waiting for the first audio from %s: %w", l.Target.WS, err)
	}
	res.FirstAudio = time.Since(dialed)
	conn.SetReadDeadline(time.Time{})
	if startsAfter, ok := l.encoderStarts(ctx); ok && haveStarts {
		cold := startsAfter > startsBefore
		res.Cold = &cold
	}
	l.logf("first audio after %v (cold encoder: %v)", res.FirstAudio, res.Cold != nil && *res.Cold)
	sentFirst := false
	listener := record(func() ([]byte, error) {
		if !sentFirst {
			sentFirst = true
			return first, nil
		}
		_, msg, err := conn.ReadMessage()
		return msg, err
	})

	if l.Background > 0 {
		pool := &Pool{URL: l.Target.WS}
		defer pool.Close()
		l.logf("connecting %d background listeners", l.Background)
		if err := pool.Grow(ctx, l.Background); err != nil {
			return res, err
		}
	}

	var delayed *recording
	if l.ProofDelay > 0 {
		u, err := url.Parse(l.Target.WS)
		if err != nil {
			return res, fmt.Errorf("bench: %s: %w", l.Target.WS, err)
		}
		px, err := StartDelayProxy(u.Host, l.ProofDelay)
		if err != nil {
			return res, err
		}
		defer px.Close()
		pu, _ := px.URL(l.Target.WS)
		dconn, err := dialWS(ctx, pu)
		if err != nil {
			return res, err
		}
		defer dconn.Close()
		delayed = record(func() ([]byte, error) {
			_, msg, err := dconn.ReadMessage()
			return msg, err
		})
		l.logf("second listener behind a %v delay proxy at %s", l.ProofDelay, px.Addr())
	}

	var pcmRec, encRec *recording
	if l.Breakdown {
		if l.Pacat == "" || l.Target.PID == 0 {
			return res, errors.New("bench: the breakdown needs pacat (the recorder), the relay's PID (to find its encoder) and the speaker FIFO")
		}
		argv, exe, err := FindEncoder(l.Target.procRoot(), l.Target.PID)
		if err != nil {
			return res, err
		}
		res.Encoder = argv
		frag := fragmentMillis(argv)
		rec, err := startProc(ctx, env, l.Pacat, "--record", "--device="+sink+".monitor", "--raw", "--format=s16le",
			fmt.Sprintf("--rate=%d", toneRate), "--channels=1", fmt.Sprintf("--latency-msec=%d", frag))
		if err != nil {
			return res, err
		}
		defer rec.stop()
		pcmRec = record(readerFunc(rec.stdout))
		enc, err := startProc(ctx, env, exe, argv[1:]...)
		if err != nil {
			return res, err
		}
		defer enc.stop()
		encRec = record(readerFunc(enc.stdout))
		fifo, err := openFIFO(l.Target.FIFO)
		if err != nil {
			return res, err
		}
		wctx, wcancel := context.WithCancel(ctx)
		wdone := make(chan struct{})
		go func() {
			defer close(wdone)
			// One packet every 20 ms: a trickle next to the encoder's
			// 207 kbit/s, each write whole in the FIFO.
			Writer{PID: DefaultPID, ChunkPackets: 1, BitRate: PacketSize * 8 * 50}.Run(wctx, fifo)
		}()
		defer func() {
			wcancel()
			fifo.Close()
			<-wdone
		}()
		l.logf("breakdown: PCM recorder at %d ms, encoder copy %q", frag, argv)
	}

	var page *heardRun
	if l.Browser != nil {
		l.logf("starting the browser page")
		if page, err = l.Browser.listen(ctx, l.Target.WS, "", l.ProofDelay, bursts, interval); err != nil {
			return res, err
		}
		defer page.close()
		l.logf("JSMpeg plays in the browser")
	}

	// Let the encoders get past their start before the first burst.
	select {
	case <-time.After(2 * time.Second):
	case <-ctx.Done():
		return res, ctx.Err()
	}
	play, stopPlayer, err := l.player(ctx, env, sink, wav, pcm)
	if err != nil {
		return res, err
	}
	defer stopPlayer()
	var played []time.Time
	for i := 0; i < bursts; i++ {
		at, wait, err := play()
		if err != nil {
			return res, err
		}
		played = append(played, at)
		if err := wait(); err != nil && ctx.Err() == nil {
			return res, err
		}
		if i == bursts/2 && l.Breakdown {
			res.Pulse = pulseLatencies(ctx, env)
		}
		select {
		case <-time.After(time.Until(at.Add(interval))):
		case <-ctx.Done():
			return res, ctx.Err()
		}
		l.logf("burst %d played", i+1)
	}
	res.Load1 = ThisMachine(l.Target.procRoot()).Load1

	lo, err := tsOnsets(ctx, l.FFmpeg, listener.snapshot())
	if err != nil {
		return res, fmt.Errorf("bench: listener stream: %w", err)
	}
	res.Frames, res.Lost, res.Resyncs = lo.frames, lo.ccErrors, lo.resyncs
	if l.Breakdown {
		for _, c := range listener.snapshot() {
			Stamps(c.b, DefaultPID, func(s Stamp) { res.Relay = append(res.Relay, c.at.Sub(time.Unix(0, s.Sent))) })
		}
	}
	for i, p := range played {
		next := p.Add(interval)
		if i+1 < len(played) {
			next = played[i+1]
		}
		b := BurstTiming{Played: p}
		if k, ok := firstIn(lo.at, p, next); ok {
			b.Listener, b.FrameFill = lo.at[k].Sub(p), lo.fill[k]
		}
		res.Bursts = append(res.Bursts, b)
	}
	if delayed != nil {
		do, err := tsOnsets(ctx, l.FFmpeg, delayed.snapshot())
		if err != nil {
			return res, fmt.Errorf("bench: delayed listener stream: %w", err)
		}
		fill(res.Bursts, do.at, interval+l.ProofDelay, func(b *BurstTiming, d time.Duration) { b.Delayed = d })
	}
	if encRec != nil {
		eo, err := tsOnsets(ctx, l.FFmpeg, encRec.snapshot())
		if err != nil {
			return res, fmt.Errorf("bench: encoder copy's stream: %w", err)
		}
		fill(res.Bursts, eo.at, interval, func(b *BurstTiming, d time.Duration) { b.Encoder = d })
		fill(res.Bursts, pcmOnsets(pcmRec.snapshot()), interval, func(b *BurstTiming, d time.Duration) { b.PCM = d })
	}
	if page != nil {
		if res.Browser, err = page.fill(ctx, res.Bursts, interval, l.ProofDelay); err != nil {
			return res, err
		}
	}
	l.summarize(&res)
	for i, b := range res.Bursts {
		l.logf("burst %d: listener %s ms, PCM %s, encoder %s, delayed %s, frame fill %s, heard %s, heard delayed %s", i+1,
			ms(b.Listener), ms(b.PCM), ms(b.Encoder), ms(b.Delayed), ms(b.FrameFill), ms(b.Heard), ms(b.HeardDelayed))
	}
	if len(res.Delays) == 0 {
		return res, errors.New("bench: no burst reached the listener")
	}
	return res, nil
}

// fill sets, for every burst, the delay to the first onset in ts within
// window of its start (and before the next burst's).
func fill(bs []BurstTiming, ts []time.Time, window time.Duration, set func(*BurstTiming, time.Duration)) {
	for i := range bs {
		end := bs[i].Played.Add(window)
		if i+1 < len(bs) && bs[i+1].Played.Before(end) {
			end = bs[i+1].Played
		}
		if k, ok := firstIn(ts, bs[i].Played, end); ok {
			set(&bs[i], ts[k].Sub(bs[i].Played))
		}
	}
}

// firstIn returns the index of the first time in ts within [from, to).
func firstIn(ts []time.Time, from, to time.Time) (int, bool) {
	for k, t := range ts {
		if !t.Before(from) && t.Before(to) {
			return k, true
		}
	}
	return 0, false
}

func (l *Latency) summarize(res *LatencyResult) {
	var listener, pcm, enc, relay, frame, added, fills []time.Duration
	for _, b := range res.Bursts {
		if b.Listener == 0 {
			res.Missed++
			continue
		}
		listener = append(listener, b.Listener)
		fills = append(fills, b.FrameFill)
		if b.PCM != 0 {
			pcm = append(pcm, b.PCM)
		}
		if b.PCM != 0 && b.Encoder != 0 {
			enc = append(enc, b.Encoder-b.PCM)
		}
		if b.Encoder != 0 {
			relay = append(relay, b.Listener-b.Encoder)
			frame = append(frame, b.Encoder)
		}
		if b.Delayed != 0 {
			added = append(added, b.Delayed-b.Listener)
		}
	}
	res.Delays = append([]time.Duration(nil), listener...)
	res.Summary = Summarize(listener)
	if len(pcm) > 0 {
		res.Stages = append(res.Stages,
			Stage{"play -> PCM at a recorder on the monitor (player start, PulseAudio, capture fragment)", Summarize(pcm)},
			Stage{"PCM -> encoder copy's output (ffmpeg input, frame, codec, muxer)", Summarize(enc)},
			Stage{"of which: frame still to fill after the decoded onset", Summarize(fills)},
			Stage{"FIFO write -> listener (relay, websocket; stamped packets)", Summarize(append([]time.Duration(nil), res.Relay...))},
			Stage{"play -> encoder copy's output", Summarize(frame)},
			// The copy's frames are not the relay's encoder's frames: the
			// two started apart, so this differs by up to a frame either way.
			Stage{"encoder copy's output -> listener (not the same frames)", Summarize(relay)},
		)
	}
	if len(added) > 0 {
		s := Summarize(added)
		res.Added = &s
	}
	res.Heard, res.HeardAdded = heardSummaries(res.Bursts)
}

func dialWS(ctx context.Context, u string) (*websocket.Conn, error) {
	conn, resp, err := (&websocket.Dialer{HandshakeTimeout: 30 * time.Second}).DialContext(ctx, u, http.Header{})
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("bench: connecting to %s: %w", u, err)
	}
	return conn, nil
}

func (l *Latency) encoderStarts(ctx context.Context) (float64, bool) {
	if l.Target.MetricsURL == "" {
		return 0, false
	}
	m, err := Scrape(ctx, &http.Client{Timeout: 5 * time.Second}, l.Target.MetricsURL)
	if err != nil {
		return 0, false
	}
	v, ok := m["pulse_sidecar_speaker_encoder_starts_total"]
	return v, ok
}

// paplay starts one paplay playing wav; the returned time is when the
// process was started, so its start-up counts as latency, as it does for
// any application that opens a stream to play a sound.
// player returns what plays one burst: a paplay per burst, or with Stream
// one long-running pacat stream; stop ends that stream.
func (l *Latency) player(ctx context.Context, env []string, sink, wav string, pcm []byte) (play func() (time.Time, func() error, error), stop func(), err error) {
	if !l.Stream {
		return func() (time.Time, func() error, error) { return l.paplay(ctx, env, sink, wav) }, func() {}, nil
	}
	st, err := startStream(ctx, l.Pacat, sink, env, pcm)
	if err != nil {
		return nil, nil, err
	}
	return func() (time.Time, func() error, error) {
		at, err := st.play(ctx)
		return at, func() error { return nil }, err
	}, st.stop, nil
}

func (l *Latency) paplay(ctx context.Context, env []string, sink, wav string) (time.Time, func() error, error) {
	cmd := exec.CommandContext(ctx, l.Paplay, "--device="+sink, wav)
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	played := time.Now()
	if err := cmd.Start(); err != nil {
		return played, nil, fmt.Errorf("bench: starting %s: %w", l.Paplay, err)
	}
	return played, func() error {
		if err := cmd.Wait(); err != nil {
			return fmt.Errorf("bench: %s: %w: %s", l.Paplay, err, bytes.TrimSpace(stderr.Bytes()))
		}
		return nil
	}, nil
}

// streamBlock is what the stream player writes at a time: 10 ms.
const streamBlock = toneRate / 100 * 2

// stream is a pacat playback stream fed in real time: silence, and a burst
// when asked. Writing at the rate it plays keeps pacat's input pipe empty,
// so a burst written now is played within pacat's own latency.
type stream struct {
	cmd    *exec.Cmd
	stdin  *os.File
	req    chan chan time.Time
	done   chan error
	stderr bytes.Buffer
}

func startStream(ctx context.Context, pacat, sink string, env []string, burst []byte) (*stream, error) {
	cmd := exec.CommandContext(ctx, pacat, "--playback", "--device="+sink, "--raw", "--format=s16le",
		fmt.Sprintf("--rate=%d", toneRate), "--channels=1", "--latency-msec=10")
	cmd.Env = env
	st := &stream{cmd: cmd, req: make(chan chan time.Time), done: make(chan error, 1)}
	cmd.Stderr = &st.stderr
	// A pipe of our own, not StdinPipe: feed asks the kernel how much of
	// it is still unread.
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("bench: %s: %w", pacat, err)
	}
	cmd.Stdin, st.stdin = pr, pw
	err = cmd.Start()
	pr.Close()
	if err != nil {
		pw.Close()
		return nil, fmt.Errorf("bench: starting %s: %w", pacat, err)
	}
	go func() { st.done <- st.feed(ctx, burst) }()
	return st, nil
}

func (st *stream) feed(ctx context.Context, burst []byte) error {
	silence := make([]byte, streamBlock)
	var pending []byte
	var notify chan time.Time
	start := time.Now()
	for k := 0; ; k++ {
		select {
		case <-time.After(time.Until(start.Add(time.Duration(k) * 10 * time.Millisecond))):
		case <-ctx.Done():
			return ctx.Err()
		}
		select {
		case n := <-st.req:
			pending, notify = burst, n
		default:
		}
		out := silence
		// A pacat that fell behind once (a loaded machine) would keep its
		// backlog forever at a real-time feed, and every burst would wait
		// behind it: silence is dropped while anything is still queued.
		if len(pending) == 0 && queued(st.stdin) > 0 {
			continue
		}
		if len(pending) > 0 {
			n := min(len(pending), streamBlock)
			out, pending = pending[:n], pending[n:]
		}
		if _, err := st.stdin.Write(out); err != nil {
			return err
		}
		if notify != nil {
			notify <- time.Now()
			notify = nil
		}
	}
}

// queued is how many bytes wait unread in the pipe f writes into (TIOCINQ
// is FIONREAD, which pipes answer at either end).
func queued(f *os.File) int {
	n := 0
	if rc, err := f.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.TIOCINQ) })
	}
	return n
}

// play queues a burst and returns when its first block was written.
func (st *stream) play(ctx context.Context) (time.Time, error) {
	n := make(chan time.Time, 1)
	select {
	case st.req <- n:
	case err := <-st.done:
		return time.Time{}, st.failed(err)
	case <-ctx.Done():
		return time.Time{}, ctx.Err()
	}
	select {
	case at := <-n:
		return at, nil
	case err := <-st.done:
		return time.Time{}, st.failed(err)
	case <-ctx.Done():
		return time.Time{}, ctx.Err()
	}
}

// failed reports why the feed ended, with what pacat said; stderr is
// readable only once Wait returned.
func (st *stream) failed(err error) error {
	st.stop()
	return fmt.Errorf("bench: pacat stream ended: %v: %s", err, bytes.TrimSpace(st.stderr.Bytes()))
}

func (st *stream) stop() {
	st.stdin.Close()
	if st.cmd.Process != nil {
		st.cmd.Process.Kill()
	}
	st.cmd.Wait()
}

// burstPCM is a tone burst as 16-bit little-endian mono samples at the
// sink's rate, loud from the first sample so the onset is where playback
// starts.
func burstPCM(freq float64, length time.Duration) []byte {
	n := int(length.Seconds() * toneRate)
	out := make([]byte, 0, 2*n)
	for i := 0; i < n; i++ {
		v := int16(0.5 * 32767 * math.Sin(2*math.Pi*freq*float64(i)/toneRate))
		out = binary.LittleEndian.AppendUint16(out, uint16(v))
	}
	return out
}

// wavHeader is the header of a 16-bit mono PCM WAV file at the sink's rate
// holding dataLen bytes.
func wavHeader(dataLen int) []byte {
	var b bytes.Buffer
	le := func(v any) { binary.Write(&b, binary.LittleEndian, v) }
	b.WriteString("RIFF")
	le(uint32(36 + dataLen))
	b.WriteString("WAVEfmt ")
	le(uint32(16))
	le(uint16(1)) // PCM
	le(uint16(1)) // mono
	le(uint32(toneRate))
	le(uint32(2 * toneRate))
	le(uint16(2))
	le(uint16(16))
	b.WriteString("data")
	le(uint32(dataLen))
	return b.Bytes()
}
