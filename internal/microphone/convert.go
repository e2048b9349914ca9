package microphone

import (
	"encoding/binary"
	"math"
)

// Converter turns a client's PCM byte stream into the pipe source's format.
// It is a pure, streaming transformation: message boundaries carry no
// meaning, so a frame split across two messages is completed from the next
// one and an odd byte count never shifts the alignment of what follows.
// A Converter is not safe for concurrent use; each connection owns one.
type Converter struct {
	in, out Format

	partial  [MaxChannels * 4]byte // start of a frame split across messages
	npartial int

	rs     *resampler // nil when the rates are equal
	mixed  []float32  // decoded, channel-mixed input of one message
	resamp []float32  // resampler output of one message
	san    Sanitized  // of the current call
}

// Sanitized counts the samples of one Convert call that were not fit for
// PulseAudio: NaN and infinities (replaced by 0) and samples beyond [-1, 1]
// (clamped), in the input or, after resampling, in the output.
type Sanitized struct {
	NonFinite int
	Clamped   int
}

// NewConverter validates both formats and prepares the filter tables.
func NewConverter(in, out Format) (*Converter, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	if err := out.Validate(); err != nil {
		return nil, err
	}
	c := &Converter{in: in, out: out}
	if in.Rate != out.Rate {
		c.rs = newResampler(in.Rate, out.Rate, out.Channels)
	}
	return c, nil
}

// Convert appends to dst the converted form of every frame completed by msg
// and returns the extended slice plus what was sanitised: nothing non-finite
// or outside [-1, 1] ever comes out, whatever the formats. Passing dst[:0] of
// a reused buffer makes steady-state conversion allocation-free.
func (c *Converter) Convert(dst, msg []byte) ([]byte, Sanitized) {
	fs := c.in.FrameSize()
	c.mixed = c.mixed[:0]
	c.san = Sanitized{}
	if c.npartial > 0 {
		n := copy(c.partial[c.npartial:fs], msg)
		c.npartial += n
		msg = msg[n:]
		if c.npartial < fs {
			return dst, c.san
		}
		c.mixed = c.decode(c.mixed, c.partial[:fs])
		c.npartial = 0
	}
	whole := len(msg) / fs * fs
	c.mixed = c.decode(c.mixed, msg[:whole])
	c.npartial = copy(c.partial[:], msg[whole:])

	frames := c.mixed
	if c.rs != nil {
		need := c.rs.outputFor(len(c.mixed)/c.out.Channels) * c.out.Channels
		if cap(c.resamp) < need {
			c.resamp = make([]float32, 0, need)
		}
		c.resamp = c.rs.process(c.mixed, c.resamp[:0])
		// A filter rings past full scale on a full-scale input.
		c.san.Clamped += clamp(c.resamp)
		frames = c.resamp
	}
	return encode(dst, frames, c.out.Encoding), c.san
}

// clamp limits samples to [-1, 1] in place and counts those it changed.
func clamp(s []float32) int {
	n := 0
	for i, v := range s {
		if v > 1 {
			s[i], n = 1, n+1
		} else if v < -1 {
			s[i], n = -1, n+1
		}
	}
	return n
}

// decode appends the frames of b (whole frames only) to dst, mixed to the
// output channel count: a downmix averages the inputs folded onto each output
// channel (all of them for mono), an upmix repeats the inputs cyclically
// (mono goes to every channel).
func (c *Converter) decode(dst []float32, b []byte) []float32 {
	inCh, outCh := c.in.Channels, c.out.Channels
	bps := c.in.Encoding.BytesPerSample()
	var frame [MaxChannels]float32
	for len(b) > 0 {
		for ch := 0; ch < inCh; ch++ {
			frame[ch] = c.sample(b[ch*bps:])
		}
		b = b[inCh*bps:]
		switch {
		case inCh == outCh:
			dst = append(dst, frame[:inCh]...)
		case outCh < inCh:
			for o := 0; o < outCh; o++ {
				var sum float32
				n := 0
				for i := o; i < inCh; i += outCh {
					sum += frame[i]
					n++
				}
				dst = append(dst, sum/float32(n))
			}
		default:
			for o := 0; o < outCh; o++ {
				dst = append(dst, frame[o%inCh])
			}
		}
	}
	return dst
}

func (c *Converter) sample(b []byte) float32 {
	if c.in.Encoding == S16LE {
		return float32(int16(binary.LittleEndian.Uint16(b))) / 32768
	}
	v := math.Float32frombits(binary.LittleEndian.Uint32(b))
	// One NaN would smear through every filter tap and then into PulseAudio;
	// a sample past full scale is as loud as a float gets to the next
	// program, which may not clip it.
	switch {
	case v != v || v > math.MaxFloat32 || v < -math.MaxFloat32:
		c.san.NonFinite++
		return 0
	case v > 1:
		c.san.Clamped++
		return 1
	case v < -1:
		c.san.Clamped++
		return -1
	}
	return v
}

// encode appends samples in the given encoding. s16 scales by 32768 and clips,
// so s16 -> float -> s16 is the identity and full-scale floats do not wrap.
func encode(dst []byte, samples []float32, e Encoding) []byte {
	if e == S16LE {
		for _, v := range samples {
			x := math.Round(float64(v) * 32768)
			x = math.Max(-32768, math.Min(32767, x))
			dst = binary.LittleEndian.AppendUint16(dst, uint16(int16(x)))
		}
		return dst
	}
	for _, v := range samples {
		dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(v))
	}
	return dst
}
