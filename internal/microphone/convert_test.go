package microphone

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"net/url"
	"testing"

	"github.com/pulse-sidecar/pulse-sidecar/internal/audiotest"
)

func f32Bytes(s []float32) []byte { return encode(nil, s, F32LE) }

func f32Samples(t testing.TB, b []byte) []float32 {
	t.Helper()
	if len(b)%4 != 0 {
		t.Fatalf("%d bytes is not a whole number of float32 samples", len(b))
	}
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

func mustConverter(t testing.TB, in, out Format) *Converter {
	t.Helper()
	c, err := NewConverter(in, out)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// convertInChunks feeds b to c in pieces of the given size, like websocket
// messages, and returns everything produced.
func convertInChunks(c *Converter, b []byte, chunk int) []byte {
	var out []byte
	for len(b) > 0 {
		n := min(chunk, len(b))
		out, _ = c.Convert(out, b[:n])
		b = b[n:]
	}
	return out
}

func TestConvertResamplesTone(t *testing.T) {
	const seconds = 2
	for _, tc := range []struct {
		in, out int
		freq    float64
	}{
		{48000, 44100, 440},
		{44100, 48000, 440},
		{8000, 44100, 440},
		{96000, 44100, 1000},
		{192000, 44100, 440},
		{11025, 32000, 440}, // 1280 phases, more than the table holds: interpolated rows
		{48000, 44100, 15000},
	} {
		in := Format{F32LE, tc.in, 1}
		out := Format{F32LE, tc.out, 1}
		c := mustConverter(t, in, out)
		src := audiotest.Sine(tc.freq, float64(tc.in), 0.5, seconds*tc.in, 1)
		got := f32Samples(t, convertInChunks(c, f32Bytes(src), 512))

		// The filter delays by half its length; everything else must come out.
		want := float64(len(src)) * float64(tc.out) / float64(tc.in)
		slack := float64(c.rs.taps)*float64(tc.out)/float64(tc.in) + 2
		if d := want - float64(len(got)); d < 0 || d > slack {
			t.Errorf("%d->%d: %d frames out for %d in, want %.0f (-%.0f)", tc.in, tc.out, len(got), len(src), want, slack)
		}
		steady := got[tc.out/10:]
		f := audiotest.DominantFrequency(steady, float64(tc.out))
		if math.Abs(f-tc.freq)/tc.freq > 0.005 {
			t.Errorf("%d->%d: %g Hz tone came out at %g Hz", tc.in, tc.out, tc.freq, f)
		}
		a := audiotest.ToneAmplitude(steady[:tc.out], tc.freq, float64(tc.out))
		if math.Abs(20*math.Log10(a/0.5)) > 0.2 {
			t.Errorf("%d->%d: amplitude %g, want 0.5 within 0.2 dB", tc.in, tc.out, a)
		}
		// What is not the tone is filter error: it must be far below it.
		resid := make([]float32, tc.out)
		ph := phaseOf(steady[:tc.out], tc.freq, float64(tc.out))
		for i := range resid {
			resid[i] = steady[i] - float32(a*math.Sin(2*math.Pi*tc.freq*float64(i)/float64(tc.out)+ph))
		}
		if r := audiotest.RMS(resid) / (0.5 / math.Sqrt2); r > 1e-3 {
			t.Errorf("%d->%d: residual %.1f dB relative to the tone, want below -60 dB", tc.in, tc.out, 20*math.Log10(r))
		}
	}
}

// phaseOf returns the phase of the sine component at freq.
func phaseOf(s []float32, freq, rate float64) float64 {
	var re, im float64
	for i, v := range s {
		ph := 2 * math.Pi * freq * float64(i) / rate
		re += float64(v) * math.Sin(ph)
		im += float64(v) * math.Cos(ph)
	}
	return math.Atan2(im, re)
}

func TestConvertAttenuatesAliases(t *testing.T) {
	// 30 kHz cannot exist at 44.1 kHz; without a low-pass it folds to 14.1 kHz.
	c := mustConverter(t, Format{F32LE, 96000, 1}, Format{F32LE, 44100, 1})
	src := audiotest.Sine(30000, 96000, 0.5, 96000, 1)
	got := f32Samples(t, convertInChunks(c, f32Bytes(src), 4096))
	steady := got[4410:]
	rel := audiotest.RMS(steady) / (0.5 / math.Sqrt2)
	if db := 20 * math.Log10(rel); db > -70 {
		t.Errorf("30 kHz at 96 kHz leaks into 44.1 kHz output at %.1f dB, want below -70 dB", db)
	}
}

func TestConvertCarriesSplitFrames(t *testing.T) {
	for _, f := range []struct{ in, out Format }{
		{Format{F32LE, 48000, 1}, Format{F32LE, 44100, 1}},
		{Format{S16LE, 48000, 2}, Format{F32LE, 44100, 1}},
		{Format{F32LE, 44100, 1}, Format{S16LE, 44100, 1}},
	} {
		src := f32Bytes(audiotest.Sine(440, float64(f.in.Rate), 0.5, f.in.Rate/4, f.in.Channels))
		if f.in.Encoding == S16LE {
			src = encode(nil, f32Samples(t, src), S16LE)
		}
		whole := convertInChunks(mustConverter(t, f.in, f.out), src, len(src))

		rng := rand.New(rand.NewPCG(1, 2))
		c := mustConverter(t, f.in, f.out)
		var pieces []byte
		for b := src; len(b) > 0; {
			n := min(1+rng.IntN(777), len(b)) // mostly odd, never frame-aligned on purpose
			pieces, _ = c.Convert(pieces, b[:n])
			b = b[n:]
		}
		if !bytes.Equal(whole, pieces) {
			t.Errorf("%v -> %v: output of odd-sized pieces differs from whole-stream output (%d vs %d bytes)", f.in, f.out, len(pieces), len(whole))
		}
	}
}

func TestConvertS16RoundTrip(t *testing.T) {
	var s16 []byte
	for v := -32768; v <= 32767; v += 7 {
		s16 = binary.LittleEndian.AppendUint16(s16, uint16(int16(v)))
	}
	toF, _ := mustConverter(t, Format{S16LE, 44100, 1}, Format{F32LE, 44100, 1}).Convert(nil, s16)
	back, _ := mustConverter(t, Format{F32LE, 44100, 1}, Format{S16LE, 44100, 1}).Convert(nil, toF)
	if !bytes.Equal(back, s16) {
		t.Fatal("s16 -> f32 -> s16 is not the identity")
	}
	for i, v := range f32Samples(t, toF) {
		if v < -1 || v >= 1 {
			t.Fatalf("sample %d: %g outside [-1, 1)", i, v)
		}
	}
}

func TestConvertClipsAndSanitises(t *testing.T) {
	in := []float32{1.5, -1.5, float32(math.NaN()), float32(math.Inf(1)), 0.5}
	c := mustConverter(t, Format{F32LE, 44100, 1}, Format{S16LE, 44100, 1})
	out, san := c.Convert(nil, f32Bytes(in))
	want := []int16{32767, -32768, 0, 0, 16384}
	for i, w := range want {
		if got := int16(binary.LittleEndian.Uint16(out[2*i:])); got != w {
			t.Errorf("sample %d (%g): got %d, want %d", i, in[i], got, w)
		}
	}
	if san != (Sanitized{NonFinite: 2, Clamped: 2}) {
		t.Errorf("sanitised %+v, want 2 non-finite and 2 clamped", san)
	}
}

// Passthrough (the pipe's own format, what a client declaring nothing
// gets) sanitises too: nothing non-finite or beyond full scale reaches
// PulseAudio.
func TestConvertPassthroughSanitises(t *testing.T) {
	in := []float32{1e30, -1e30, float32(math.NaN()), float32(math.Inf(-1)), 1.0000001, -0.25}
	c := mustConverter(t, Format{F32LE, 44100, 1}, Format{F32LE, 44100, 1})
	out, san := c.Convert(nil, f32Bytes(in))
	want := []float32{1, -1, 0, 0, 1, -0.25}
	for i, w := range want {
		if got := math.Float32frombits(binary.LittleEndian.Uint32(out[4*i:])); got != w {
			t.Errorf("sample %d (%g): got %g, want %g", i, in[i], got, w)
		}
	}
	if san != (Sanitized{NonFinite: 2, Clamped: 3}) {
		t.Errorf("sanitised %+v, want 2 non-finite and 3 clamped", san)
	}
}

// Resampling a full-scale square wave rings past full scale; the output is
// clamped all the same.
func TestConvertResampledOutputWithinFullScale(t *testing.T) {
	in := make([]float32, 4800)
	for i := range in {
		in[i] = 1
		if i/24%2 == 1 {
			in[i] = -1
		}
	}
	c := mustConverter(t, Format{F32LE, 48000, 1}, Format{F32LE, 44100, 1})
	out, _ := c.Convert(nil, f32Bytes(in))
	for i := 0; i+4 <= len(out); i += 4 {
		if v := math.Float32frombits(binary.LittleEndian.Uint32(out[i:])); v > 1 || v < -1 {
			t.Fatalf("output sample %d is %g", i/4, v)
		}
	}
}

func TestConvertChannelMix(t *testing.T) {
	for _, tc := range []struct {
		name    string
		inCh    int
		outCh   int
		in, out []float32
	}{
		{"stereo to mono averages", 2, 1, []float32{0.5, 0.1, -1, 1}, []float32{0.3, 0}},
		{"mono to stereo copies", 1, 2, []float32{0.25, -0.5}, []float32{0.25, 0.25, -0.5, -0.5}},
	} {
		c := mustConverter(t, Format{F32LE, 48000, tc.inCh}, Format{F32LE, 48000, tc.outCh})
		out, _ := c.Convert(nil, f32Bytes(tc.in))
		got := f32Samples(t, out)
		if len(got) != len(tc.out) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.out)
			continue
		}
		for i := range got {
			if math.Abs(float64(got[i]-tc.out[i])) > 1e-6 {
				t.Errorf("%s: got %v, want %v", tc.name, got, tc.out)
				break
			}
		}
	}

	// A stereo tone downmixed and resampled keeps its pitch.
	c := mustConverter(t, Format{F32LE, 48000, 2}, Format{F32LE, 44100, 1})
	got := f32Samples(t, convertInChunks(c, f32Bytes(audiotest.Sine(440, 48000, 0.5, 48000, 2)), 1024))
	if f := audiotest.DominantFrequency(got[4410:], 44100); math.Abs(f-440)/440 > 0.005 {
		t.Errorf("stereo 440 Hz downmixed came out at %g Hz", f)
	}
}

