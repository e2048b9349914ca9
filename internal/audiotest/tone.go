// Package audiotest holds signal helpers for tests of the audio paths: test
// tones in, frequency and level measurements out. Measurements are done by
// the tests themselves, never by ear.
package audiotest

import (
	"math"
	"math/cmplx"
)

// Sine returns frames of a sine tone at freq Hz sampled at rate Hz with the
// given peak amplitude, the same value on every one of channels (interleaved).
func Sine(freq, rate, amplitude float64, frames, channels int) []float32 {
	out := make([]float32, frames*channels)
	for i := 0; i < frames; i++ {
		v := float32(amplitude * math.Sin(2*math.Pi*freq*float64(i)/rate))
		for c := 0; c < channels; c++ {
			out[i*channels+c] = v
		}
	}
	return out
}

// DominantFrequency estimates the frequency of the strongest spectral peak of
// mono samples taken at rate Hz. It uses the largest power-of-two prefix,
// a Hann window and a parabola through the log magnitudes of the peak bin and
// its neighbours, which resolves a pure tone to a small fraction of a bin.
// It returns 0 when there are fewer than 64 samples.
func DominantFrequency(samples []float32, rate float64) float64 {
	n := 1
	for n*2 <= len(samples) {
		n *= 2
	}
	if n < 64 {
		return 0
	}
	x := make([]complex128, n)
	for i := range x {
		w := 0.5 - 0.5*math.Cos(2*math.Pi*float64(i)/float64(n))
		x[i] = complex(float64(samples[i])*w, 0)
	}
	fft(x)
	best := 1
	for k := 1; k < n/2; k++ {
		if cmplx.Abs(x[k]) > cmplx.Abs(x[best]) {
			best = k
		}
	}
	delta := 0.0
	if best > 1 && best < n/2-1 {
		a := math.Log(cmplx.Abs(x[best-1]) + 1e-30)
		b := math.Log(cmplx.Abs(x[best]) + 1e-30)
		c := math.Log(cmplx.Abs(x[best+1]) + 1e-30)
		if d := a - 2*b + c; d != 0 {
			delta = 0.5 * (a - c) / d
		}
	}
	return (float64(best) + delta) * rate / float64(n)
}

// ToneAmplitude measures the peak amplitude of the component at freq Hz in
// mono samples taken at rate Hz (a Goertzel filter over the whole slice).
// It is exact for a tone with a whole number of cycles in the slice and
// close otherwise, which is enough to compare levels in decibels.
func ToneAmplitude(samples []float32, freq, rate float64) float64 {
	if len(samples) == 0 {
		return 0
	}
	var re, im float64
	for i, s := range samples {
		ph := 2 * math.Pi * freq * float64(i) / rate
		re += float64(s) * math.Cos(ph)
		im -= float64(s) * math.Sin(ph)
	}
	return 2 * math.Hypot(re, im) / float64(len(samples))
}

// RMS is the root mean square of samples.
func RMS(samples []float32) float64 {
	if len(samples) == 0 {
		return 0
	}
	var sum float64
	for _, s := range samples {
		sum += float64(s) * float64(s)
	}
	return math.Sqrt(sum / float64(len(samples)))
}

// fft is an in-place iterative radix-2 transform; len(x) must be a power of two.
func fft(x []complex128) {
	n := len(x)
	for i, j := 1, 0; i < n; i++ {
		bit := n >> 1
		for ; j&bit != 0; bit >>= 1 {
			j ^= bit
		}
		j ^= bit
		if i < j {
			x[i], x[j] = x[j], x[i]
		}
	}
	for size := 2; size <= n; size <<= 1 {
		step := cmplx.Exp(complex(0, -2*math.Pi/float64(size)))
		for start := 0; start < n; start += size {
			w := complex(1, 0)
			for k := 0; k < size/2; k++ {
				u := x[start+k]
				v := x[start+k+size/2] * w
				x[start+k] = u + v
				x[start+k+size/2] = u - v
				w *= step
			}
		}
	}
}
