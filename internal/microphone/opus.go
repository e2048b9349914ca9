package microphone

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/sys/unix"

	"github.com/pulse-sidecar/pulse-sidecar/internal/fifo"
	"github.com/pulse-sidecar/pulse-sidecar/internal/ogg"
	"github.com/pulse-sidecar/pulse-sidecar/internal/supervise"
	"github.com/pulse-sidecar/pulse-sidecar/internal/wsserver"
)

// Opus senders (?format=opus): a browser's WebCodecs AudioEncoder sends one
// Opus packet per binary message. The daemon is built without cgo, so each
// sender gets an ffmpeg child that decodes: the relay wraps the packets in
// Ogg pages (the ogg package's writer) into the child's stdin and reads
// 48 kHz float32 from its stdout, which goes through the PCM path's
// converter into the pipe writer. Nothing waits on the child: a packet the
// child cannot take at once is dropped, and decoded audio beyond the pipe
// writer's bound (MaxQueued) is dropped there, so a burst after a network
// stall is cut rather than played seconds late.

// FormatOpus is the ?format= value of an Opus sender.
const FormatOpus = "opus"

// opusRate is what the decoder outputs: Opus decodes at 48 kHz whatever
// rate the encoder was fed.
const opusRate = 48000

// maxOpusPage bounds one packet's page: pipe writes up to PIPE_BUF (4096)
// are atomic, so a page is never half written into the decoder's stdin.
// Opus packets are at most 1275 bytes per 20 ms frame; a 120 ms code-3
// packet at the highest rates is the only thing that could be larger.
const maxOpusPage = 4096

// decoderGrace is how long a decoder has to exit after its stdin closed
// and it got TERM, before it is killed. ffmpeg decoding to a pipe has
// nothing to save and exits in milliseconds; the grace only bounds one that
// is hung (stopped, starved), which nothing may wait on for long: not the
// sender that replaces its sender, not a stopping daemon.
const decoderGrace = 200 * time.Millisecond

// reasonOpus labels senders closed for sending something that is not an
// Opus packet.
const reasonOpus = "opus"

// isOpus tells whether the upgrade request asks for an Opus sender.
func isOpus(q url.Values) bool {
	v := q["format"]
	return len(v) > 0 && v[len(v)-1] == FormatOpus
}

// admitOpus reads an Opus sender's parameters: rate, optional and only
// informative (the encoder's input rate, written into OpusHead), and
// channels (1 or 2, default 1).
func (r *Relay) admitOpus(req *http.Request) (wsserver.Session, error) {
	refuse := func(err error) error {
		return &wsserver.Refusal{Status: http.StatusBadRequest, Reason: wsserver.ReasonParams, Text: err.Error()}
	}
	if r.cfg.FFmpeg == "" {
		return nil, refuse(errors.New("format opus: this relay has no decoder"))
	}
	q := req.URL.Query()
	s := &opusSender{r: r, rate: opusRate, channels: 1}
	if v, ok := q["rate"]; ok {
		n, err := strconv.Atoi(last(v))
		if err != nil || !knownRate(n) {
			return nil, refuse(fmt.Errorf("rate %.12q: want one of %v", last(v), Rates))
		}
		s.rate = n
	}
	if v, ok := q["channels"]; ok {
		n, err := strconv.Atoi(last(v))
		if err != nil || n < 1 || n > MaxChannels {
			return nil, refuse(fmt.Errorf("channels %.12q: want 1..%d", last(v), MaxChannels))
		}
		s.channels = n
	}
	return s, nil
}

// opusSender is one admitted Opus microphone websocket.
type opusSender struct {
	r        *Relay
	rate     int // informative: the browser encoder's input rate
	channels int
}

func (s *opusSender) Serve(c *wsserver.Conn) {
	r := s.r
	log := r.log.With("peer", c.Peer())
	decoded := Format{Encoding: F32LE, Rate: opusRate, Channels: r.pipe.Channels}
	conv, err := NewConverter(decoded, r.pipe)
	if err != nil {
		log.Error("microphone converter", "err", err)
		c.Close(websocket.CloseInternalServerErr, "converter")
		drainUntilClosed(c)
		return
	}
	defer r.hold(c, log)()

	d, err := s.startDecoder(c, conv, log)
	if err != nil {
		log.Error("opus decoder", "err", err)
		c.Close(websocket.CloseInternalServerErr, "decoder")
		drainUntilClosed(c)
		return
	}
	defer func() { d.stop(closing(c)) }()
	log.Info("microphone sender connected", "format", "opus", "rate", s.rate, "channels", s.channels)
	err = r.receiveOpus(c, d)
	log.Info("microphone sender disconnected", "reason", err)
}