func TestNegotiateFormat(t *testing.T) {
	pipe := Format{F32LE, 44100, 1}
	for _, tc := range []struct {
		query   string
		want    Format
		wantErr string
	}{
		{"", pipe, ""},
		{"jwt_token=abc", pipe, ""},
		{"format=f32le&rate=48000", Format{F32LE, 48000, 1}, ""},
		{"format=s16le&rate=16000&channels=2", Format{S16LE, 16000, 2}, ""},
		{"format=float32le", pipe, ""},
		{"format=mp3", Format{}, "format"},
		{"rate=7999", Format{}, "rate"},
		{"rate=abc", Format{}, "rate"},
		{"rate=192001", Format{}, "rate"},
		{"channels=0", Format{}, "channels"},
		{"channels=9", Format{}, "channels"},
		{"channels=8", Format{}, "channels"},
		{"rate=44101", Format{}, "rate"},
		{"rate=8001", Format{}, "rate"},
		{"format=s16le&rate=11025&channels=2", Format{S16LE, 11025, 2}, ""},
		{"rate=192000", Format{F32LE, 192000, 1}, ""},
	} {
		q, err := parseQuery(tc.query)
		if err != nil {
			t.Fatal(err)
		}
		got, err := NegotiateFormat(q, pipe)
		if tc.wantErr != "" {
			if err == nil || !bytes.HasPrefix([]byte(err.Error()), []byte(tc.wantErr)) {
				t.Errorf("%q: error %v, want one naming %q", tc.query, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: got %v, %v; want %v", tc.query, got, err, tc.want)
		}
	}
}

func BenchmarkConvert48kTo44k1(b *testing.B) {
	c := mustConverter(b, Format{F32LE, 48000, 1}, Format{F32LE, 44100, 1})
	msg := f32Bytes(audiotest.Sine(440, 48000, 0.5, 128, 1)) // one AudioWorklet quantum
	dst := make([]byte, 0, 1024)
	for range 100 { // reach steady state: buffers grown
		dst, _ = c.Convert(dst[:0], msg)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	b.ResetTimer()
	for b.Loop() {
		dst, _ = c.Convert(dst[:0], msg)
	}
}

func parseQuery(s string) (map[string][]string, error) { return url.ParseQuery(s) }
