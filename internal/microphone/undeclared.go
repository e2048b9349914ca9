package microphone

import (
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulse-sidecar/pulse-sidecar/internal/wsserver"
)

// Undeclared says what the relay makes of a sender that declares none of
// format, rate and channels: abcdesktop's own web client, which posts its
// AudioWorklet's 128 float32 mono samples per message at whatever rate its
// AudioContext runs (usually 48000 Hz) and says nothing about it. The zero
// value detects the rate.
type Undeclared struct {
	// Passthrough writes the bytes as if they were in the pipe's format,
	// as the original relay did (and so plays 48 kHz audio 8 % slow into a
	// 44.1 kHz pipe).
	Passthrough bool
	// Rate, when not 0, is the rate of every undeclared stream (float32
	// mono); 0 detects it per stream.
	Rate int
}

// UndeclaredFallbackRate is what an undeclared stream is taken to run at
// when its arrivals cannot tell (a sender that sent a single burst and went
// quiet, or went away, within the hold): the real client's usual rate.
const UndeclaredFallbackRate = 48000

// ParseUndeclared reads --mic-undeclared: detect, passthrough, or a rate
// from Rates.
func ParseUndeclared(s string) (Undeclared, error) {
	switch s {
	case "detect", "":
		return Undeclared{}, nil
	case "passthrough":
		return Undeclared{Passthrough: true}, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || !knownRate(n) {
		return Undeclared{}, fmt.Errorf("%q: want detect, passthrough or a rate, one of %v", s, Rates)
	}
	return Undeclared{Rate: n}, nil
}

func (u Undeclared) String() string {
	switch {
	case u.Passthrough:
		return "passthrough"
	case u.Rate != 0:
		return strconv.Itoa(u.Rate)
	}
	return "detect"
}

// declaresNothing reports whether the upgrade request's query names none of
// the format parameters; other parameters (jwt_token) do not count.
func declaresNothing(q url.Values) bool {
	for _, k := range []string{"format", "rate", "channels"} {
		if _, ok := q[k]; ok {
			return false
		}
	}
	return true
}

// admitUndeclared returns the session of a sender that declares nothing, or
// nil when the sender declared something or the relay passes undeclared
// streams through (NegotiateFormat then fills in the defaults, as before).
func (r *Relay) admitUndeclared(q url.Values) *sender {
	u := r.cfg.Undeclared
	if u.Passthrough || !declaresNothing(q) {
		return nil
	}
	if u.Rate != 0 {
		return &sender{r: r, in: Format{Encoding: F32LE, Rate: u.Rate, Channels: 1}}
	}
	// The rate here only makes Serve's converter valid; the stream's own
	// converter is made once the rate is known.
	return &sender{r: r, in: Format{Encoding: F32LE, Rate: UndeclaredFallbackRate, Channels: 1}, detect: true}
}

// verifyFactor is how much longer than the hold a second detector watches
// the same arrivals (2 s by default). The hold decides on 400 ms, where a
// sender that really loses time early (an audio thread starved at start,
// as headless Chromium's is on a loaded machine) looks slow; over 2 s the
// same loss is small, and a wrong first decision is corrected.
const verifyFactor = 5

// maxHeld bounds the bytes held for detection, and the backlog they become
// once converted: two seconds of float32 at the highest admitted rate, what
// a real-time sender at that rate sends in the detector's longest wait
// (maxHoldFactor holds, 2 s), so only a sender faster than real time
// reaches it early, and is decided on what it sent.
const maxHeld = 2 * 192000 * 4

// backlogStall is how long flushed audio may wait for PulseAudio to read
// the pipe before it is dropped: PulseAudio reads the pipe as soon as it
// is scheduled while something records, so a backlog that makes no
// progress this long means nothing records, and stale audio must not
// reach the next recorder.
const backlogStall = 200 * time.Millisecond

// undeclaredStream is one sender's undeclared stream while its rate is
// detected and after. Audio is held from the first message until the
// RateDetector decides (DefaultDetectHold, 400 ms; up to twice that when
// the arrivals are ambiguous, up to 2 s while a sender that fell behind at
// start has not caught up), then everything held is converted at the
// detected rate in one go, so no sample is ever converted at a wrong rate,
// and written to the pipe as fast as PulseAudio reads it. The hold costs a
// one-off delay at the start of a stream; the 8.8 % between 44100 and 48000
// Hz needs that many arrivals to be told apart under jitter and bursts.
//
// Messages come from the connection's reader, the decision may also come
// from a timer when the sender goes quiet, so everything is under mu; the
// pipe is written under mu too, so the order of audio is kept.
type undeclaredStream struct {
	r   *Relay
	c   *wsserver.Conn
	log *slog.Logger

	mu             sync.Mutex
	det            *RateDetector
	verify         *RateDetector // the same arrivals over a longer hold; nil once it decided
	rate           int           // decided
	held           []byte
	timer          *time.Timer // from the first message held
	conv           *Converter  // nil until decided
	out            []byte
	backlog        []byte    // converted audio the pipe had no room for yet
	progress       time.Time // when the backlog last shrank
	flushed        time.Time // when the held audio went to the backlog
	backlogDropped int
	closed         bool
}

func (r *Relay) newUndeclaredStream(c *wsserver.Conn, log *slog.Logger) *undeclaredStream {
	return &undeclaredStream{r: r, c: c, log: log, det: NewRateDetector(Rates, r.cfg.detectHold()),
		verify: newRateDetector(Rates, verifyFactor*r.cfg.detectHold(), 1)}
}

// push takes one message, received at now.
func (u *undeclaredStream) push(now time.Time, msg []byte) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.verify != nil {
		if rate, ok := u.verify.Observe(now, len(msg)/4); ok {
			u.verify = nil
			if u.conv != nil && rate != u.rate {
				u.correct(rate)
			}
		}
	}
	if u.conv != nil {
		u.convert(msg, false)
		return
	}
	if !u.r.isCurrent(u.c) {
		// Its audio would be dropped anyway; holding it would only let a
		// stream of replaced senders pile up memory.
		u.held = nil
		return
	}
	u.held = append(u.held, msg...)
	rate, ok := u.det.Observe(now, len(msg)/4)
	if u.timer == nil {
		u.timer = time.AfterFunc(u.r.cfg.detectHold(), u.tick)
	}
	if !ok && len(u.held) >= maxHeld {
		rate, ok = u.det.Decide()
	}
	if ok {
		u.decide(rate, "detected")
	}
}