// opusDecoder is one sender's ffmpeg child and the pipes around it.
type opusDecoder struct {
	head   ogg.OpusHead
	cancel context.CancelFunc
	done   chan struct{} // the supervisor and the output reader ended
	outR   *os.File      // decoded audio, read by the relay
	outW   *os.File      // the child's stdout, kept open across restarts

	mu  sync.Mutex
	inR *os.File // the current child's stdin, until it has started
	inW *os.File // packets go here; nil while no child runs
	ogg *ogg.OpusWriter
}

// opusDecoderArgs decode an Ogg Opus stream from stdin to float32 at 48 kHz
// on stdout, without probing or buffering.
func opusDecoderArgs(channels int) []string {
	return []string{
		"-nostdin", "-hide_banner", "-loglevel", "warning",
		"-fflags", "nobuffer", "-flags", "low_delay",
		"-probesize", "32", "-analyzeduration", "0",
		"-f", "ogg", "-i", "pipe:0",
		"-f", "f32le", "-ac", strconv.Itoa(channels), "-ar", strconv.Itoa(opusRate),
		"-flush_packets", "1",
		"pipe:1",
	}
}

func (s *opusSender) startDecoder(c *wsserver.Conn, conv *Converter, log *slog.Logger) (*opusDecoder, error) {
	r := s.r
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("decoder output pipe: %w", err)
	}
	// ~85 ms of decoded audio: the reader drains it continuously.
	_, _ = fifo.SetPipeSize(outW, 16<<10)
	d := &opusDecoder{
		head: ogg.OpusHead{Channels: uint8(s.channels), PreSkip: ogg.DefaultPreSkip, InputRate: uint32(s.rate)},
		outR: outR, outW: outW, done: make(chan struct{}),
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	sup := &supervise.Supervisor{
		Reaper: r.cfg.Reaper,
		Spec: supervise.Spec{
			Name:   "ffmpeg-opus-decoder",
			Path:   r.cfg.FFmpeg,
			Args:   opusDecoderArgs(r.pipe.Channels),
			Env:    []string{},
			Stdout: outW,
		},
		Backoff: supervise.Backoff{Min: 250 * time.Millisecond, Max: 5 * time.Second},
		Grace:   decoderGrace,
		Log:     log,
	}
	var serial uint32
	// Every start gets a fresh stdin and a fresh Ogg stream: a decoder
	// that died mid-page must not see the rest of it.
	sup.BeforeStart = func(context.Context) error {
		inR, inW, err := os.Pipe()
		if err != nil {
			return fmt.Errorf("decoder input pipe: %w", err)
		}
		// One page of pipe (the minimum): ~0.75 s of 20 ms packets at
		// 32 kbit/s, so a decoder that stalls cannot collect seconds of
		// packets to play late; what does not fit is dropped.
		_, _ = fifo.SetPipeSize(inW, 4096)
		serial++
		d.mu.Lock()
		d.closeInput()
		d.inR, d.inW = inR, inW
		d.ogg, err = ogg.NewOpusWriter(nonblocking{inW}, serial, d.head, "pulse-sidecar")
		d.mu.Unlock()
		sup.Spec.Stdin = inR
		return err
	}
	sup.OnStart = func(context.Context, *supervise.Process) {
		// The child has its copy of the read end.
		d.mu.Lock()
		if d.inR != nil {
			d.inR.Close()
			d.inR = nil
		}
		d.mu.Unlock()
	}
	sup.OnExit = func(*supervise.Process, error) {
		d.mu.Lock()
		d.closeInput()
		d.mu.Unlock()
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_ = sup.Run(ctx)
	}()
	go func() {
		defer wg.Done()
		s.readDecoded(c, d, conv)
	}()
	go func() {
		wg.Wait()
		close(d.done)
	}()
	return d, nil
}

// closeInput ends the current child's stdin; d.mu is held.
func (d *opusDecoder) closeInput() {
	if d.inR != nil {
		d.inR.Close()
		d.inR = nil
	}
	if d.inW != nil {
		d.inW.Close()
		d.inW = nil
	}
	d.ogg = nil
}

