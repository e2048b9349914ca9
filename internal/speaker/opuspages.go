package speaker

import (
	"fmt"
	"math/rand/v2"
	"os"

	"github.com/pion/rtp"
	"golang.org/x/sys/unix"

	"github.com/pulse-sidecar/pulse-sidecar/internal/ogg"
)

// The Opus encoder hands its packets over as RTP, one per datagram, and the
// relay makes the Ogg pages itself. ffmpeg's Ogg muxer closes a page only
// when the next packet arrives, so every page left it one frame (10 ms)
// late; its RTP muxer writes each packet as soon as it is encoded
// (TestOpusPacketsLeaveAtOnce). A SOCK_SEQPACKET socket pair keeps the
// datagrams' boundaries without a port anyone in the pod could write to.

const (
	// opusPayloadType is the RTP payload type the encoder is told to use,
	// so its packets are told apart from the RTCP reports it interleaves.
	opusPayloadType = 97
	// opusPacketSize bounds an RTP packet: a 20 ms frame at libopus's top
	// rate (1275 bytes) plus the 12-byte header fits.
	opusPacketSize = 1500
	// opusPreSkip is libopus's look-ahead with -application lowdelay,
	// 2.5 ms at 48 kHz, whatever the frame: what ffmpeg's own Ogg muxer
	// writes into OpusHead for these settings (TestOpusPreSkipIsFFmpegs).
	opusPreSkip = 120
	opusVendor  = "pulse-sidecar"
)

// opusSocket is the encoder's output: in is the relay's end (non-blocking,
// so closing it ends a read), out is the child's stdout.
func opusSocket() (in, out *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("opus encoder socket: %w", err)
	}
	// As small as the MP2 FIFO: a reader that falls behind should not let
	// seconds of packets pile up in the kernel.
	_ = unix.SetsockoptInt(fds[1], unix.SOL_SOCKET, unix.SO_SNDBUF, pipeSize)
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, nil, fmt.Errorf("opus encoder socket: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "opus encoder socket"), os.NewFile(uintptr(fds[1]), "opus encoder output"), nil
}

// opusPager turns the encoder's RTP packets into one Ogg Opus stream per
// encoder run (RFC 7845): each run has its own SSRC, and a new SSRC starts
// a chained stream with a new serial, its header pages first, granules from
// zero.
type opusPager struct {
	ssrc, serial uint32
	w            *ogg.OpusWriter
	pages        ogg.Splitter
}

// push takes one datagram and returns the pages it completes: none for an
// RTCP report, the two header pages and
// an audio page for the first packet of a run, else one audio page.
func (p *opusPager) push(msg []byte) ([]ogg.Page, error) {
	// RTCP shares the socket; its packet types are 192-223 where RTP has
	// its marker bit and payload type (RFC 5761 section 4).
	if len(msg) >= 2 && msg[1] >= 192 && msg[1] <= 223 {
		return nil, nil
	}
	var pkt rtp.Packet
	if err := pkt.Unmarshal(msg); err != nil {
		return nil, fmt.Errorf("opus encoder: %d-byte datagram: %w", len(msg), err)
	}
	if pkt.PayloadType != opusPayloadType {
		return nil, fmt.Errorf("opus encoder: RTP payload type %d, want %d", pkt.PayloadType, opusPayloadType)
	}
	// The socket keeps order, so a run's packets all come before the next
	// run's; what is left of a run stopped for lack of listeners is dropped
	// by publishPage (the stream is no longer live).
	if p.w == nil || pkt.SSRC != p.ssrc {
		if err := p.start(pkt.SSRC); err != nil {
			return nil, err
		}
	}
	if err := p.w.WritePacket(pkt.Payload); err != nil {
		return nil, fmt.Errorf("opus encoder: %w", err)
	}
	var out []ogg.Page
	for {
		pg, ok := p.pages.Next()
		if !ok {
			return out, nil
		}
		out = append(out, pg)
	}
}

func (p *opusPager) start(ssrc uint32) error {
	serial := rand.Uint32()
	for serial == p.serial {
		serial = rand.Uint32()
	}
	w, err := ogg.NewOpusWriter(&p.pages, serial,
		ogg.OpusHead{Channels: 1, PreSkip: opusPreSkip, InputRate: opusRate}, opusVendor)
	if err != nil {
		return fmt.Errorf("opus encoder: %w", err)
	}
	p.ssrc, p.serial, p.w = ssrc, serial, w
	return nil
}
