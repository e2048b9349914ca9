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
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/gorilla/websocket"
)

// toneRate is the speaker sink's rate; decoding to it avoids a resampler
// smearing the onset.
const toneRate = 44100

// Latency plays tone bursts into PulseAudio's speaker sink and times their
// arrival at a websocket listener that decodes the stream with ffmpeg, as a
// browser decodes it before playing.
type Latency struct {
	Target      Target
	PulseServer string // PULSE_SERVER for paplay, e.g. unix:/tmp/.pulse.sock
	CookieFile  string // PULSE_COOKIE for paplay; empty: none
	Sink        string // "speaker" when empty
	Paplay      string // paplay binary
	// Pacat, when set, plays the bursts through one long-lived pacat
	// stream fed in real time instead of one paplay per burst, which
	// takes paplay's start and connection out of the figure.
	Pacat      string
	FFmpeg     string        // ffmpeg binary, the listener's decoder
	Bursts     int           // at least 20 for a p95 worth reading
	Interval   time.Duration // between burst starts (1s when 0)
	BurstLen   time.Duration // 150ms when 0
	Background int           // extra reading listeners during the bursts
	Progress   io.Writer
}

// LatencyResult is a latency run.
type LatencyResult struct {
	Machine Machine `json:"machine"`
	// FirstAudio is from the first listener's dial to its first stream
	// message; Cold says the relay started an encoder for it (from
	// /metrics), i.e. the figure includes the encoder's start.
	FirstAudio time.Duration   `json:"first_audio_ns"`
	Cold       *bool           `json:"encoder_cold,omitempty"`
	Background int             `json:"background_listeners"`
	Player     string          `json:"player"`
	Delays     []time.Duration `json:"delays_ns"`
	Missed     int             `json:"missed_bursts"`
	Summary    Summary         `json:"summary"`
}

func (l *Latency) logf(format string, args ...any) {
	if l.Progress != nil {
		fmt.Fprintf(l.Progress, format+"\n", args...)
	}
}

// Run measures time to first audio, then the bursts.
func (l *Latency) Run(ctx context.Context) (LatencyResult, error) {
	res := LatencyResult{Machine: ThisMachine(l.Target.procRoot()), Background: l.Background}
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
	if l.Pacat != "" {
		res.Player = "pacat"
	}

	startsBefore, haveStarts := l.encoderStarts(ctx)
	dialed := time.Now()
	conn, resp, err := (&websocket.Dialer{HandshakeTimeout: 30 * time.Second}).DialContext(ctx, l.Target.WS, http.Header{})
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		return res, fmt.Errorf("bench: connecting to %s: %w", l.Target.WS, err)
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

	if l.Background > 0 {
		pool := &Pool{URL: l.Target.WS}
		defer pool.Close()
		l.logf("connecting %d background listeners", l.Background)
		if err := pool.Grow(ctx, l.Background); err != nil {
			return res, err
		}
	}

	dec, err := startDecoder(ctx, l.FFmpeg)
	if err != nil {
		return res, err
	}
	defer dec.stop()
	// Forward the websocket into the decoder for the whole run; the first
	// message goes first so the decoder starts on a packet boundary.
	fwdDone := make(chan error, 1)
	go func() {
		if _, err := dec.stdin.Write(first); err != nil {
			fwdDone <- err
			return
		}
		for {
			_, msg, err := conn.ReadMessage()
			if err == nil {
				_, err = dec.stdin.Write(msg)
			}
			if err != nil {
				fwdDone <- err
				return
			}
		}
	}()
	defer func() {
		conn.Close()
		dec.stdin.Close()
		<-fwdDone
	}()

	// Let the decoder get past its start and the detector arm on silence.
	select {
	case <-time.After(time.Second):
	case <-ctx.Done():
		return res, ctx.Err()
	}
	play := func() (time.Time, func() error, error) { return l.paplay(ctx, env, sink, wav) }
	if l.Pacat != "" {
		st, err := startStream(ctx, l.Pacat, sink, env, pcm)
		if err != nil {
			return res, err
		}
		defer st.stop()
		play = func() (time.Time, func() error, error) {
			at, err := st.play(ctx)
			return at, func() error { return nil }, err
		}
	}
	for i := 0; i < bursts; i++ {
		// Drain onsets from before this burst (noise, a late previous one).
		for drained := false; !drained; {
			select {
			case <-dec.onsets:
			default:
				drained = true
			}
		}
		played, wait, err := play()
		if err != nil {
			return res, err
		}
		timeout := time.NewTimer(interval + 2*time.Second)
		select {
		case at := <-dec.onsets:
			d := at.Sub(played)
			res.Delays = append(res.Delays, d)
			l.logf("burst %d: %v", i+1, d)
		case err := <-dec.done:
			timeout.Stop()
			wait()
			dec.stop()
			return res, fmt.Errorf("bench: decoder ended: %v: %s", err, bytes.TrimSpace(dec.stderr.Bytes()))
		case <-timeout.C:
			res.Missed++
			l.logf("burst %d: no onset seen", i+1)
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
	res.Summary = Summarize(append([]time.Duration(nil), res.Delays...))
	if len(res.Delays) == 0 {
		return res, errors.New("bench: no burst reached the listener")
	}
	return res, nil
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

// decoder is ffmpeg turning the listener's MPEG-TS into samples, with an
// onset detector on its output that timestamps each onset as it is read.
type decoder struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	onsets chan time.Time
	done   chan error
	stderr bytes.Buffer
}

func startDecoder(ctx context.Context, ffmpeg string) (*decoder, error) {
	// Everything that makes ffmpeg wait for more input before decoding is
	// turned off: the figure is the stream's latency, not the decoder's.
	cmd := exec.CommandContext(ctx, ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error",
		"-fflags", "nobuffer", "-flags", "low_delay", "-probesize", "32", "-analyzeduration", "0",
		"-f", "mpegts", "-i", "pipe:0",
		"-f", "f32le", "-ac", "1", "-ar", fmt.Sprint(toneRate), "-flush_packets", "1", "pipe:1")
	d := &decoder{cmd: cmd, onsets: make(chan time.Time, 16), done: make(chan error, 1)}
	var err error
	if d.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, fmt.Errorf("bench: decoder: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("bench: decoder: %w", err)
	}
	cmd.Stderr = &d.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: starting decoder %s: %w", ffmpeg, err)
	}
	go func() {
		det := OnsetDetector{Window: toneRate / 400, Threshold: 0.05, Quiet: 40} // 2.5 ms windows, 100 ms quiet
		buf := make([]byte, 8192)
		var rest []byte
		var samples []float32
		for {
			n, err := stdout.Read(buf)
			at := time.Now()
			if n > 0 {
				samples, rest = appendF32LE(samples[:0], append(rest, buf[:n]...))
				rest = append([]byte(nil), rest...)
				for range det.Feed(samples) {
					select {
					case d.onsets <- at:
					default:
					}
				}
			}
			if err != nil {
				// stderr is read only after Wait, which owns it until then.
				d.done <- err
				return
			}
		}
	}()
	return d, nil
}

func (d *decoder) stop() {
	d.stdin.Close()
	if d.cmd.Process != nil {
		d.cmd.Process.Kill()
	}
	d.cmd.Wait()
}

// paplay starts one paplay playing wav; the returned time is when the
// process was started, so its start-up counts as latency, as it does for
// any application that opens a stream to play a sound.
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
	stdin  io.WriteCloser
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
	var err error
	if st.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, fmt.Errorf("bench: %s: %w", pacat, err)
	}
	if err := cmd.Start(); err != nil {
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
