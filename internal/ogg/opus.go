package ogg

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// DefaultPreSkip is libopus's encoder delay at 48 kHz (312 samples,
// 6.5 ms), what ffmpeg and browsers' encoders put in their OpusHead. A
// writer that does not know its encoder's delay uses it.
const DefaultPreSkip = 312

// OpusHead is the identification header of an Ogg Opus stream (RFC 7845
// section 5.1), for channel mapping family 0 (mono or stereo), the only one
// used here.
type OpusHead struct {
	Channels   uint8
	PreSkip    uint16 // samples at 48 kHz to discard at the start
	InputRate  uint32 // informative: the encoder's input rate, 0 if unknown
	OutputGain int16  // Q7.8 dB
}

// Marshal encodes the header packet.
func (h OpusHead) Marshal() ([]byte, error) {
	if h.Channels < 1 || h.Channels > 2 {
		return nil, fmt.Errorf("OpusHead: %d channels: mapping family 0 has 1 or 2", h.Channels)
	}
	b := append([]byte(nil), opusHeadMagic...)
	b = append(b, 1, h.Channels)
	b = binary.LittleEndian.AppendUint16(b, h.PreSkip)
	b = binary.LittleEndian.AppendUint32(b, h.InputRate)
	b = binary.LittleEndian.AppendUint16(b, uint16(h.OutputGain))
	return append(b, 0), nil
}

// ParseOpusHead decodes an identification header packet. Any mapping
// family is accepted; its channel mapping table is not decoded.
func ParseOpusHead(b []byte) (OpusHead, error) {
	if len(b) < 19 || string(b[:8]) != string(opusHeadMagic) {
		return OpusHead{}, errors.New("OpusHead: not an identification header")
	}
	if b[8]>>4 != 0 {
		return OpusHead{}, fmt.Errorf("OpusHead: version %d is not supported", b[8])
	}
	h := OpusHead{
		Channels:   b[9],
		PreSkip:    binary.LittleEndian.Uint16(b[10:]),
		InputRate:  binary.LittleEndian.Uint32(b[12:]),
		OutputGain: int16(binary.LittleEndian.Uint16(b[16:])),
	}
	if h.Channels == 0 {
		return OpusHead{}, errors.New("OpusHead: 0 channels")
	}
	return h, nil
}

// OpusTags encodes a comment header packet with the vendor string and
// "TAG=value" comments.
func OpusTags(vendor string, comments ...string) []byte {
	b := append([]byte(nil), opusTagsMagic...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(vendor)))
	b = append(b, vendor...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(comments)))
	for _, c := range comments {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(c)))
		b = append(b, c...)
	}
	return b
}

// frameSamples is the duration of one frame at 48 kHz for each TOC
// configuration number (RFC 6716 section 3.1, table 2).
var frameSamples = [32]int{
	480, 960, 1920, 2880, // SILK NB 10, 20, 40, 60 ms
	480, 960, 1920, 2880, // SILK MB
	480, 960, 1920, 2880, // SILK WB
	480, 960, // hybrid SWB 10, 20 ms
	480, 960, // hybrid FB
	120, 240, 480, 960, // CELT NB 2.5, 5, 10, 20 ms
	120, 240, 480, 960, // CELT WB
	120, 240, 480, 960, // CELT SWB
	120, 240, 480, 960, // CELT FB
}

// PacketSamples returns the duration of an Opus packet in samples at
// 48 kHz, from its TOC byte and, for code 3 packets, its frame count byte.
func PacketSamples(pkt []byte) (int, error) {
	if len(pkt) == 0 {
		return 0, errors.New("opus packet: empty")
	}
	toc := pkt[0]
	frames := 0
	switch toc & 3 {
	case 0:
		frames = 1
	case 1, 2:
		frames = 2
	case 3:
		if len(pkt) < 2 {
			return 0, errors.New("opus packet: code 3 without a frame count")
		}
		frames = int(pkt[1] & 0x3f)
		if frames == 0 {
			return 0, errors.New("opus packet: code 3 with 0 frames")
		}
	}
	n := frames * frameSamples[toc>>3]
	if n > 5760 {
		return 0, fmt.Errorf("opus packet: %d samples, more than 120 ms", n)
	}
	return n, nil
}