// tick decides for a sender that sent nothing since the hold or the
// deadline came.
func (u *undeclaredStream) tick() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.conv != nil || u.closed {
		return
	}
	now := time.Now()
	if rate, ok := u.det.Check(now); ok {
		u.decide(rate, "detected")
		return
	}
	if next := u.det.NextCheck(now); now.Before(next) {
		u.timer.Reset(next.Sub(now))
		return
	}
	u.decide(UndeclaredFallbackRate, "fallback")
}

// close ends the stream: audio still held is converted at the best rate
// the arrivals give and written, as a declared stream's would have been.
func (u *undeclaredStream) close() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.closed = true
	if u.timer != nil {
		u.timer.Stop()
	}
	if u.conv == nil && len(u.held) > 0 {
		if rate, ok := u.det.Decide(); ok {
			u.decide(rate, "detected")
		} else {
			u.decide(UndeclaredFallbackRate, "fallback")
		}
	}
	// Messages drain the backlog; with none coming any more, wait for
	// PulseAudio here, as long as it makes progress and the connection is
	// not being closed by the server: a replaced sender's audio is dropped,
	// and a stopping daemon must not wait on PulseAudio.
	for i := 0; len(u.backlog) > 0 && !closing(u.c) && i < int(10*backlogStall/time.Millisecond); i++ {
		u.mu.Unlock()
		time.Sleep(time.Millisecond)
		u.mu.Lock()
		u.convert(nil, false)
	}
}

// decide makes the converter for rate and flushes what was held.
func (u *undeclaredStream) decide(rate int, how string) {
	if u.timer != nil {
		u.timer.Stop()
	}
	in := Format{Encoding: F32LE, Rate: rate, Channels: 1}
	conv, err := NewConverter(in, u.r.pipe)
	if err != nil {
		// Rates only holds valid rates; keep the audio flowing regardless.
		u.log.Error("microphone converter for detected rate", "rate", rate, "err", err)
		conv, _ = NewConverter(u.r.pipe, u.r.pipe)
	}
	u.conv, u.rate = conv, rate
	held := time.Duration(0)
	if u.det.started {
		held = time.Since(u.det.first).Round(time.Millisecond)
	}
	u.log.Info("microphone rate of undeclared stream", "rate", rate, "how", how, "held", held, "held_bytes", len(u.held))
	u.r.um.detected.Set(float64(rate))
	u.r.um.decisions.WithLabelValues(strconv.Itoa(rate), how).Inc()
	// The hold's audio goes out as one batch: it may be more than the pipe
	// takes at once, so it waits in the backlog for PulseAudio to read.
	u.progress = time.Now()
	u.flushed = u.progress
	u.convert(u.held, true)
	u.held = nil
}

