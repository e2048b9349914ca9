package bench

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }

func mib(b int64) string { return fmt.Sprintf("%.1f", float64(b)/(1<<20)) }

func (s StepResult) line() string {
	return fmt.Sprintf("listeners=%d slow=%d kbit/s=%.1f p50=%sms p95=%sms p99=%sms max=%sms cpu=%.1f%% rss=%sMiB lost=%d dropped=%d load=%.2f",
		s.Listeners, s.Slow, s.KbpsPerListener, ms(s.Delay.P50), ms(s.Delay.P95), ms(s.Delay.P99), ms(s.Delay.Max),
		100*s.CPU, mib(s.RSS), s.Lost, s.Dropped, s.Load1)
}

// WriteTable prints the fan-out result for a terminal.
func (r FanoutResult) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "machine: %d CPUs, %s MiB, load %.2f at start, %s\n", r.Machine.CPUs, mib(r.Machine.MemTotal), r.Machine.Load1, r.Machine.Date)
	rate := "max"
	if r.BitRate > 0 {
		rate = fmt.Sprintf("%.0f kbit/s", float64(r.BitRate)/1000)
	}
	fmt.Fprintf(w, "stream: %s, %d packets written\n", rate, r.Written.Packets)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "listeners\tslow\tkbit/s each\tp50 ms\tp95 ms\tp99 ms\tmax ms\tCPU %\tRSS MiB\tKiB/listener\tgoroutines\tFDs\tlost pkts\tdropped\tload\t")
	for _, s := range r.Steps {
		fmt.Fprintf(tw, "%d\t%d\t%.1f\t%s\t%s\t%s\t%s\t%.1f\t%s\t%.1f\t%d\t%d\t%d\t%d\t%.2f\t\n",
			s.Listeners, s.Slow, s.KbpsPerListener, ms(s.Delay.P50), ms(s.Delay.P95), ms(s.Delay.P99), ms(s.Delay.Max),
			100*s.CPU, mib(s.RSS), s.RSSPerListener/1024, s.Goroutines, s.FDs, s.Lost, s.Dropped, s.Load1)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "RSS idle %s MiB (anon %s), after all left %s MiB (anon %s), after settling %s MiB (anon %s); daemon tree idle %s MiB in %d processes\n",
		mib(r.Idle.RSS), mib(r.Idle.RSSAnon), mib(r.Left.RSS), mib(r.Left.RSSAnon), mib(r.Settled.RSS), mib(r.Settled.RSSAnon),
		mib(r.Idle.TreeRSS), r.Idle.TreePIDs)
	_, err := fmt.Fprintf(w, "goroutines idle %d, after %d; FDs idle %d, after %d\n",
		r.Idle.Goroutines, r.Settled.Goroutines, r.Idle.FDs, r.Settled.FDs)
	return err
}
