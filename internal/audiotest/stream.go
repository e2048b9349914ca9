package audiotest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"os/exec"
)

// WAV encodes mono float samples as a 16-bit PCM WAV file, what paplay plays.
func WAV(samples []float32, rate int) []byte {
	var b bytes.Buffer
	data := len(samples) * 2
	b.WriteString("RIFF")
	binary.Write(&b, binary.LittleEndian, uint32(36+data))
	b.WriteString("WAVEfmt ")
	for _, v := range []any{uint32(16), uint16(1), uint16(1), uint32(rate), uint32(rate * 2), uint16(2), uint16(16)} {
		binary.Write(&b, binary.LittleEndian, v)
	}
	b.WriteString("data")
	binary.Write(&b, binary.LittleEndian, uint32(data))
	for _, s := range samples {
		binary.Write(&b, binary.LittleEndian, toS16(s))
	}
	return b.Bytes()
}

func toS16(s float32) int16 {
	v := math.Round(float64(s) * 32767)
	return int16(math.Max(-32768, math.Min(32767, v)))
}

// WriteWAV writes WAV(samples, rate) to path.
func WriteWAV(path string, samples []float32, rate int) error {
	return os.WriteFile(path, WAV(samples, rate), 0o644)
}

// DecodeTS decodes an MPEG-TS byte stream (as a speaker listener receives it)
// to mono float samples at rate Hz with ffmpeg.
func DecodeTS(ffmpeg string, ts []byte, rate int) ([]float32, error) {
	cmd := exec.Command(ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "mpegts", "-i", "pipe:0",
		"-f", "f32le", "-ac", "1", "-ar", fmt.Sprint(rate), "pipe:1")
	cmd.Stdin = bytes.NewReader(ts)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil && out.Len() == 0 {
		return nil, fmt.Errorf("ffmpeg decode of %d TS bytes: %v: %s", len(ts), err, errb.String())
	}
	return F32LE(out.Bytes()), nil
}

// DecodeOgg decodes an Ogg Opus byte stream (the pages a ?codec=opus
// listener received, headers first) to mono float samples at rate Hz with
// ffmpeg. Unlike DecodeTS it fails on any decoding error: every page came
// whole in its own message, so nothing may be damaged.
func DecodeOgg(ffmpeg string, ogg []byte, rate int) ([]float32, error) {
	cmd := exec.Command(ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "ogg", "-i", "pipe:0",
		"-f", "f32le", "-ac", "1", "-ar", fmt.Sprint(rate), "pipe:1")
	cmd.Stdin = bytes.NewReader(ogg)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("ffmpeg decode of %d Ogg bytes: %v: %s", len(ogg), err, errb.String())
	}
	return F32LE(out.Bytes()), nil
}

// F32LE reinterprets little-endian float32 bytes as samples.
func F32LE(b []byte) []float32 {
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

// F32LEBytes is the inverse of F32LE.
func F32LEBytes(s []float32) []byte {
	out := make([]byte, 4*len(s))
	for i, v := range s {
		binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(v))
	}
	return out
}

// Loud finds the first and last sample of the region whose 10 ms RMS is above
// threshold; ok is false when no window is.
func Loud(samples []float32, rate int, threshold float64) (start, end int, ok bool) {
	w := rate / 100
	if w < 1 {
		w = 1
	}
	start, end = -1, -1
	for i := 0; i+w <= len(samples); i += w {
		if RMS(samples[i:i+w]) > threshold {
			if start < 0 {
				start = i
			}
			end = i + w
		}
	}
	return start, end, start >= 0
}
