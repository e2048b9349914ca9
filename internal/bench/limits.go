package bench

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"
)

// RaiseNoFile lifts the soft limit on open files to the hard limit: every
// listener is a socket, and the usual soft limit of 1024 would stop the
// ramp short of its 1000 and 2000 steps. It returns the new soft limit.
func RaiseNoFile() (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, fmt.Errorf("bench: reading RLIMIT_NOFILE: %w", err)
	}
	if l.Cur >= l.Max {
		return l.Cur, nil
	}
	l.Cur = l.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, fmt.Errorf("bench: raising RLIMIT_NOFILE to %d: %w", l.Max, err)
	}
	return l.Cur, nil
}

// ParseSteps reads a listener ramp such as "1,10,100,1000,2000". Steps must
// be positive and increasing: listeners are only ever added.
func ParseSteps(s string) ([]int, error) {
	var steps []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("listener step %q: want a positive whole number", f)
		}
		if len(steps) > 0 && n <= steps[len(steps)-1] {
			return nil, fmt.Errorf("listener step %d after %d: steps must increase", n, steps[len(steps)-1])
		}
		steps = append(steps, n)
	}
	return steps, nil
}
