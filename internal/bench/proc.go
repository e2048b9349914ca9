package bench

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat. It
// is 100 on every Linux architecture Go supports; the kernel scales its
// internal HZ to it for user space.
const clockTicks = 100

// ProcSample is one look at a process in /proc.
type ProcSample struct {
	At  time.Time
	CPU time.Duration // utime + stime since the process started
	RSS int64         // bytes, VmRSS
	// RSSAnon is the anonymous part of RSS: the heap and stacks. The rest is
	// file-backed (the binary's pages), clean and shared, and grows
	// whenever more of the code has run once, so "memory given back" is
	// judged on this part.
	RSSAnon int64
	Threads int
	FDs     int
}

// Proc reads a process's figures from a proc file system root (normally "/proc").
type Proc struct {
	Root string
	PID  int
}

// Sample reads stat, status and the fd directory of the process.
func (p Proc) Sample() (ProcSample, error) {
	dir := filepath.Join(p.Root, strconv.Itoa(p.PID))
	s := ProcSample{At: time.Now()}
	stat, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return s, fmt.Errorf("bench: %w", err)
	}
	if s.CPU, err = ParseStatCPU(stat); err != nil {
		return s, fmt.Errorf("bench: %s: %w", filepath.Join(dir, "stat"), err)
	}
	status, err := os.ReadFile(filepath.Join(dir, "status"))
	if err != nil {
		return s, fmt.Errorf("bench: %w", err)
	}
	if s.RSS, s.RSSAnon, s.Threads, err = ParseStatus(status); err != nil {
		return s, fmt.Errorf("bench: %s: %w", filepath.Join(dir, "status"), err)
	}
	fds, err := os.ReadDir(filepath.Join(dir, "fd"))
	if err != nil {
		return s, fmt.Errorf("bench: %w", err)
	}
	s.FDs = len(fds)
	return s, nil
}

// CPUShare is the share of one core the process used between two samples:
// 0.15 is 15 % of one core.
func CPUShare(before, after ProcSample) float64 {
	wall := after.At.Sub(before.At)
	if wall <= 0 {
		return 0
	}
	return float64(after.CPU-before.CPU) / float64(wall)
}

// ParseStatCPU returns utime+stime from the contents of /proc/PID/stat. The
// command name (field 2) may hold spaces and parentheses, so fields are
// counted from the last ')'.
func ParseStatCPU(stat []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("no ')' closing the command name")
	}
	// After ')': state(3) ppid(4) ... utime(14) stime(15).
	f := strings.Fields(string(stat[i+1:]))
	const utime, stime = 14 - 3, 15 - 3
	if len(f) <= stime {
		return 0, fmt.Errorf("%d fields after the command name, want at least %d", len(f), stime+1)
	}
	var ticks uint64
	for _, k := range []int{utime, stime} {
		v, err := strconv.ParseUint(f[k], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("field %d %q: %w", k+3, f[k], err)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// ParseStatPPID returns the parent pid from the contents of /proc/PID/stat.
func ParseStatPPID(stat []byte) (int, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("no ')' closing the command name")
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 2 {
		return 0, fmt.Errorf("no ppid field")
	}
	return strconv.Atoi(f[1])
}

// ParseStatus returns VmRSS and RssAnon in bytes and Threads from
// /proc/PID/status. A zombie has no VmRSS; that reads as 0.
func ParseStatus(status []byte) (rss, anon int64, threads int, err error) {
	seenThreads := false
	for _, line := range strings.Split(string(status), "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(val)
		switch key {
		case "VmRSS", "RssAnon":
			if len(f) != 2 || f[1] != "kB" {
				return 0, 0, 0, fmt.Errorf("%s %q: want '<n> kB'", key, strings.TrimSpace(val))
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, 0, 0, fmt.Errorf("%s %q: %w", key, f[0], err)
			}
			if key == "VmRSS" {
				rss = kb << 10
			} else {
				anon = kb << 10
			}
		case "Threads":
			if len(f) != 1 {
				return 0, 0, 0, fmt.Errorf("Threads %q: want one number", strings.TrimSpace(val))
			}
			if threads, err = strconv.Atoi(f[0]); err != nil {
				return 0, 0, 0, fmt.Errorf("Threads %q: %w", f[0], err)
			}
			seenThreads = true
		}
	}
	if !seenThreads {
		return 0, 0, 0, fmt.Errorf("no Threads line")
	}
	return rss, anon, threads, nil
}

// TreeRSS sums VmRSS over pid and all its descendants: the whole daemon is
// the relay plus the PulseAudio and encoder it runs.
func TreeRSS(root string, pid int) (int64, []int, error) {
	ents, err := os.ReadDir(root)
	if err != nil {
		return 0, nil, fmt.Errorf("bench: %w", err)
	}
	children := map[int][]int{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join(root, e.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		if pp, err := ParseStatPPID(stat); err == nil {
			children[pp] = append(children[pp], p)
		}
	}
	var total int64
	var pids []int
	todo := []int{pid}
	for len(todo) > 0 {
		p := todo[0]
		todo = todo[1:]
		s, err := Proc{Root: root, PID: p}.Sample()
		if err != nil {
			if p == pid {
				return 0, nil, err
			}
			continue
		}
		total += s.RSS
		pids = append(pids, p)
		todo = append(todo, children[p]...)
	}
	return total, pids, nil
}
