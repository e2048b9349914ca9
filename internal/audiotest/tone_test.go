package audiotest

import (
	"math"
	"testing"
)

func TestDominantFrequency(t *testing.T) {
	for _, f := range []float64{97, 440, 1234.5, 15000} {
		got := DominantFrequency(Sine(f, 44100, 0.5, 44100, 1), 44100)
		if math.Abs(got-f)/f > 0.001 {
			t.Errorf("DominantFrequency of %g Hz tone = %g", f, got)
		}
	}
	if got := DominantFrequency(make([]float32, 10), 44100); got != 0 {
		t.Errorf("DominantFrequency of 10 samples = %g, want 0", got)
	}
}

func TestToneAmplitudeAndRMS(t *testing.T) {
	s := Sine(1000, 48000, 0.25, 48000, 1)
	if a := ToneAmplitude(s, 1000, 48000); math.Abs(a-0.25) > 1e-3 {
		t.Errorf("ToneAmplitude = %g, want 0.25", a)
	}
	if a := ToneAmplitude(s, 3000, 48000); a > 1e-3 {
		t.Errorf("ToneAmplitude at another frequency = %g, want ~0", a)
	}
	if r := RMS(s); math.Abs(r-0.25/math.Sqrt2) > 1e-3 {
		t.Errorf("RMS = %g, want %g", r, 0.25/math.Sqrt2)
	}
}
