package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"
)

// Idle measures what a process tree (the daemon and its children:
// PulseAudio, and the encoder if one runs) costs while nothing happens:
// the CPU time each process used over Duration, as a share of one core.
type Idle struct {
	PID      int
	ProcRoot string // "/proc" when empty
	Duration time.Duration
}

// IdleResult is one idle measurement.
type IdleResult struct {
	Machine   Machine      `json:"machine"`
	Seconds   float64      `json:"seconds"`
	Share     float64      `json:"cpu_share"` // whole tree, of one core
	Processes []IdleByProc `json:"processes"`
}

// IdleByProc is one process's part.
type IdleByProc struct {
	PID   int     `json:"pid"`
	Comm  string  `json:"comm"`
	Share float64 `json:"cpu_share"`
}

// Run samples the tree's CPU times at the start and the end; processes that
// came or went in between count only for the time both samples saw them.
func (i *Idle) Run(ctx context.Context) (IdleResult, error) {
	root := i.ProcRoot
	if root == "" {
		root = "/proc"
	}
	res := IdleResult{Machine: ThisMachine(root)}
	before, err := treeCPU(root, i.PID)
	if err != nil {
		return res, err
	}
	start := time.Now()
	select {
	case <-time.After(i.Duration):
	case <-ctx.Done():
		return res, ctx.Err()
	}
	after, err := treeCPU(root, i.PID)
	if err != nil {
		return res, err
	}
	wall := time.Since(start)
	res.Seconds = wall.Seconds()
	for pid, a := range after {
		b, ok := before[pid]
		if !ok {
			continue
		}
		share := float64(a.cpu-b.cpu) / float64(wall)
		res.Share += share
		res.Processes = append(res.Processes, IdleByProc{PID: pid, Comm: a.comm, Share: share})
	}
	sort.Slice(res.Processes, func(x, y int) bool { return res.Processes[x].PID < res.Processes[y].PID })
	return res, nil
}

type procCPU struct {
	comm string
	cpu  time.Duration
}

// treeCPU reads utime+stime of pid and its descendants.
func treeCPU(root string, pid int) (map[int]procCPU, error) {
	_, pids, err := TreeRSS(root, pid)
	if err != nil {
		return nil, err
	}
	out := map[int]procCPU{}
	for _, p := range pids {
		stat, err := os.ReadFile(filepath.Join(root, strconv.Itoa(p), "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		cpu, err := ParseStatCPU(stat)
		if err != nil {
			return nil, fmt.Errorf("bench: pid %d: %w", p, err)
		}
		out[p] = procCPU{comm: commOf(stat), cpu: cpu}
	}
	return out, nil
}

// commOf is the command name between the parentheses of /proc/PID/stat.
func commOf(stat []byte) string {
	s := string(stat)
	open, end := -1, -1
	for k := 0; k < len(s); k++ {
		if s[k] == '(' && open < 0 {
			open = k
		}
		if s[k] == ')' {
			end = k
		}
	}
	if open < 0 || end < open {
		return ""
	}
	return s[open+1 : end]
}

// WriteTable prints the idle result for a terminal.
func (r IdleResult) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "machine: %d CPUs, %s MiB, load %.2f at start, %s\n", r.Machine.CPUs, mib(r.Machine.MemTotal), r.Machine.Load1, r.Machine.Date)
	fmt.Fprintf(w, "idle over %.1f s: %.3f %% of a core for the whole tree\n", r.Seconds, 100*r.Share)
	for _, p := range r.Processes {
		fmt.Fprintf(w, "  %-14s %7d %8.3f %%\n", p.Comm, p.PID, 100*p.Share)
	}
	return nil
}
