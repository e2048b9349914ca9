package speaker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/pulse-sidecar/pulse-sidecar/internal/ogg"
)

// The Opus stream (?codec=opus): ffmpeg's libopus encodes the speaker
// monitor at 48 kHz mono in frames of OpusFrame and sends each packet over
// a socket as it is encoded; the relay wraps each in an Ogg page and sends
// each page as one websocket message. It has its own encoder, started and
// stopped by its own listeners, and its own hub; admission, limits and the
// websocket layer are the MP2 stream's.

// OpusFrames are the frame durations offered: those of libopus's CELT
// layer, which -application lowdelay uses.
var OpusFrames = []time.Duration{2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond}

const (
	defaultOpusBitrate = 96000
	defaultOpusFrame   = 10 * time.Millisecond
	opusRate           = 48000
	// opusPageOverhead is an Ogg page's header around one packet: 27 bytes
	// and one lacing value.
	opusPageOverhead = 28
)

// opusArgs is the Opus encoder's command line. The prototype measured in
// CONTRACTS section 7, made configurable:
//
//   - -fflags nobuffer, -probesize 32, -analyzeduration 0: no probing;
//   - -fragment_size: PulseAudio hands over one frame of s16 samples at a
//     time, so a frame is encoded as soon as it is captured;
//   - -application lowdelay: CELT only, no SILK look-ahead;
//   - -f rtp with -flush_packets 1: each packet is written on its own as
//     soon as it is encoded, and the relay pages it (opuspages.go), since
//     ffmpeg's Ogg muxer holds every page back until the next packet; the
//     payload type marks the packets among RTCP reports, and the SDP that
//     ffmpeg would print to stdout goes to /dev/null.
func opusArgs(bitrate int, frame time.Duration) []string {
	samples := int(frame.Seconds() * opusRate)
	return []string{
		"-nostdin", "-hide_banner", "-loglevel", "warning",
		"-fflags", "nobuffer", "-flags", "low_delay",
		"-probesize", "32", "-analyzeduration", "0",
		"-f", "pulse", "-sample_rate", strconv.Itoa(opusRate), "-channels", "1",
		"-fragment_size", strconv.Itoa(samples * 2),
		"-i", monitorSource,
		"-c:a", "libopus", "-b:a", strconv.Itoa(bitrate), "-ac", "1", "-ar", strconv.Itoa(opusRate),
		"-frame_duration", strconv.FormatFloat(float64(frame)/float64(time.Millisecond), 'f', -1, 64),
		"-application", "lowdelay",
		"-f", "rtp", "-payload_type", strconv.Itoa(opusPayloadType),
		"-packetsize", strconv.Itoa(opusPacketSize), "-sdp_file", os.DevNull,
		"-flush_packets", "1",
		"pipe:1",
	}
}

// opusWireRate is the Opus stream's rate on the wire in bits/s: the codec's
// bitrate plus one page header per frame.
func opusWireRate(bitrate int, frame time.Duration) int {
	return bitrate + int(float64(opusPageOverhead*8)/frame.Seconds())
}

// opusQueueBytes is the Opus hub's per-listener bound for maxBehind of
// audio, as queueBytes is MP2's; the send buffer can hold more than the
// budget at Opus rates, so the floor is a tenth of a second of pages.
func opusQueueBytes(maxBehind time.Duration, bitrate int, frame time.Duration) int {
	rate := opusWireRate(bitrate, frame)
	budget := int(maxBehind.Seconds() * float64(rate) / 8)
	return max(budget-2*sendBuffer, rate/8/10)
}

func validOpusFrame(d time.Duration) bool {
	for _, f := range OpusFrames {
		if d == f {
			return true
		}
	}
	return false
}

// opusStream is the Opus encoder's output side.
type opusStream struct {
	hub   *hub
	nudge chan struct{}
	// lastData is when the reader last got bytes (UnixNano), the watchdog's
	// evidence that the Opus encoder is alive.
	lastData atomic.Int64
	// headerSerial is the serial of the stream whose headers the hub
	// holds; live tells whether there is one. Both are guarded by hub.mu.
	headerSerial uint32
	live         bool
}

func (r *Relay) newOpusStream() *opusStream {
	o := &opusStream{nudge: make(chan struct{}, 1)}
	o.hub = &hub{
		queueBytes: opusQueueBytes(r.cfg.MaxBehind, r.cfg.OpusBitrate, r.cfg.OpusFrame),
		slowAfter:  r.cfg.SlowCloseAfter,
		m:          r.m,
		changed: func() {
			select {
			case o.nudge <- struct{}{}:
			default:
			}
		},
	}
	return o
}

