package bench

import (
	"errors"
	"time"
)

// MPEG audio Layer II, the speaker's codec. The latency tool times the frame
// that carries an onset, not the decoder's output, so it has to find frames
// itself: a decoder emits a frame's samples only after it has read the next
// frame's header, which would add a frame (26.1 ms) that no player needs to
// add.

// layer2Samples is the length of every Layer II frame.
const layer2Samples = 1152

var (
	layer2Kbps = [2][15]int{
		{0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384}, // MPEG-1
		{0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160},      // MPEG-2 LSF
	}
	mpaRates = [2][3]int{{44100, 48000, 32000}, {22050, 24000, 16000}}
)

// mpaHeader reports the length in bytes and the sample rate of the Layer II
// frame whose header starts h, or ok false when h does not start one.
func mpaHeader(h []byte) (length, rate int, ok bool) {
	if len(h) < 4 || h[0] != 0xFF || h[1]&0xE0 != 0xE0 {
		return 0, 0, false
	}
	var v int
	switch (h[1] >> 3) & 3 {
	case 3:
		v = 0
	case 2:
		v = 1
	default:
		return 0, 0, false // reserved, or MPEG-2.5 which has no Layer II
	}
	if (h[1]>>1)&3 != 2 {
		return 0, 0, false // not Layer II
	}
	bi, si := int(h[2]>>4), int(h[2]>>2&3)
	if bi == 0 || bi == 15 || si == 3 {
		return 0, 0, false // free format or invalid
	}
	rate = mpaRates[v][si]
	length = 144*layer2Kbps[v][bi]*1000/rate + int(h[2]>>1&1)
	return length, rate, true
}

// Frame is one audio frame as a listener received it: its bytes and when
// the message holding its last byte arrived, which is the earliest moment
// a player could decode it.
type Frame struct {
	Data    []byte
	Arrived time.Time
}

// FrameReader takes an MPEG-TS stream in the pieces it arrived in and
// returns its Layer II frames. It follows the first PID that starts a PES
// with an MPEG audio stream id (0xC0-0xDF), as JSMpeg does with no PAT or
// PMT, and drops everything before that PES starts.
type FrameReader struct {
	pid     int // -1 until found
	partial []byte
	es      []byte
	inPES   bool
	rate    int
	frames  []Frame
	// Resyncs counts bytes skipped in the elementary stream hunting for a
	// header; CCErrors counts continuity counter jumps (lost packets).
	Resyncs, CCErrors int
	lastCC            int
}

// NewFrameReader returns a reader that has seen nothing yet.
func NewFrameReader() *FrameReader { return &FrameReader{pid: -1, lastCC: -1} }

// errTS reports bytes that are not MPEG-TS.
var errTS = errors.New("bench: stream lost TS sync")

// Feed adds the bytes b that arrived at at.
func (r *FrameReader) Feed(b []byte, at time.Time) error {
	r.partial = append(r.partial, b...)
	p := r.partial
	for len(p) >= PacketSize {
		if p[0] != 0x47 {
			return errTS
		}
		r.packet(p[:PacketSize], at)
		p = p[PacketSize:]
	}
	r.partial = append(r.partial[:0], p...)
	return nil
}

func (r *FrameReader) packet(p []byte, at time.Time) {
	pid := int(p[1]&0x1F)<<8 | int(p[2])
	start := p[1]&0x40 != 0
	afc := p[3] >> 4 & 3
	payload := p[4:]
	if afc&2 != 0 {
		if len(payload) == 0 || int(payload[0])+1 > len(payload) {
			return
		}
		payload = payload[1+int(payload[0]):]
	}
	if afc&1 == 0 {
		return
	}
	if r.pid < 0 {
		if !start || len(payload) < 9 || payload[0] != 0 || payload[1] != 0 || payload[2] != 1 || payload[3]&0xE0 != 0xC0 {
			return
		}
		r.pid = pid
	}
	if pid != r.pid {
		return
	}
	cc := int(p[3] & 0x0F)
	if r.lastCC >= 0 && cc != (r.lastCC+1)&0x0F {
		r.CCErrors++
	}
	r.lastCC = cc
	if start {
		if len(payload) < 9 || payload[0] != 0 || payload[1] != 0 || payload[2] != 1 {
			r.inPES = false
			return
		}
		hl := 9 + int(payload[8])
		if hl > len(payload) {
			r.inPES = false
			return
		}
		payload = payload[hl:]
		r.inPES = true
	}
	if !r.inPES {
		return
	}
	r.es = append(r.es, payload...)
	r.split(at)
}

// split cuts whole frames off the elementary stream.
func (r *FrameReader) split(at time.Time) {
	es := r.es
	for len(es) >= 4 {
		n, rate, ok := mpaHeader(es)
		if !ok {
			es = es[1:]
			r.Resyncs++
			continue
		}
		if len(es) < n {
			break
		}
		r.rate = rate
		r.frames = append(r.frames, Frame{Data: append([]byte(nil), es[:n]...), Arrived: at})
		es = es[n:]
	}
	r.es = append(r.es[:0], es...)
}

// Frames returns the whole frames read so far.
func (r *FrameReader) Frames() []Frame { return r.frames }

// Rate is the sample rate of the last frame, 0 before the first.
func (r *FrameReader) Rate() int { return r.rate }
