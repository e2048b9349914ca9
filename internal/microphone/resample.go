package microphone

import "math"

// Resampler design. A windowed-sinc low-pass evaluated at the exact rational
// position of every output frame (polyphase form): 48000 -> 44100 is 147/160,
// so the 147 possible fractional positions each get a precomputed row of taps
// and the output never drifts against the input clock.
const (
	// halfTaps is the filter half-length counted in samples of the lower of the
	// two rates. 32 gives a ~3.7 kHz transition band at 44.1 kHz with the
	// window below, which keeps the 0-18 kHz band flat and puts the stopband
	// edge under the output Nyquist frequency, so nothing aliases back.
	halfTaps = 32
	// cutoff is the -6 dB point as a fraction of the lower Nyquist frequency.
	cutoff = 0.9
	// kaiserBeta trades transition width for stopband depth; 8.6 gives about
	// 86 dB of attenuation, below what a 16-bit microphone path can resolve.
	kaiserBeta = 8.6
	// maxPhases bounds the table for awkward rate pairs (e.g. 44101 -> 44100
	// has 44100 phases). Beyond it rows are interpolated linearly between the
	// nearest of maxPhases evenly spaced positions, an error far below the
	// stopband for a filter this smooth.
	maxPhases = 1024
)

// resampler converts interleaved float32 frames between two rates, keeping
// its history across calls so a stream can be fed in arbitrary pieces.
type resampler struct {
	channels int
	up, down int // output frames per `down` input frames is `up` (reduced)
	taps     int // taps per row
	phases   int // rows in table, minus the extra last row
	exact    bool
	table    []float32 // (phases+1) rows of taps

	hist []float32 // input frames not yet fully consumed, interleaved
	pos  int       // frame in hist aligned with the current output position
	frac int       // numerator of the fractional position, in 1/up units
}

func newResampler(inRate, outRate, channels int) *resampler {
	g := gcd(inRate, outRate)
	up, down := outRate/g, inRate/g
	// scale < 1 when decimating: the filter must cut at the output's Nyquist
	// frequency and so spans proportionally more input samples.
	scale := math.Min(1, float64(up)/float64(down))
	half := float64(halfTaps) / scale
	taps := 2 * int(math.Ceil(half))
	fc := 0.5 * cutoff * scale // cycles per input sample

	phases, exact := up, true
	if up > maxPhases {
		phases, exact = maxPhases, false
	}
	table := make([]float32, (phases+1)*taps)
	i0beta := besselI0(kaiserBeta)
	coef := make([]float64, taps)
	for p := 0; p <= phases; p++ {
		row := table[p*taps : (p+1)*taps]
		mu := float64(p) / float64(phases) // fractional position in [0, 1]
		var sum float64
		clear(coef)
		for k := range coef {
			// Distance from the output instant to input frame k of the window.
			t := mu + float64(taps/2-1-k)
			if math.Abs(t) >= half {
				continue
			}
			r := t / half
			w := besselI0(kaiserBeta*math.Sqrt(1-r*r)) / i0beta
			coef[k] = 2 * fc * sinc(2*fc*t) * w
			sum += coef[k]
		}
		// Normalising every row to unit DC gain removes the small gain ripple
		// between phases that would otherwise modulate a steady signal.
		for k, c := range coef {
			row[k] = float32(c / sum)
		}
	}
	pad := taps/2 - 1
	return &resampler{
		channels: channels,
		up:       up,
		down:     down,
		taps:     taps,
		phases:   phases,
		exact:    exact,
		table:    table,
		// Leading silence stands in for the frames before the stream began,
		// so the first output frame lines up with the first input frame.
		hist: make([]float32, pad*channels, (pad+4096)*channels),
		pos:  pad,
	}
}

// process appends the input frames to the history and appends every output
// frame that the history now fully determines to out.
func (rs *resampler) process(in, out []float32) []float32 {
	c := rs.channels
	rs.hist = append(rs.hist, in...)
	frames := len(rs.hist) / c
	half := rs.taps / 2
	var blend [MaxChannels]float32
	for rs.pos+half < frames {
		start := (rs.pos - (half - 1)) * c
		window := rs.hist[start : start+rs.taps*c]
		if rs.exact {
			row := rs.table[rs.frac*rs.taps : (rs.frac+1)*rs.taps]
			out = appendDot(out, window, row, c)
		} else {
			x := rs.frac * rs.phases
			p := x / rs.up
			w := float32(x%rs.up) / float32(rs.up)
			a := rs.table[p*rs.taps : (p+1)*rs.taps]
			b := rs.table[(p+1)*rs.taps : (p+2)*rs.taps]
			n := len(out)
			out = appendDot(out, window, a, c)
			out = appendDot(out, window, b, c)
			copy(blend[:c], out[n+c:n+2*c])
			for ch := 0; ch < c; ch++ {
				out[n+ch] += w * (blend[ch] - out[n+ch])
			}
			out = out[:n+c]
		}
		rs.frac += rs.down
		rs.pos += rs.frac / rs.up
		rs.frac %= rs.up
	}
	// Keep only the frames later outputs still need, reusing the array.
	drop := rs.pos - (half - 1)
	if drop > 0 {
		if drop > frames {
			drop = frames
		}
		n := copy(rs.hist, rs.hist[drop*c:])
		rs.hist = rs.hist[:n]
		rs.pos -= drop
	}
	return out
}

// appendDot appends, for each channel, the dot product of the interleaved
// window with row.
func appendDot(out, window, row []float32, c int) []float32 {
	if c == 1 {
		// Four independent sums let the CPU overlap the multiply-adds; one
		// running sum serialises them on its own latency.
		var a0, a1, a2, a3 float32
		window = window[:len(row)]
		k := 0
		for ; k+4 <= len(row); k += 4 {
			a0 += window[k] * row[k]
			a1 += window[k+1] * row[k+1]
			a2 += window[k+2] * row[k+2]
			a3 += window[k+3] * row[k+3]
		}
		for ; k < len(row); k++ {
			a0 += window[k] * row[k]
		}
		return append(out, (a0+a1)+(a2+a3))
	}
	for ch := 0; ch < c; ch++ {
		var acc float32
		for k, h := range row {
			acc += window[k*c+ch] * h
		}
		out = append(out, acc)
	}
	return out
}

// outputFor bounds how many frames process can return for n more input
// frames, so callers can size buffers once.
func (rs *resampler) outputFor(n int) int {
	return (n+rs.taps)*rs.up/rs.down + 2
}

func sinc(x float64) float64 {
	if x == 0 {
		return 1
	}
	return math.Sin(math.Pi*x) / (math.Pi * x)
}

// besselI0 is the modified Bessel function of the first kind, order 0, by
// its power series; it converges fast for the arguments a Kaiser window uses.
func besselI0(x float64) float64 {
	sum, term := 1.0, 1.0
	q := x * x / 4
	for k := 1; k < 200; k++ {
		term *= q / float64(k*k)
		sum += term
		if term < sum*1e-17 {
			break
		}
	}
	return sum
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
