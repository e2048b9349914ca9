package microphone

import (
	"math"
	"slices"
	"time"
)

// AdmittedRates are the sample rates a rate detector chooses from: every
// rate an AudioContext runs at in practice. Neighbours are at least 8.8 %
// apart (44100/48000), so an estimate a few percent off still picks right.
var AdmittedRates = []int{8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000, 176400, 192000}

// DefaultDetectHold is how long a RateDetector watches an undeclared
// stream before deciding. 400 ms is 150 messages of the real client's 128
// samples, or four or five of the 4096-sample messages a coalescing proxy
// makes: enough arrivals that a 200 ms stall, bursts of ten messages or
// ±5 ms of jitter do not pull the decision across the 8.8 % between 44100
// and 48000 Hz (the simulations in detect_test.go). The audio held
// meanwhile is delayed once, at the start of a stream; a voice's first
// syllable is rarely in its first 400 ms. When the arrivals of the hold do
// not tell the best two rates apart clearly, the detector waits up to
// twice as long; when the best fit is not supported by arrivals through
// the end of what was observed (a sender that fell behind and has not
// caught up yet), up to maxHoldFactor times as long.
const DefaultDetectHold = 400 * time.Millisecond

// maxDetectPoints bounds the arrivals a detector keeps; a sender of tiny
// messages reaches it before the hold ends and gets decided early, on
// plenty of evidence.
const maxDetectPoints = 4096

// maxHoldFactor is how many holds a detector waits at most for a fit that
// is supported at both ends (see supported): 2 s with the default hold. In
// headless Chromium on a machine loaded twentyfold the page's audio thread
// caught up 0.6-1.8 s after its first message; a sender that has not
// caught up by 2 s is decided on what it sent, and a voice is not held
// longer than that. It is also as long as a corrected decision used to
// take (the relay's second, longer watch). Senders on time at the end of
// the hold do not wait for it.
const maxHoldFactor = 5

// supportSlack and supportSlackFraction make how late after a line an
// arrival may come and still support it: 20 ms, a few times a browser's
// scheduling jitter on an idle machine and more than the least delay of most
// bursts, plus 2.5 % of the time observed, so that an arrival a little late
// at the start still counts after a long wait. The falls behind it tells
// apart from jitter are 100 ms and more.
const (
	supportSlack         = 20 * time.Millisecond
	supportSlackFraction = 0.025
)

// clearMargin is how much more mean delay, as a fraction of the time
// observed, the runner-up rate must leave than the best one for a decision
// at the end of the hold. Clean arrivals from a sender at rate R leave
// 4.4 % of the time observed for a neighbour 8.8 % away and none for R;
// jitter, bursts and stalls shrink that difference. A sixteenth of it
// separates every simulated case in detect_test.go that decided right from
// those that did not.
const clearMargin = 0.044 / 8

// RateDetector finds the sample rate of a stream that does not declare it,
// from how many samples arrive per second of wall clock.
//
// A sample cannot arrive before it was captured, so every arrival lies at
// or after the line "capture start + samples so far / rate", late by its
// network and scheduling delay. Bursts, stalls and coalescing only make
// arrivals later, never earlier. The detector therefore takes, for each
// admitted rate, the latest capture line that no arrival precedes, and the
// mean delay of the arrivals behind it; the true rate leaves the smallest
// mean delay, while a rate 8.8 % off leaves delays that grow by 8.8 % of
// the elapsed time. This is the linear-programming estimate of clock skew
// from one-way delays (Moon, Skelly and Towsley, 1999) restricted to the
// admitted rates: the line rests on the arrivals with the least delay,
// whichever they are, so a late first message, a burst, a stall and the
// catch-up after it weigh nothing beyond their own share of the mean.
//
// What the mean cannot survive is a sender still behind at the end of the
// hold: then every recent arrival is late for the true rate, and a slower
// rate, whose line slopes down through the early arrivals towards the late
// ones, leaves less mean delay. So the detector decides only on a line
// with arrivals near it at the start and all through the end of what it
// observed (supported), and otherwise waits for the sender to catch up, up
// to maxHoldFactor holds.
//
// Arrivals at the same instant (a burst) count once, with all their
// samples: only the burst's last sample says when the sender had produced
// that much.
//
// The relay holds the stream's audio until a decision, converts all of it
// at the decided rate, and flushes. It calls Observe for each message and,
// because a sender may go quiet, also Check from a timer at Deadline.
//
// A RateDetector is not safe for concurrent use.
type RateDetector struct {
	admitted []int
	hold     time.Duration
	wait     time.Duration // the longest, from the first arrival
	first    time.Time
	started  bool
	total    int64
	points   []point // distinct arrival times, in order
	rate     int
}

