package bench

import (
	"encoding/binary"
	"math"
)

// OnsetDetector finds the starts of tone bursts in a stream of decoded mono
// float32 samples fed to it in arbitrary pieces. A burst starts when one
// window's RMS rises above Threshold after at least Quiet windows below it,
// so a burst is reported once however long it lasts.
type OnsetDetector struct {
	Window    int     // samples per window
	Threshold float64 // RMS
	Quiet     int     // windows below threshold that re-arm the detector

	sum     float64
	n       int
	quietN  int
	started bool // past the first Quiet quiet windows at least once
	total   int64
}

// Feed consumes samples and returns the sample indices (counted from the
// first sample ever fed) of the windows in which bursts start.
func (d *OnsetDetector) Feed(samples []float32) []int64 {
	var onsets []int64
	for _, s := range samples {
		d.sum += float64(s) * float64(s)
		d.n++
		d.total++
		if d.n < d.Window {
			continue
		}
		loud := math.Sqrt(d.sum/float64(d.n)) > d.Threshold
		d.sum, d.n = 0, 0
		if !loud {
			d.quietN++
			if d.quietN >= d.Quiet {
				d.started = true
			}
			continue
		}
		if d.started && d.quietN >= d.Quiet {
			onsets = append(onsets, d.total-int64(d.Window))
		}
		d.quietN = 0
	}
	return onsets
}

// appendF32LE decodes little-endian float32 samples from b onto dst and
// returns the bytes of an incomplete trailing sample.
func appendF32LE(dst []float32, b []byte) ([]float32, []byte) {
	for len(b) >= 4 {
		dst = append(dst, math.Float32frombits(binary.LittleEndian.Uint32(b)))
		b = b[4:]
	}
	return dst, b
}