// correct switches the stream to the rate the longer watch found. The
// audio before it was converted at the first decision's rate; what follows
// is right.
func (u *undeclaredStream) correct(rate int) {
	conv, err := NewConverter(Format{Encoding: F32LE, Rate: rate, Channels: 1}, u.r.pipe)
	if err != nil {
		return
	}
	u.log.Warn("microphone rate of undeclared stream corrected", "from", u.rate, "rate", rate)
	u.conv, u.rate = conv, rate
	u.r.um.detected.Set(float64(rate))
	u.r.um.decisions.WithLabelValues(strconv.Itoa(rate), "corrected").Inc()
}

// convert converts msg and writes it after any backlog; batch (the held
// audio) goes through the backlog whatever its size.
func (u *undeclaredStream) convert(msg []byte, batch bool) {
	r := u.r
	if len(u.backlog) == 0 && !batch {
		u.out = r.writeCurrent(u.c, u.conv, u.out, msg)
		return
	}
	u.out = r.convert(u.conv, u.out, msg)
	if len(u.out) == 0 && len(u.backlog) == 0 {
		return
	}
	u.backlog = append(u.backlog, u.out...)
	if over := len(u.backlog) - maxHeld; over > 0 {
		// A sender faster than real time into a pipe that PulseAudio
		// keeps reading would grow the backlog without end: the oldest
		// audio goes, in whole frames, as a full pipe drops it.
		frame := r.pipe.FrameSize()
		over = (over + frame - 1) / frame * frame
		r.m.dropped.Add(float64(over))
		u.backlogDropped += over
		u.backlog = u.backlog[:copy(u.backlog, u.backlog[over:])]
	}
	var consumed, dropped int
	if !r.withPipe(u.c, func(w *pipeWriter) { consumed, dropped = w.writeAvailable(u.backlog) }) {
		// Replaced: its unsent audio is dropped.
		u.backlog = u.backlog[:0]
		return
	}
	now := time.Now()
	if consumed > 0 {
		u.progress = now
		u.backlog = u.backlog[:copy(u.backlog, u.backlog[consumed:])]
		if len(u.backlog) == 0 {
			u.log.Debug("microphone held audio written", "after", now.Sub(u.flushed).Round(time.Millisecond), "dropped_bytes", u.backlogDropped+dropped)
		}
	}
	u.backlogDropped += dropped
	if len(u.backlog) > 0 && now.Sub(u.progress) > backlogStall {
		u.log.Info("microphone held audio dropped: PulseAudio is not reading", "bytes", len(u.backlog))
		r.m.dropped.Add(float64(len(u.backlog)))
		u.backlog = u.backlog[:0]
	}
}

// writeAvailable writes as many whole frames of b as the pipe has room for
// and returns how many bytes of b it used (written or, on a failed write,
// dropped) and how many of those it dropped; the caller keeps the rest for
// later. A pipe that cannot be opened (nothing records) drops all of b.
func (w *pipeWriter) writeAvailable(b []byte) (used, dropped int) {
	if w.f == nil && !w.open() {
		w.dropped.Add(float64(len(b)))
		return len(b), len(b)
	}
	n := min(len(b)/w.frame*w.frame, w.room())
	if n == 0 {
		return 0, 0
	}
	_, dropped = w.Write(b[:n])
	return n, dropped
}

// detectHold is the detector's hold, DefaultDetectHold unless configured.
func (c *Config) detectHold() time.Duration {
	if c.DetectHold > 0 {
		return c.DetectHold
	}
	return DefaultDetectHold
}

type undeclaredMetrics struct {
	detected  prometheus.Gauge
	decisions *prometheus.CounterVec
}

func newUndeclaredMetrics(reg prometheus.Registerer) (*undeclaredMetrics, error) {
	const ns, sub = "pulse_sidecar", "microphone"
	m := &undeclaredMetrics{
		detected: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "detected_rate_hz", Help: "Sample rate found for the latest undeclared microphone stream (0: none yet)."}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "rate_decisions_total", Help: "Undeclared microphone streams by the rate they were given and how (detected, or fallback when the arrivals could not tell)."},
			[]string{"rate", "how"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.detected, m.decisions} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering metrics: %w", err)
		}
	}
	return m, nil
}
