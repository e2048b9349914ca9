package bench

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Target names the relay under test by its public interfaces only.
type Target struct {
	FIFO       string // speaker FIFO the synthetic stream goes into
	WS         string // speaker websocket URL
	PID        int    // relay process whose CPU, RSS and FDs are read from /proc; 0: none
	MetricsURL string // ops /metrics URL; empty: none
	ProcRoot   string // "/proc" when empty
	HTTP       *http.Client
}

func (t Target) procRoot() string {
	if t.ProcRoot == "" {
		return "/proc"
	}
	return t.ProcRoot
}

// Snapshot is the relay's footprint at one moment. /proc is preferred where
// both sources have a figure, since it works for any relay; /metrics adds
// what only the process knows (goroutines, listeners).
type Snapshot struct {
	At         time.Time     `json:"at"`
	CPU        time.Duration `json:"cpu_ns"`
	RSS        int64         `json:"rss_bytes"`
	RSSAnon    int64         `json:"rss_anon_bytes,omitempty"`
	TreeRSS    int64         `json:"tree_rss_bytes,omitempty"` // relay plus its children (PulseAudio, encoder)
	TreePIDs   int           `json:"tree_processes,omitempty"`
	FDs        int           `json:"fds"`
	Threads    int           `json:"threads,omitempty"`
	Goroutines int           `json:"goroutines,omitempty"`
	Listeners  int           `json:"listeners_metric"`
	HaveCPU    bool          `json:"-"`
}

// Snapshot reads /proc and /metrics, whichever the target names.
func (t Target) Snapshot(ctx context.Context) (Snapshot, error) {
	s := Snapshot{At: time.Now(), Listeners: -1}
	if t.PID > 0 {
		p, err := Proc{Root: t.procRoot(), PID: t.PID}.Sample()
		if err != nil {
			return s, err
		}
		s.At, s.CPU, s.RSS, s.RSSAnon, s.FDs, s.Threads, s.HaveCPU = p.At, p.CPU, p.RSS, p.RSSAnon, p.FDs, p.Threads, true
		if s.TreeRSS, s.TreePIDs, err = treeRSS(t.procRoot(), t.PID); err != nil {
			return s, err
		}
	}
	if t.MetricsURL != "" {
		c := t.HTTP
		if c == nil {
			c = &http.Client{Timeout: 10 * time.Second}
		}
		m, err := Scrape(ctx, c, t.MetricsURL)
		if err != nil {
			return s, err
		}
		s.Goroutines = int(m["go_goroutines"])
		if v, ok := m["pulse_sidecar_speaker_listeners"]; ok {
			s.Listeners = int(v)
		}
		if t.PID <= 0 {
			s.At = time.Now()
			s.CPU = time.Duration(m["process_cpu_seconds_total"] * float64(time.Second))
			s.RSS = int64(m["process_resident_memory_bytes"])
			s.FDs = int(m["process_open_fds"])
			_, s.HaveCPU = m["process_cpu_seconds_total"]
		}
	}
	return s, nil
}

func treeRSS(root string, pid int) (int64, int, error) {
	rss, pids, err := TreeRSS(root, pid)
	return rss, len(pids), err
}

// CPUShareBetween is the share of one core used between two snapshots.
func CPUShareBetween(a, b Snapshot) float64 {
	if !a.HaveCPU || !b.HaveCPU {
		return 0
	}
	return CPUShare(ProcSample{At: a.At, CPU: a.CPU}, ProcSample{At: b.At, CPU: b.CPU})
}

// WaitListeners polls /metrics until the relay counts want listeners or
// within passes; without a metrics URL it just waits a second for the relay
// to notice closed sockets.
func (t Target) WaitListeners(ctx context.Context, want int, within time.Duration) error {
	if t.MetricsURL == "" {
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
		}
		return ctx.Err()
	}
	deadline := time.Now().Add(within)
	for {
		s, err := t.Snapshot(ctx)
		if err == nil && s.Listeners == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: relay still counts %d listeners after %v, want %d (last error: %v)", s.Listeners, within, want, err)
		}
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Machine describes where the figures were taken.
type Machine struct {
	Date     string  `json:"date"`
	CPUs     int     `json:"cpus"`
	MemTotal int64   `json:"mem_total_bytes"`
	Load1    float64 `json:"load1_at_start"`
	Kernel   string  `json:"kernel,omitempty"`
}

// ThisMachine reads the machine's size and load from a proc root.
func ThisMachine(procRoot string) Machine {
	if procRoot == "" {
		procRoot = "/proc"
	}
	m := Machine{Date: time.Now().UTC().Format(time.RFC3339), CPUs: runtime.NumCPU()}
	if b, err := os.ReadFile(procRoot + "/meminfo"); err == nil {
		m.MemTotal = parseMemTotal(string(b))
	}
	m.Load1 = Load1(procRoot)
	if b, err := os.ReadFile(procRoot + "/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

func parseMemTotal(meminfo string) int64 {
	for _, line := range strings.Split(meminfo, "\n") {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			f := strings.Fields(v)
			if len(f) == 2 && f[1] == "kB" {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// Load1 is the one-minute load average, 0 when unreadable. On a shared
// machine it says how much of the figures is other people's work.
func Load1(procRoot string) float64 {
	b, err := os.ReadFile(procRoot + "/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}