// stop ends the child and the reader, and returns once both are gone,
// within decoderGrace and the time to reap a killed child. The child gets
// the end of its stdin and, from its supervisor, TERM (with SIGCONT, should
// it be stopped), in whichever order they land; it needs the former:
// ffmpeg restarts a read that a signal interrupted, so only the end of the
// input lets a live decoder that is waiting for packets exit before the
// KILL. Its last frames still reach the pipe unless the server is closing
// the connection (closing: replaced, or the relay is stopping), whose audio
// is dropped anyway: then the reader stops at once.
func (d *opusDecoder) stop(closing bool) {
	d.cancel()
	d.mu.Lock()
	d.closeInput()
	d.mu.Unlock()
	// The reader ends when the output pipe closes, which the child's exit
	// does; the deadline is for a child whose exit is not seen in time.
	d.outW.Close()
	deadline := time.Now().Add(decoderGrace)
	if closing {
		deadline = time.Now()
	}
	d.outR.SetReadDeadline(deadline)
	<-d.done
	d.outR.Close()
}

// write wraps one packet in a page for the current child; it reports
// false when the packet is not Opus.
func (d *opusDecoder) write(pkt []byte) (ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := ogg.PacketSamples(pkt); err != nil {
		return false
	}
	if d.ogg == nil || len(pkt) > maxOpusPage-300 {
		return true // dropped: no decoder, or a packet no page can hold
	}
	// An error means the child is not keeping up (or just died): this
	// packet is dropped, the next one may fit.
	_ = d.ogg.WritePacket(pkt)
	return true
}

// nonblocking writes to a pipe without ever waiting: a full pipe is an
// error, and the page is dropped whole (writes under PIPE_BUF are atomic).
type nonblocking struct{ f *os.File }

func (w nonblocking) Write(b []byte) (int, error) {
	if len(b) > maxOpusPage {
		return 0, fmt.Errorf("page of %d bytes over %d", len(b), maxOpusPage)
	}
	n, err := fifo.RawWrite(w.f, b)
	if errors.Is(err, unix.EAGAIN) {
		return n, fmt.Errorf("decoder input full: %w", err)
	}
	return n, err
}

// readDecoded moves the child's output to the pipe source while c owns the
// microphone.
func (s *opusSender) readDecoded(c *wsserver.Conn, d *opusDecoder, conv *Converter) {
	r := s.r
	frame := 4 * r.pipe.Channels
	buf := make([]byte, 16<<10)
	var (
		pending []byte
		out     []byte
	)
	for {
		n, err := d.outR.Read(buf)
		if n > 0 {
			// Convert whole frames only; a read may end mid-sample.
			pending = append(pending, buf[:n]...)
			whole := len(pending) / frame * frame
			out = r.writeCurrent(c, conv, out, pending[:whole])
			pending = append(pending[:0], pending[whole:]...)
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) && !errors.Is(err, os.ErrDeadlineExceeded) {
				r.log.Error("reading the opus decoder's output", "peer", c.Peer(), "err", err)
			}
			return
		}
	}
}

// receiveOpus reads one Opus packet per message until the peer goes away
// or sends something that is not Opus.
func (r *Relay) receiveOpus(c *wsserver.Conn, d *opusDecoder) error {
	ws := c.WS()
	buf := make([]byte, r.cfg.MaxMessage+1)
	for {
		kind, rd, err := ws.NextReader()
		if err != nil {
			return r.readError(c, err)
		}
		if kind != websocket.BinaryMessage {
			r.m.rejected.WithLabelValues(reasonText).Inc()
			c.Close(websocket.CloseUnsupportedData, "microphone audio must be sent as binary messages")
			drainUntilClosed(c)
			return errors.New("text message")
		}
		n, err := readMessage(rd, buf)
		if err != nil {
			return r.readError(c, err)
		}
		c.Alive()
		r.m.bytesIn.Add(float64(n))
		if n == 0 {
			continue
		}
		if !r.isCurrent(c) {
			continue // replaced: its audio is dropped
		}
		if !d.write(buf[:n]) {
			r.m.rejected.WithLabelValues(reasonOpus).Inc()
			c.Close(websocket.CloseUnsupportedData, "format=opus: each message must be one Opus packet")
			drainUntilClosed(c)
			return errors.New("not an Opus packet")
		}
	}
}
