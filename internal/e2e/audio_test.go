package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/sys/unix"

	"github.com/pulse-sidecar/pulse-sidecar/internal/audiotest"
)

// playRate is what the desktop's paplay gets: float32 mono at PulseAudio's
// sink rate, so nothing resamples on the way in.
const playRate = 44100

// chunk is how much the player writes at a time: 10 ms.
const chunk = playRate / 100

// program is the audio a desktop plays, one sample per index.
type program func(i int) float32

// tone is a continuous sine at a whole number of Hz: one second of it loops
// seamlessly.
func tone(freq int) program {
	s := audiotest.Sine(float64(freq), playRate, 0.5, playRate, 1)
	return func(i int) float32 { return s[i%len(s)] }
}

// player plays a program in real time through paplay in the desktop
// container. paplay reads a FIFO in the shared feed directory whose pipe
// buffer is shrunk to one page, so what the test writes is what PulseAudio
// plays a few tens of milliseconds later: the write times are the reference
// for latency.
type player struct {
	p       *pod
	name    string // of its FIFOs in the feed directory
	prog    program
	length  int  // samples; the program ends there
	restart bool // start paplay again when it exits (PulseAudio restarted)

	// stop ends the player and returns why it ended; err is that reason,
	// set before stop returns.
	stop func() error
	err  error
	// ended: the test stopped the server on purpose, paplay dying with it
	// is no error.
	ended bool

	mu      sync.Mutex
	written []time.Time // wall time each chunk of the program was written
	last    int         // index of the last chunk written, -1 before the first
}

// lead is how far ahead of the wall clock the player writes, enough to keep
// paplay (50 ms of buffer) from underrunning on a loaded machine.
const lead = 60 * time.Millisecond

// run plays until the program ends or ctx is done.
func (pl *player) run(ctx context.Context) error {
	chunks := (pl.length + chunk - 1) / chunk
	pl.mu.Lock()
	pl.written, pl.last = make([]time.Time, chunks), -1
	pl.mu.Unlock()
	var start time.Time
	for attempt := 0; ; attempt++ {
		w, stop, err := pl.startPaplay(ctx, attempt)
		if err != nil {
			return err
		}
		if start.IsZero() {
			start = time.Now()
		}
		err = pl.feed(ctx, w, start, chunks)
		w.Close()
		stop()
		if err == nil || ctx.Err() != nil || !pl.restart {
			return err
		}
		if attempt > 50 {
			return fmt.Errorf("paplay in %s keeps failing: %w", pl.p.desktop, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// feed writes the chunks due by the wall clock, skipping what is already
// late (while paplay was being restarted) instead of queueing it.
func (pl *player) feed(ctx context.Context, w *os.File, start time.Time, chunks int) error {
	buf := make([]float32, chunk)
	for k := 0; k < chunks; k++ {
		due := start.Add(time.Duration(k) * 10 * time.Millisecond)
		if late := time.Since(due); late > 200*time.Millisecond {
			k += int(late / (10 * time.Millisecond))
			if k >= chunks {
				return nil
			}
			due = start.Add(time.Duration(k) * 10 * time.Millisecond)
		}
		// Usually the write blocks: the pipe and paplay's buffer hold more
		// than lead, so paplay's reading paces the loop.
		if wait := time.Until(due.Add(-lead)); wait > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
		} else if err := ctx.Err(); err != nil {
			return err
		}
		for i := range buf {
			if n := k*chunk + i; n < pl.length {
				buf[i] = pl.prog(n)
			} else {
				buf[i] = 0
			}
		}
		if err := w.SetWriteDeadline(time.Now().Add(3 * time.Second)); err != nil {
			return err
		}
		if _, err := w.Write(audiotest.F32LEBytes(buf)); err != nil {
			return fmt.Errorf("writing to paplay's FIFO: %w", err)
		}
		pl.mu.Lock()
		pl.written[k], pl.last = time.Now(), k
		pl.mu.Unlock()
	}
	return nil
}

// startPaplay starts paplay on a new FIFO and opens its writing end once
// paplay has opened it for reading.
func (pl *player) startPaplay(ctx context.Context, attempt int) (*os.File, func(), error) {
	name := fmt.Sprintf("%s-%d", pl.name, attempt)
	fifo := filepath.Join(pl.p.feed, name)
	if err := unix.Mkfifo(fifo, 0o666); err != nil {
		return nil, nil, fmt.Errorf("mkfifo %s: %w", fifo, err)
	}
	// umask took bits off the mode.
	if err := os.Chmod(fifo, 0o666); err != nil {
		return nil, nil, err
	}
	pctx, cancel := context.WithCancel(ctx)
	cmd := pl.p.e.command(pctx, pl.p.desktopExec(nil, "paplay", "--raw", "--format=float32le",
		fmt.Sprintf("--rate=%d", playRate), "--channels=1", "--latency-msec=50", "--stream-name=e2e",
		"/feed/"+name)...)
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		cancel()
		<-exited
		os.Remove(fifo)
	}
	// Opening for writing without a reader fails with ENXIO instead of
	// blocking; poll until paplay has opened its end.
	deadline := time.Now().Add(30 * time.Second)
	for {
		w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0)
		if err == nil {
			if err := shrinkPipe(w); err != nil {
				w.Close()
				stop()
				return nil, nil, err
			}
			return w, stop, nil
		}
		select {
		case err := <-exited:
			exited <- err
			stop()
			return nil, nil, fmt.Errorf("paplay in %s exited before opening %s: %v", pl.p.desktop, fifo, err)
		default:
		}
		if !errors.Is(err, syscall.ENXIO) || time.Now().After(deadline) || ctx.Err() != nil {
			stop()
			return nil, nil, fmt.Errorf("opening %s for paplay: %w", fifo, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// shrinkPipe makes the FIFO hold one page: a full 64 KiB pipe would queue
// 370 ms of audio between the test's clock and PulseAudio.
func shrinkPipe(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		_, serr = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, 4096)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("F_SETPIPE_SZ on %s: %w", f.Name(), serr)
	}
	return nil
}

// writtenAt is when sample i of the program was written, zero if it was
// skipped or not yet written.
func (pl *player) writtenAt(i int) time.Time {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if k := i / chunk; k < len(pl.written) {
		return pl.written[k]
	}
	return time.Time{}
}

// reached reports whether the program got to sample i, written or skipped.
func (pl *player) reached(i int) bool {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return len(pl.written) > 0 && pl.last >= i/chunk
}

// startPlayer runs a player in the background; it stops when the test ends
// at the latest.
func startPlayer(t *testing.T, p *pod, prog program, seconds float64, restart bool) *player {
	t.Helper()
	pl := &player{p: p, name: "play-" + randomHex(t, 3), prog: prog, length: int(seconds * playRate), restart: restart}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		pl.err = pl.run(ctx)
	}()
	pl.stop = func() error {
		cancel()
		<-done
		if errors.Is(pl.err, context.Canceled) {
			return nil
		}
		return pl.err
	}
	t.Cleanup(func() {
		if err := pl.stop(); err != nil && !pl.ended {
			t.Errorf("player: %v", err)
		}
	})
	return pl
}

// arrival is one websocket message of the speaker stream.
type arrival struct {
	at  time.Time
	end int // stream offset just past the message
}

// listener is a speaker websocket client that keeps everything it receives.
type listener struct {
	conn      *websocket.Conn
	connected time.Time

	mu       sync.Mutex
	data     []byte
	arrivals []arrival
	err      error // why reading stopped
	done     chan struct{}
}

func listen(t *testing.T, addr string) *listener {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	start := time.Now()
	conn, resp, err := d.Dial("ws://"+addr+"/", nil)
	if err != nil {
		t.Fatalf("speaker websocket %s: %v", addr, err)
	}
	resp.Body.Close()
	l := &listener{conn: conn, connected: start, done: make(chan struct{})}
	go l.read()
	t.Cleanup(l.close)
	return l
}

func (l *listener) read() {
	defer close(l.done)
	for {
		_, msg, err := l.conn.ReadMessage()
		now := time.Now()
		l.mu.Lock()
		if err != nil {
			l.err = err
			l.mu.Unlock()
			return
		}
		l.data = append(l.data, msg...)
		l.arrivals = append(l.arrivals, arrival{at: now, end: len(l.data)})
		l.mu.Unlock()
	}
}

func (l *listener) close() {
	l.conn.Close()
	<-l.done
}

// snapshot returns what arrived so far and the error that ended reading, if
// it did end.
func (l *listener) snapshot() ([]byte, []arrival, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]byte(nil), l.data...), append([]arrival(nil), l.arrivals...), l.err
}