type point struct {
	at      float64 // seconds since the first arrival
	samples float64 // samples received up to and including this arrival
}

// NewRateDetector returns a detector that decides among admitted (nil:
// AdmittedRates) once hold (<= 0: DefaultDetectHold) has passed since the
// first arrival, up to twice that when the arrivals are ambiguous, and up
// to maxHoldFactor times that while the best fit is not supported.
func NewRateDetector(admitted []int, hold time.Duration) *RateDetector {
	return newRateDetector(admitted, hold, maxHoldFactor)
}

// newRateDetector is NewRateDetector with its longest wait in holds: the
// relay's second, long watch is already as long as the first one's longest
// wait and must not wait five times its own hold.
func newRateDetector(admitted []int, hold time.Duration, waitHolds int) *RateDetector {
	if len(admitted) == 0 {
		admitted = AdmittedRates
	}
	if hold <= 0 {
		hold = DefaultDetectHold
	}
	return &RateDetector{admitted: slices.Clone(admitted), hold: hold, wait: time.Duration(max(waitHolds, 1)) * hold}
}

// Observe records that a message of samples samples arrived at at, then
// checks as Check(at) does. Arrival times must not go backwards (readings
// of a monotonic clock); messages without samples still count as arrivals.
func (d *RateDetector) Observe(at time.Time, samples int) (rate int, decided bool) {
	if d.rate != 0 {
		return d.rate, true
	}
	if !d.started {
		d.started, d.first = true, at
	}
	d.total += int64(max(samples, 0))
	p := point{at: at.Sub(d.first).Seconds(), samples: float64(d.total)}
	if n := len(d.points); n > 0 && p.at <= d.points[n-1].at {
		d.points[n-1].samples = p.samples
	} else {
		d.points = append(d.points, p)
	}
	if len(d.points) >= maxDetectPoints {
		return d.Decide()
	}
	return d.Check(at)
}

// Check decides if it is time: from the end of the hold when the arrivals
// are clear and the fit is supported at both ends, from twice the hold when
// it is supported, at Deadline whatever the arrivals are. Once decided it
// returns the decided rate with decided true, ever after. At Deadline it
// can still return false, when the arrivals cannot tell at all (see
// Decide).
func (d *RateDetector) Check(now time.Time) (rate int, decided bool) {
	if d.rate != 0 {
		return d.rate, true
	}
	if !d.started {
		return 0, false
	}
	elapsed := now.Sub(d.first)
	if elapsed >= d.wait {
		return d.Decide()
	}
	if elapsed < d.hold {
		return 0, false
	}
	r, margin := d.best()
	if r == 0 || !d.supported(float64(r)) {
		return 0, false
	}
	if elapsed >= 2*d.hold || margin >= clearMargin*d.points[len(d.points)-1].at {
		d.rate, d.points = r, nil
		return r, true
	}
	return 0, false
}

// Deadline is when Check decides at the latest (maxHoldFactor times the
// hold after the first arrival, unless made otherwise); the zero time
// before the first arrival.
func (d *RateDetector) Deadline() time.Time {
	if !d.started {
		return time.Time{}
	}
	return d.first.Add(d.wait)
}

// NextCheck is the next moment after now at which Check, with no new
// arrival, can come to a decision it could not come to at now: twice the
// hold (a supported but close fit is decided then), else Deadline. A
// sender that went quiet is checked then, not only at the deadline.
func (d *RateDetector) NextCheck(now time.Time) time.Time {
	if !d.started {
		return time.Time{}
	}
	if at := d.first.Add(2 * d.hold); now.Before(at) && at.Before(d.Deadline()) {
		return at
	}
	return d.Deadline()
}

// Decide decides now with what has arrived, if it has not decided yet: the
// admitted rate that fits the arrivals best. It returns false when the
// arrivals cannot tell (fewer than two distinct arrival times, or no
// samples after the first arrival); the caller then falls back to a
// configured rate.
func (d *RateDetector) Decide() (rate int, ok bool) {
	if d.rate != 0 {
		return d.rate, true
	}
	r, _ := d.best()
	if r == 0 {
		return 0, false
	}
	d.rate, d.points = r, nil
	return r, true
}

