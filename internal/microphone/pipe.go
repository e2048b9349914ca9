package microphone

import (
	"errors"
	"log/slog"
	"math"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/pulse-sidecar/pulse-sidecar/internal/fifo"
)

// pipeBuf is PIPE_BUF on Linux: a non-blocking write of at most this many
// bytes to a pipe is atomic, it either goes in whole or fails with EAGAIN.
const pipeBuf = 4096

// pipeWriter writes converted audio to module-pipe-source's FIFO without ever
// waiting: what does not fit is dropped and counted, so a PulseAudio that is
// not reading (no recorder, restarting, gone) cannot stall the websocket.
//
// Alignment: every write is at most pipeBuf bytes and a whole number of
// frames, so the kernel accepts each one completely or not at all and the
// stream in the pipe never holds a partial frame. Should a write still come
// back short in the middle of a frame, the rest of that frame is kept and
// written before anything else, so what PulseAudio reads stays frame-aligned;
// the remaining whole frames of that message are dropped.
type pipeWriter struct {
	path  string
	frame int // bytes per frame of the pipe format
	want  int // bytes allowed to wait in the pipe, also the buffer size asked for
	log   *slog.Logger
	// written and dropped count every byte Write is given, since only
	// Write knows which of them went into the pipe (audio dropped before
	// it reaches Write is counted where it is dropped).
	written, dropped prometheus.Counter

	f       *os.File
	pending []byte // tail of a frame that a short write split
	openErr error  // last open failure, to log changes only
}

// newPipeWriter prepares a writer that lets at most maxQueued of audio wait
// in the pipe. PulseAudio's pipe source only reads while something records,
// so whatever queues up meanwhile is what the next recorder hears first.
// What it writes and drops is counted in m.
func newPipeWriter(path string, pipe Format, maxQueued time.Duration, log *slog.Logger, m *metrics) *pipeWriter {
	return &pipeWriter{
		path:    path,
		frame:   pipe.FrameSize(),
		want:    int(float64(pipe.Rate*pipe.FrameSize()) * maxQueued.Seconds()),
		log:     log,
		written: m.written,
		dropped: m.dropped,
		pending: make([]byte, 0, pipe.FrameSize()),
	}
}

// Write sends b (whole frames of the pipe format), counts and reports how
// many bytes went into the pipe and how many were dropped.
func (w *pipeWriter) Write(b []byte) (written, dropped int) {
	written, dropped = w.write(b)
	w.written.Add(float64(written))
	w.dropped.Add(float64(dropped))
	return written, dropped
}

func (w *pipeWriter) write(b []byte) (written, dropped int) {
	if w.f == nil && !w.open() {
		return 0, len(b)
	}
	if len(w.pending) > 0 {
		n, err := fifo.RawWrite(w.f, w.pending)
		written += max(n, 0)
		w.pending = w.pending[:copy(w.pending, w.pending[max(n, 0):])]
		if err != nil || len(w.pending) > 0 {
			w.fail(err)
			return written, len(b)
		}
	}
	// The kernel rounds the pipe buffer up to whole pages (16 KiB for 50 ms
	// of 44.1 kHz float32, i.e. 93 ms), so the bound is kept here: frames
	// beyond it are dropped before they reach the pipe.
	if room := w.room(); len(b) > room {
		dropped = len(b) - room
		b = b[:room]
	}
	chunk := pipeBuf / w.frame * w.frame
	for len(b) > 0 {
		n := min(chunk, len(b))
		got, err := fifo.RawWrite(w.f, b[:n])
		got = max(got, 0)
		written += got
		if got < n {
			w.fail(err)
			kept := 0
			if rem := got % w.frame; rem != 0 && w.f != nil {
				kept = w.frame - rem
				w.pending = append(w.pending[:0], b[got:got+kept]...)
			}
			return written, dropped + len(b) - got - kept
		}
		b = b[n:]
	}
	return written, dropped
}

// room is how many bytes, in whole frames, the pipe may take before it holds
// more than the configured amount of audio. If the kernel cannot say, the pipe's own size is the
// only bound.
func (w *pipeWriter) room() int {
	rc, err := w.f.SyscallConn()
	if err != nil {
		return math.MaxInt
	}
	queued, ierr := 0, error(nil)
	if err := rc.Control(func(fd uintptr) {
		// FIONREAD on a pipe counts unread bytes; x/sys spells it TIOCINQ.
		queued, ierr = unix.IoctlGetInt(int(fd), unix.TIOCINQ)
	}); err != nil || ierr != nil {
		return math.MaxInt
	}
	limit := max(w.want/w.frame, 1) * w.frame
	return max(limit-queued, 0) / w.frame * w.frame
}

// open opens the FIFO and shrinks its buffer. It fails quietly, apart from a
// log line when the reason changes: no FIFO (PulseAudio not up yet) or no
// reader (ENXIO) are normal states that the next message retries.
func (w *pipeWriter) open() bool {
	f, err := fifo.OpenWriteNonblock(w.path)
	if err != nil {
		if w.openErr == nil || w.openErr.Error() != err.Error() {
			w.log.Info("microphone FIFO not writable yet, dropping audio", "fifo", w.path, "err", err)
		}
		w.openErr = err
		return false
	}
	w.openErr = nil
	w.f = f
	w.pending = w.pending[:0] // a new pipe starts on a frame boundary
	granted, err := fifo.SetPipeSize(f, w.want)
	if err != nil {
		// EBUSY: the pipe already holds more than asked for; it still works,
		// only with more latency, so keep going.
		size, _ := fifo.PipeSize(f)
		w.log.Warn("cannot shrink microphone FIFO buffer", "fifo", w.path, "want", w.want, "size", size, "err", err)
	} else {
		w.log.Info("microphone FIFO opened", "fifo", w.path, "want", w.want, "pipe_size", granted)
	}
	return true
}

// fail handles the error of a short write: EAGAIN means PulseAudio is behind
// (drop, keep the pipe); anything else (EPIPE after a PulseAudio restart, which
// re-creates the FIFO) closes it so the next message reopens by path.
func (w *pipeWriter) fail(err error) {
	if err == nil || errors.Is(err, unix.EAGAIN) {
		return
	}
	w.log.Info("microphone FIFO closed, reopening on next message", "fifo", w.path, "err", err)
	w.Close()
}

// Close releases the FIFO; a later Write reopens it.
func (w *pipeWriter) Close() {
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
	w.pending = w.pending[:0]
}