// messages splits what a listener received back into its websocket
// messages.
func (l *listener) messages() [][]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out [][]byte
	from := 0
	for _, a := range l.arrivals {
		out = append(out, l.data[from:a.end:a.end])
		from = a.end
	}
	return out
}

func (l *listener) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.arrivals)
}

// waitBytes waits until at least n bytes arrived.
func (l *listener) waitBytes(t *testing.T, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		data, _, err := l.snapshot()
		if len(data) >= n {
			return
		}
		if err != nil {
			t.Fatalf("speaker stream ended after %d bytes: %v", len(data), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("speaker stream: fewer than %d bytes within %s", n, within)
}

// timeline maps positions in the decoded audio back to when their bytes
// arrived. The encoder's output is constant bitrate, so a sample's position
// in the stream is proportional to its index.
type timeline struct {
	arrivals []arrival
	bytes    int
	samples  int
}

func (tl timeline) at(sample int) time.Time {
	off := int(float64(sample) / float64(tl.samples) * float64(tl.bytes))
	i := sort.Search(len(tl.arrivals), func(i int) bool { return tl.arrivals[i].end > off })
	if i == len(tl.arrivals) {
		i--
	}
	return tl.arrivals[i].at
}

// span is a loud stretch of decoded audio, in samples.
type span struct{ start, end int }

func (s span) seconds(rate int) float64 { return float64(s.end-s.start) / float64(rate) }

// spans finds loud stretches (10 ms RMS above threshold) separated by at
// least minGap of quiet.
func spans(samples []float32, rate int, threshold float64, minGap time.Duration) []span {
	w := rate / 100
	gap := int(minGap.Seconds() * float64(rate))
	var out []span
	for i := 0; i+w <= len(samples); i += w {
		if audiotest.RMS(samples[i:i+w]) <= threshold {
			continue
		}
		if n := len(out); n > 0 && i-out[n-1].end < gap {
			out[n-1].end = i + w
			continue
		}
		out = append(out, span{i, i + w})
	}
	return out
}

// trim drops margin samples at both ends of a span: onsets and codec frame
// edges are not the tone.
func trim(samples []float32, s span, margin int) []float32 {
	if s.end-s.start <= 2*margin {
		return samples[s.start:s.end]
	}
	return samples[s.start+margin : s.end-margin]
}

// percentile of sorted values, nearest rank.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p/100*float64(len(sorted))+0.5) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(sorted) {
		i = len(sorted) - 1
	}
	return sorted[i]
}
