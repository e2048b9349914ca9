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
//
// Any process tree can be measured (a supervisord with Node relays as well
// as pulse-sidecar): nothing here depends on what the processes are.
type Footprint struct {
	Target    Target
	Duration  time.Duration
	Listeners int
	// After, when positive, adds a third phase: idle again, measured After
	// the listeners left. Whether the encoder is still running then is
	// the point: pulse-sidecar stops it after its linger, a relay that
	// never stops it pays for it in every idle pod from then on.
	After    time.Duration
	Progress io.Writer
}

// ProcFootprint is one process of the tree over a phase.
type ProcFootprint struct {
	PID  int    `json:"pid"`
	Comm string `json:"comm"`
	// Cmd is the command line with paths cut to their last two elements:
	// two "node" processes are told apart by their scripts' directories.
	Cmd string  `json:"cmd"`
	CPU float64 `json:"cpu"` // share of one core
	RSS int64   `json:"rss_bytes"`
	PSS int64   `json:"pss_bytes"`
	// Anon is the anonymous part of RSS. File pages (the binaries and
	// libraries) are shared with every other process mapping the same
	// files, pods of the same image included, so PSS moves with whatever
	// else runs on the machine; anonymous pages are the process's own.
	Anon int64 `json:"rss_anon_bytes"`
}

// FootprintPhase is the tree over one phase.
type FootprintPhase struct {
	Name      string          `json:"name"`
	Listeners int             `json:"listeners"`
	CPU       float64         `json:"cpu"`
	RSS       int64           `json:"rss_bytes"`
	PSS       int64           `json:"pss_bytes"`
	Anon      int64           `json:"rss_anon_bytes"`
	Procs     []ProcFootprint `json:"procs"`
	Load1     float64         `json:"load1_end"`
	// Kbps is what the listeners received over the phase, all together:
	// the proof that a streaming phase streamed.
	Kbps float64 `json:"recv_kbps"`
}

// FootprintResult is a footprint run.
type FootprintResult struct {
	Machine Machine          `json:"machine"`
	Phases  []FootprintPhase `json:"phases"`
}

// Run measures the idle phase, then the streaming one, then (After > 0)
// idle again once the listeners have left.
func (f *Footprint) Run(ctx context.Context) (FootprintResult, error) {
	root := f.Target.procRoot()
	res := FootprintResult{Machine: ThisMachine(root)}
	if f.Target.PID == 0 {
		return res, fmt.Errorf("bench: footprint needs the daemon's pid")
	}
	idle, err := f.phase(ctx, "idle", nil)
	if err != nil {
		return res, err
	}
	res.Phases = append(res.Phases, idle)
	if f.Listeners <= 0 {
		return res, nil
	}
	pool := &Pool{URL: f.Target.WS}
	defer pool.Close()
	if err := pool.Grow(ctx, f.Listeners); err != nil {
		return res, err
	}
	// Past the encoder's start.
	if err := sleep(ctx, 2*time.Second); err != nil {
		return res, err
	}
	st, err := f.phase(ctx, "streaming", pool)
	if err != nil {
		return res, err
	}
	res.Phases = append(res.Phases, st)
	if f.After <= 0 {
		return res, nil
	}
	pool.Close()
	if f.Progress != nil {
		fmt.Fprintf(f.Progress, "listeners gone, waiting %v\n", f.After)
	}
	if err := sleep(ctx, f.After); err != nil {
		return res, err
	}
	after, err := f.phase(ctx, "after", nil)
	if err != nil {
		return res, err
	}
	res.Phases = append(res.Phases, after)
	return res, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// phase measures the tree over Duration. With a pool, its listeners must
// receive audio throughout, or the figures would be those of a sidecar
// that stopped streaming.
func (f *Footprint) phase(ctx context.Context, name string, pool *Pool) (FootprintPhase, error) {
	root := f.Target.procRoot()
	ph := FootprintPhase{Name: name}
	before, err := treeSamples(root, f.Target.PID)
	if err != nil {
		return ph, err
	}
	if pool != nil {
		pool.Take()
		ph.Listeners = pool.Readers()
	}
	if f.Progress != nil {
		fmt.Fprintf(f.Progress, "%s: measuring %d processes for %v\n", name, len(before), f.Duration)
	}
	if err := sleep(ctx, f.Duration); err != nil {
		return ph, err
	}
	after, err := treeSamples(root, f.Target.PID)
	if err != nil {
		return ph, err
	}
	if pool != nil {
		got := pool.Take()
		ph.Kbps = float64(got.Bytes) * 8 / 1000 / f.Duration.Seconds()
		if got.Dropped > 0 {
			return ph, fmt.Errorf("bench: footprint %s: %d of %d listeners of %s lost their connection", name, got.Dropped, got.Readers, f.Target.WS)
		}
		if got.Bytes == 0 {
			return ph, fmt.Errorf("bench: footprint %s: no audio reached the listeners of %s in %v", name, f.Target.WS, f.Duration)
		}
	}
	for pid, a := range after {
		p := ProcFootprint{PID: pid, Comm: comm(root, pid), Cmd: cmdline(root, pid), RSS: a.RSS, PSS: pss(root, pid), Anon: a.RSSAnon}
		// A process that started during the phase is charged from its start.
		if b, ok := before[pid]; ok {
			p.CPU = CPUShare(b, a)
		} else {
			p.CPU = float64(a.CPU) / float64(f.Duration)
		}
		ph.CPU += p.CPU
		ph.RSS += p.RSS
		ph.PSS += p.PSS
		ph.Anon += p.Anon
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

// cmdline is the process's arguments with every absolute path cut to its
// last two elements, at most 60 characters.
func cmdline(root string, pid int) string {
	b, _ := os.ReadFile(filepath.Join(root, strconv.Itoa(pid), "cmdline"))
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	for i, a := range args {
		if el := strings.Split(a, "/"); strings.HasPrefix(a, "/") && len(el) > 2 {
			args[i] = strings.Join(el[len(el)-2:], "/")
		}
	}
	s := strings.Join(args, " ")
	if r := []rune(s); len(r) > 60 {
		s = string(r[:57]) + "..."
	}
	return s
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
	fmt.Fprintln(tw, "phase\tlisteners\tprocess\tCPU %\tRSS MiB\tPSS MiB\tanon MiB\t\tcommand")
	for _, ph := range r.Phases {
		for _, p := range ph.Procs {
			fmt.Fprintf(tw, "%s\t%d\t%s (%d)\t%.2f\t%s\t%s\t%s\t\t%s\n", ph.Name, ph.Listeners, p.Comm, p.PID, 100*p.CPU, mib(p.RSS), mib(p.PSS), mib(p.Anon), p.Cmd)
		}
		recv := ""
		if ph.Listeners > 0 {
			recv = fmt.Sprintf("received %.0f kbit/s", ph.Kbps)
		}
		fmt.Fprintf(tw, "%s\t%d\twhole sidecar (load %.1f)\t%.2f\t%s\t%s\t%s\t\t%s\n", ph.Name, ph.Listeners, ph.Load1, 100*ph.CPU, mib(ph.RSS), mib(ph.PSS), mib(ph.Anon), recv)
	}
	return tw.Flush()
}
