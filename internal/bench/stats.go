package bench

import (
	"slices"
	"time"
)

// Summary describes a set of delays.
type Summary struct {
	N   int           `json:"n"`
	P50 time.Duration `json:"p50_ns"`
	P95 time.Duration `json:"p95_ns"`
	P99 time.Duration `json:"p99_ns"`
	Max time.Duration `json:"max_ns"`
}

// Summarize sorts d in place and returns its percentiles (nearest rank, so
// every figure is a delay that was actually observed).
func Summarize(d []time.Duration) Summary {
	if len(d) == 0 {
		return Summary{}
	}
	slices.Sort(d)
	return Summary{
		N:   len(d),
		P50: Percentile(d, 50),
		P95: Percentile(d, 95),
		P99: Percentile(d, 99),
		Max: d[len(d)-1],
	}
}

// Percentile returns the nearest-rank p-th percentile of sorted, or 0 when it
// is empty.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	// Nearest rank: the smallest value with at least p% of values at or below it.
	rank := int(p/100*float64(len(sorted)) + 0.999999999)
	rank = max(1, min(len(sorted), rank))
	return sorted[rank-1]
}
