package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Footprint measures what the whole sidecar (the daemon and every process
// under it: PulseAudio, the encoder) costs per pod: CPU averaged over
// Duration and RSS/PSS, first with no listener, then with Listeners reading.
// The daemon should have no encoder running at the start (a fresh daemon,
// or one whose last listener left more than its linger ago).
type Footprint struct {
	Target    Target
	Duration  time.Duration
	Listeners int
	Progress  io.Writer
}

// ProcFootprint is one process of the tree over a phase.
type ProcFootprint struct {
	PID  int     `json:"pid"`
	Comm string  `json:"comm"`
	CPU  float64 `json:"cpu"` // share of one core
	RSS  int64   `json:"rss_bytes"`
	PSS  int64   `json:"pss_bytes"`
}

// FootprintPhase is the tree over one phase.
type FootprintPhase struct {
	Name      string          `json:"name"`
	Listeners int             `json:"listeners"`
	CPU       float64         `json:"cpu"`
	RSS       int64           `json:"rss_bytes"`
	PSS       int64           `json:"pss_bytes"`
	Procs     []ProcFootprint `json:"procs"`
	Load1     float64         `json:"load1_end"`
}

// FootprintResult is a footprint run.
type FootprintResult struct {
	Machine Machine          `json:"machine"`
	Phases  []FootprintPhase `json:"phases"`
}

// Run measures the idle phase, then the streaming one.
func (f *Footprint) Run(ctx context.Context) (FootprintResult, error) {
	root := f.Target.procRoot()
	res := FootprintResult{Machine: ThisMachine(root)}
	if f.Target.PID == 0 {
		return res, fmt.Errorf("bench: footprint needs the daemon's pid")
	}
	idle, err := f.phase(ctx, "idle", 0)
	if err != nil {
		return res, err
	}
	res.Phases = append(res.Phases, idle)
	if f.Listeners > 0 {
		pool := &Pool{URL: f.Target.WS}
		defer pool.Close()
		if err := pool.Grow(ctx, f.Listeners); err != nil {
			return res, err
		}
		// Past the encoder's start.
		select {
		case <-time.After(2 * time.Second):
		case <-ctx.Done():
			return res, ctx.Err()
		}
		st, err := f.phase(ctx, "streaming", f.Listeners)
		if err != nil {
			return res, err
		}
		res.Phases = append(res.Phases, st)
	}
	return res, nil
}

func (f *Footprint) phase(ctx context.Context, name string, listeners int) (FootprintPhase, error) {
	root := f.Target.procRoot()
	ph := FootprintPhase{Name: name, Listeners: listeners}
	before, err := treeSamples(root, f.Target.PID)
	if err != nil {
		return ph, err
	}
	if f.Progress != nil {
		fmt.Fprintf(f.Progress, "%s: measuring %d processes for %v\n", name, len(before), f.Duration)
	}
	select {
	case <-time.After(f.Duration):
	case <-ctx.Done():
		return ph, ctx.Err()
	}
	after, err := treeSamples(root, f.Target.PID)
	if err != nil {
		return ph, err
	}
	for pid, a := range after {
		p := ProcFootprint{PID: pid, Comm: comm(root, pid), RSS: a.RSS, PSS: pss(root, pid)}
		// A process that started during the phase is charged from its start.
		if b, ok := before[pid]; ok {
			p.CPU = CPUShare(b, a)
		} else {
			p.CPU = float64(a.CPU) / float64(f.Duration)
		}
		ph.CPU += p.CPU
		ph.RSS += p.RSS
		ph.PSS += p.PSS
		ph.Procs = append(ph.Procs, p)
	}
	sort.Slice(ph.Procs, func(i, j int) bool { return ph.Procs[i].PID < ph.Procs[j].PID })
	ph.Load1 = ThisMachine(root).Load1
	return ph, nil
}

// treeSamples samples pid and all its descendants.
func treeSamples(root string, pid int) (map[int]ProcSample, error) {
	_, pids, err := TreeRSS(root, pid)
	if err != nil {
		return nil, err
	}
	out := map[int]ProcSample{}
	for _, p := range pids {
		if s, err := (Proc{Root: root, PID: p}).Sample(); err == nil {
			out[p] = s
		}
	}
	return out, nil
}

func comm(root string, pid int) string {
	b, _ := os.ReadFile(filepath.Join(root, strconv.Itoa(pid), "comm"))
	return strings.TrimSpace(string(b))
}

// pss is the proportional set size from smaps_rollup: shared pages (the
// libraries every process maps) counted once across processes, which is
// what a pod's processes together really take.
func pss(root string, pid int) int64 {
	b, err := os.ReadFile(filepath.Join(root, strconv.Itoa(pid), "smaps_rollup"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "Pss:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// WriteTable prints the footprint for a terminal.
func (r FootprintResult) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "machine: %d CPUs, %s MiB, load %.2f at start, %s\n", r.Machine.CPUs, mib(r.Machine.MemTotal), r.Machine.Load1, r.Machine.Date)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\tlisteners\tprocess\tCPU %\tRSS MiB\tPSS MiB\t")
	for _, ph := range r.Phases {
		for _, p := range ph.Procs {
			fmt.Fprintf(tw, "%s\t%d\t%s (%d)\t%.2f\t%s\t%s\t\n", ph.Name, ph.Listeners, p.Comm, p.PID, 100*p.CPU, mib(p.RSS), mib(p.PSS))
		}
		fmt.Fprintf(tw, "%s\t%d\twhole sidecar (load %.1f)\t%.2f\t%s\t%s\t\n", ph.Name, ph.Listeners, ph.Load1, 100*ph.CPU, mib(ph.RSS), mib(ph.PSS))
	}
	return tw.Flush()
}
