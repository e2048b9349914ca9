package build

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/pulse-sidecar/pulse-sidecar/internal/debian"
)

// ExtractOrder permutes the packages before extraction. The tree is meant
// to be independent of it (conflicts and merges resolve the same way
// whatever came first); this exists so `imagectl verify` can prove that
// instead of assuming it. The zero value is the lock's order.
type ExtractOrder struct {
	Reverse bool
	// Shuffle, when true, permutes with a PCG seeded by Seed, so a failing
	// order can be replayed from the seed verify prints.
	Shuffle bool
	Seed    uint64
}

// ParseExtractOrder reads "lock" (or ""), "reverse" or "shuffle:SEED".
func ParseExtractOrder(s string) (ExtractOrder, error) {
	switch {
	case s == "" || s == "lock":
		return ExtractOrder{}, nil
	case s == "reverse":
		return ExtractOrder{Reverse: true}, nil
	case strings.HasPrefix(s, "shuffle:"):
		seed, err := strconv.ParseUint(strings.TrimPrefix(s, "shuffle:"), 10, 64)
		if err != nil {
			return ExtractOrder{}, fmt.Errorf("extract order %q: seed: %w", s, err)
		}
		return ExtractOrder{Shuffle: true, Seed: seed}, nil
	}
	return ExtractOrder{}, fmt.Errorf("extract order %q: want lock, reverse or shuffle:SEED", s)
}

// String is the form ParseExtractOrder reads.
func (o ExtractOrder) String() string {
	switch {
	case o.Shuffle:
		return "shuffle:" + strconv.FormatUint(o.Seed, 10)
	case o.Reverse:
		return "reverse"
	}
	return "lock"
}

// apply returns the packages in this order, leaving pkgs as it was.
func (o ExtractOrder) apply(pkgs []debian.LockedPackage) []debian.LockedPackage {
	out := append([]debian.LockedPackage(nil), pkgs...)
	switch {
	case o.Shuffle:
		r := rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15))
		r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	case o.Reverse:
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	}
	return out
}
