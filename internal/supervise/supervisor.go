package supervise

import (
	"context"
	"log/slog"
	"time"
)

// Backoff is a capped exponential delay between restarts. The delay starts at
// Min, doubles after every short-lived child up to Max, and goes back to Min
// once a child stayed up for Stable: a child that crashed once an hour should
// not wait Max before its next start.
type Backoff struct {
	Min, Max time.Duration
	Stable   time.Duration // zero: 10s, or Max if that is longer
}

// next returns the delay before the next start, given the previous delay and
// how long the child that just exited ran.
func (b Backoff) next(prev, uptime time.Duration) time.Duration {
	lo, hi := b.Min, b.Max
	if lo <= 0 {
		lo = 100 * time.Millisecond
	}
	if hi < lo {
		hi = lo
	}
	stable := b.Stable
	if stable <= 0 {
		stable = max(10*time.Second, hi)
	}
	switch {
	case prev <= 0 || uptime >= stable:
		return lo
	case prev >= hi/2:
		return hi
	default:
		return prev * 2
	}
}

// Supervisor keeps one child running until its context is cancelled.
type Supervisor struct {
	Reaper  *Reaper
	Spec    Spec
	Backoff Backoff
	Grace   time.Duration // stop: TERM, then KILL after Grace (zero: 5s)
	Log     *slog.Logger

	// BeforeStart runs before every start (e.g. remove a stale FIFO or
	// socket); an error is logged and retried with backoff.
	BeforeStart func(ctx context.Context) error
	// OnStart runs in its own goroutine while the child runs (e.g. wait for
	// readiness, then mark ready); its ctx is cancelled when the child exits
	// and Run waits for it to return before OnExit.
	OnStart func(ctx context.Context, p *Process)
	// OnExit runs after every exit, including the stop on cancellation (the
	// caller's ctx tells which), with p.Err().
	OnExit func(p *Process, err error)
}

// Run keeps one child running until ctx is cancelled, then stops it (TERM,
// KILL after Grace) and returns nil. A crashing child is restarted with
// backoff; it is never a reason to return an error, since a daemon that gives
// up on PulseAudio is worse than one that keeps trying.
func (s *Supervisor) Run(ctx context.Context) error {
	log := s.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	name := s.Spec.Name
	log = log.With("process", name)
	grace := s.Grace
	if grace <= 0 {
		grace = 5 * time.Second
	}
	var delay time.Duration
	wait := func(uptime time.Duration) bool {
		delay = s.Backoff.next(delay, uptime)
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	for ctx.Err() == nil {
		if s.BeforeStart != nil {
			if err := s.BeforeStart(ctx); err != nil {
				log.Error("preparing start failed", "err", err)
				if !wait(0) {
					break
				}
				continue
			}
		}
		spec := s.Spec
		if spec.Log == nil {
			spec.Log = s.Log
		}
		p, err := s.Reaper.Start(spec)
		if err != nil {
			log.Error("start failed", "err", err)
			if !wait(0) {
				break
			}
			continue
		}
		started := time.Now()
		stopped := s.watch(ctx, p, grace)
		if stopped || ctx.Err() != nil {
			break
		}
		uptime := time.Since(started)
		log.Warn("exited; restarting", "err", p.Err(), "uptime", uptime.Round(time.Millisecond),
			"delay", s.Backoff.next(delay, uptime))
		if !wait(uptime) {
			break
		}
	}
	return nil
}

// watch runs OnStart next to the child and waits for the child to exit or ctx
// to be cancelled (then stops it). It reports whether the child was stopped by
// cancellation.
func (s *Supervisor) watch(ctx context.Context, p *Process, grace time.Duration) (stopped bool) {
	startCtx, cancelStart := context.WithCancel(ctx)
	startDone := make(chan struct{})
	go func() {
		defer close(startDone)
		if s.OnStart != nil {
			s.OnStart(startCtx, p)
		}
	}()
	select {
	case <-p.Done():
	case <-ctx.Done():
		stopped = true
		if err := p.Stop(grace); err != nil && s.Log != nil {
			s.Log.Error("stop failed", "process", s.Spec.Name, "pid", p.Pid(), "err", err)
		}
	}
	cancelStart()
	<-startDone
	if s.OnExit != nil {
		s.OnExit(p, p.Err())
	}
	return stopped
}
