package microphone

import (
	"fmt"
	"net/url"
	"strconv"
)

// Encoding is a PCM sample encoding, always little-endian and interleaved.
type Encoding int

const (
	// F32LE is IEEE float32 in [-1, 1], what a browser AudioWorklet produces
	// and what the original pipe source was configured with.
	F32LE Encoding = iota + 1
	// S16LE is signed 16-bit integer PCM.
	S16LE
)

// BytesPerSample is the size of one sample of one channel.
func (e Encoding) BytesPerSample() int {
	if e == S16LE {
		return 2
	}
	return 4
}

func (e Encoding) String() string {
	switch e {
	case F32LE:
		return "f32le"
	case S16LE:
		return "s16le"
	}
	return fmt.Sprintf("Encoding(%d)", int(e))
}

// Format describes a PCM stream.
type Format struct {
	Encoding Encoding
	Rate     int // frames per second
	Channels int
}

// FrameSize is the number of bytes of one frame (one sample of every channel).
func (f Format) FrameSize() int { return f.Encoding.BytesPerSample() * f.Channels }

func (f Format) String() string {
	return fmt.Sprintf("%s %d Hz %d ch", f.Encoding, f.Rate, f.Channels)
}

// Rates lists the sample rates accepted from clients and configuration:
// those browsers' AudioContexts and Opus use. Anything else is refused
// before the upgrade, so a request cannot make the relay build filter
// tables for an odd rate pair.
var Rates = []int{8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000, 176400, 192000}

// MaxChannels bounds the channels of a stream: a microphone is mono or
// stereo.
const MaxChannels = 2

func knownRate(r int) bool {
	for _, k := range Rates {
		if k == r {
			return true
		}
	}
	return false
}

// Validate reports the first field outside what is supported; it is the one
// check of formats, for clients and configuration alike.
func (f Format) Validate() error {
	if f.Encoding != F32LE && f.Encoding != S16LE {
		return fmt.Errorf("encoding %v is not supported", f.Encoding)
	}
	if !knownRate(f.Rate) {
		return fmt.Errorf("rate %d: want one of %v", f.Rate, Rates)
	}
	if f.Channels < 1 || f.Channels > MaxChannels {
		return fmt.Errorf("channels %d: want 1..%d", f.Channels, MaxChannels)
	}
	return nil
}

// PipeFormat checks the pipe source's configuration (PulseAudio's spelling of
// the encoding) and returns it as a Format.
func PipeFormat(encoding string, rate, channels int) (Format, error) {
	enc, err := ParsePipeEncoding(encoding)
	if err != nil {
		return Format{}, err
	}
	f := Format{Encoding: enc, Rate: rate, Channels: channels}
	return f, f.Validate()
}

// ParsePipeEncoding reads an encoding in PulseAudio's spelling
// (module-pipe-source's format= argument).
func ParsePipeEncoding(s string) (Encoding, error) {
	switch s {
	case "float32le":
		return F32LE, nil
	case "s16le":
		return S16LE, nil
	}
	return 0, fmt.Errorf("pipe format %q: want float32le or s16le", s)
}

// parseClientEncoding reads an encoding in the spelling clients use in the
// query; PulseAudio's names are accepted too so a client copying the server's
// configuration is not turned away.
func parseClientEncoding(s string) (Encoding, error) {
	switch s {
	case "f32le", "float32le":
		return F32LE, nil
	case "s16le":
		return S16LE, nil
	}
	return 0, fmt.Errorf("format %.12q: want f32le or s16le", s)
}

// NegotiateFormat reads the client's stream format from the upgrade request's
// query (format, rate, channels). A missing parameter takes the pipe's value,
// because the original relay wrote bytes unchanged and clients written for it
// send nothing. Other parameters (jwt_token, checked by the websocket layer) are ignored.
func NegotiateFormat(q url.Values, pipe Format) (Format, error) {
	f := pipe
	if v, ok := q["format"]; ok {
		e, err := parseClientEncoding(last(v))
		if err != nil {
			return Format{}, err
		}
		f.Encoding = e
	}
	if v, ok := q["rate"]; ok {
		n, err := strconv.Atoi(last(v))
		if err != nil || !knownRate(n) {
			return Format{}, fmt.Errorf("rate %.12q: want one of %v", last(v), Rates)
		}
		f.Rate = n
	}
	if v, ok := q["channels"]; ok {
		n, err := strconv.Atoi(last(v))
		if err != nil || n < 1 || n > MaxChannels {
			return Format{}, fmt.Errorf("channels %.12q: want 1..%d", last(v), MaxChannels)
		}
		f.Channels = n
	}
	return f, f.Validate()
}

func last(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}