// runOpus reads the Opus encoder's socket and, with an FFmpeg configured,
// runs the encoder on demand, until ctx ends; then it stops the encoder and
// the reader and returns.
func (r *Relay) runOpus(ctx context.Context) error {
	in, out, err := opusSocket()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var readErr error
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		if readErr = r.readOpus(in); readErr != nil {
			cancel()
		}
	}()
	// The relay's end closes first and the child's end only once the
	// reader is gone: while the reader runs, a read of nothing can only be
	// an empty datagram, never the end of the stream.
	stop := func() error {
		in.Close()
		<-readDone
		out.Close()
		return readErr
	}
	if r.cfg.FFmpeg == "" {
		<-ctx.Done()
		return stop()
	}
	enc := r.encoderFor(encoderWiring{
		codec: CodecOpus, args: opusArgs(r.cfg.OpusBitrate, r.cfg.OpusFrame), out: out,
		hub: r.opus.hub, nudge: r.opus.nudge, lastData: &r.opus.lastData,
		beforeStart: r.opus.clearHeaders,
		stopping:    r.opus.clearHeaders,
	})
	enc.run(ctx)
	return stop()
}

// readOpus pages the encoder's packets and publishes each page as one
// chunk, until in is closed (nil) or fails (the error). The hub keeps the
// current stream's header pages for joiners; a new OpusHead (an encoder
// restart: a chained stream with a new serial) replaces them and goes to
// everyone listening, so their decoders reset.
func (r *Relay) readOpus(in io.Reader) error {
	o := r.opus
	var (
		pager opusPager
		buf   = make([]byte, 64<<10) // larger than any datagram
		bad   int                    // datagrams refused since the last good one
	)
	for {
		n, err := in.Read(buf)
		if n > 0 {
			now := time.Now()
			o.lastData.Store(now.UnixNano())
			if r.stalledSeen() {
				r.cfg.Log.Info("encoder stream flows again", "codec", CodecOpus)
			}
			pages, perr := pager.push(buf[:n])
			switch {
			case perr == nil:
				bad = 0
			case bad == 0:
				// One line per run of refusals: an encoder that sends only
				// what the relay cannot take would log 100 lines a second.
				r.cfg.Log.Error("dropping what the encoder sent, and what follows until a packet is taken",
					"codec", CodecOpus, "err", perr)
				bad++
			default:
				bad++
			}
			for _, p := range pages {
				r.publishPage(p, now)
			}
		}
		switch {
		case err == nil, errors.Is(err, io.EOF):
			// An empty datagram: os.File reports a read of nothing as EOF.
		case errors.Is(err, os.ErrClosed):
			return nil
		default:
			return fmt.Errorf("reading the opus encoder's socket: %w", err)
		}
	}
}

func (r *Relay) publishPage(p ogg.Page, now time.Time) {
	o := r.opus
	var hook func(*chunk) bool
	switch p.Kind {
	case ogg.KindOpusHead:
		hook = func(c *chunk) bool {
			c.header = true
			o.hub.headers = []*chunk{c}
			o.headerSerial, o.live = p.Serial, true
			return true
		}
	case ogg.KindOpusTags:
		hook = func(c *chunk) bool {
			if !o.live || p.Serial != o.headerSerial {
				return false
			}
			c.header = true
			o.hub.headers = append(o.hub.headers, c)
			return true
		}
	case ogg.KindAudio:
		if o.hub.len() == 0 {
			return
		}
		// The tail of a stream whose encoder is being stopped goes
		// nowhere: a listener joining now waits for the next OpusHead.
		hook = func(*chunk) bool { return o.live && p.Serial == o.headerSerial }
	default:
		return // not part of the Opus stream
	}
	if err := o.hub.publish(p.Raw, now, hook); err != nil {
		r.cfg.Log.Error("broadcast", "codec", CodecOpus, "err", err)
	}
}

// clearHeaders forgets the headers of a stream whose encoder is gone, so a
// listener joining before the next encoder's first page does not get a
// stream that will never continue.
func (o *opusStream) clearHeaders() {
	o.hub.mu.Lock()
	o.hub.headers = nil
	o.live = false
	o.hub.mu.Unlock()
}