// best returns the admitted rate leaving the least mean delay and by how
// much (in seconds) the runner-up leaves more; 0 when the arrivals cannot
// tell.
func (d *RateDetector) best() (rate int, margin float64) {
	if len(d.points) < 2 || d.points[len(d.points)-1].samples <= d.points[0].samples {
		return 0, 0
	}
	best, second := math.Inf(1), math.Inf(1)
	for _, r := range d.admitted {
		switch c := d.meanDelay(float64(r)); {
		case c < best:
			rate, best, second = r, c, best
		case c < second:
			second = c
		}
	}
	return rate, second - best
}

// Estimate is the rate the arrivals so far suggest, in Hz, not snapped to
// an admitted rate (the slope of the upper hull of cumulative samples over
// arrival time where it spans the mean arrival time, the same estimator
// unrestricted); 0 when there is not enough to tell, or once decided. For
// logs and tests.
func (d *RateDetector) Estimate() float64 {
	if len(d.points) < 2 {
		return 0
	}
	hull := upperHull(d.points)
	var mean float64
	for _, p := range d.points {
		mean += p.at
	}
	mean /= float64(len(d.points))
	for i := 1; i < len(hull); i++ {
		if hull[i].at >= mean || i == len(hull)-1 {
			a, b := hull[i-1], hull[i]
			return (b.samples - a.samples) / (b.at - a.at)
		}
	}
	return 0
}

// supported reports whether the capture line at rate r that no arrival
// precedes is supported by arrivals near it (within the slack, see
// supportSlack) both at the start and through the end of what was
// observed. The time since the first arrival is cut into supportBins
// slices: some arrival of the first third must be near the line, and every
// slice of the last third that holds arrivals, at least two of them, must
// hold one near it.
//
// A line resting only on early arrivals says nothing about the rate. Headless
// Chromium on a loaded machine sends its first 50-150 ms on time, then its
// audio thread falls 150-350 ms behind, posting in stalls and bursts, and
// catches up only 0.6-1.8 s after its first message (the traces behind
// TestRateDetectorChromiumStartup). Over a 400 ms hold every later arrival
// is late for the true rate, so the mean delay favours a slower one whose
// line slopes through the early arrivals and one late burst. Neither line
// is near arrivals all through the last third until the sender catches up;
// then the true one is. A stall at the end (no arrivals) proves nothing
// either way and only empties slices; a sender that was slow at the start
// and has caught up is supported (the catch-up and what follows are on the
// line).
func (d *RateDetector) supported(r float64) bool {
	span := d.points[len(d.points)-1].at
	lo := math.Inf(1)
	for _, p := range d.points {
		lo = min(lo, p.at-p.samples/r)
	}
	slack := supportSlack.Seconds() + supportSlackFraction*span
	var seen, near [supportBins]bool
	for _, p := range d.points {
		b := min(int(p.at/span*supportBins), supportBins-1)
		seen[b] = true
		if p.at-p.samples/r-lo <= slack {
			near[b] = true
		}
	}
	first, lateSeen, lateNear := false, 0, 0
	for b := range supportBins / 3 {
		first = first || near[b]
		if late := supportBins - 1 - b; seen[late] {
			lateSeen++
			if near[late] {
				lateNear++
			}
		}
	}
	return first && lateSeen >= 2 && lateNear == lateSeen
}

// supportBins is how many slices supported cuts the time observed into:
// 44 ms each over the default hold, a few of the real client's bursts.
const supportBins = 9

// meanDelay is the mean delay of the arrivals behind the earliest capture
// line at rate r that none of them precedes.
func (d *RateDetector) meanDelay(r float64) float64 {
	lo, sum := math.Inf(1), 0.0
	for _, p := range d.points {
		e := p.at - p.samples/r
		lo = min(lo, e)
		sum += e
	}
	return sum/float64(len(d.points)) - lo
}

// upperHull returns the upper convex hull of points sorted by time.
func upperHull(pts []point) []point {
	var h []point
	for _, p := range pts {
		for len(h) >= 2 {
			a, b := h[len(h)-2], h[len(h)-1]
			// Drop b when it lies on or below the line from a to p.
			if (b.samples-a.samples)*(p.at-a.at) <= (p.samples-a.samples)*(b.at-a.at) {
				h = h[:len(h)-1]
				continue
			}
			break
		}
		h = append(h, p)
	}
	return h
}
