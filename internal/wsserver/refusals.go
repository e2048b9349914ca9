package wsserver

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Refusals are logged, but not one line each without end: a flood of 3000
// refused connections would write 3000 lines, costing more than the
// refusals themselves and burying everything else in the log. Per reason,
// the first refusalBurst refusals of a refusalWindow are logged as they
// come; the rest are counted and summed up in one line when the window
// ends (or the server stops). refused_total still counts every refusal.
const (
	refusalBurst  = 5
	refusalWindow = 10 * time.Second
)

// refusalLog writes refusal lines within the bound above; it is safe for
// concurrent use.
type refusalLog struct {
	log    *slog.Logger
	burst  int
	window time.Duration

	mu      sync.Mutex
	reasons map[string]*refusalCount
	stopped bool
}

// refusalCount is one reason's current window.
type refusalCount struct {
	start      time.Time
	logged     int
	suppressed int
	level      slog.Level  // of the suppressed lines, for their summary
	timer      *time.Timer // writes the summary; set while some are suppressed
}

func newRefusalLog(log *slog.Logger) *refusalLog {
	return &refusalLog{log: log, burst: refusalBurst, window: refusalWindow, reasons: map[string]*refusalCount{}}
}

// refused logs one refusal of reason as msg with args, or counts it for the
// window's summary.
func (l *refusalLog) refused(reason string, level slog.Level, msg string, args ...any) {
	now := time.Now()
	l.mu.Lock()
	c := l.reasons[reason]
	if c == nil {
		c = &refusalCount{}
		l.reasons[reason] = c
	}
	// A window with suppressed lines ends with its summary (the timer);
	// one without ends when its time is up.
	if c.timer == nil && now.Sub(c.start) >= l.window {
		c.start, c.logged = now, 0
	}
	if c.logged < l.burst {
		c.logged++
		l.mu.Unlock()
		l.log.Log(context.Background(), level, msg, args...)
		return
	}
	if c.suppressed == 0 || level > c.level {
		c.level = level
	}
	c.suppressed++
	if c.timer == nil && !l.stopped {
		c.timer = time.AfterFunc(c.start.Add(l.window).Sub(now), func() { l.summarize(reason) })
	}
	l.mu.Unlock()
}

// summarize ends reason's window with one line for what it did not log.
func (l *refusalLog) summarize(reason string) {
	l.mu.Lock()
	c := l.reasons[reason]
	n, level, since := c.suppressed, c.level, time.Since(c.start)
	c.suppressed, c.level, c.timer = 0, 0, nil
	l.mu.Unlock()
	l.summary(reason, n, level, since)
}

// stop writes the summaries of the windows still open, so that nothing
// counted is left unsaid when the server stops.
func (l *refusalLog) stop() {
	type pending struct {
		reason string
		n      int
		level  slog.Level
		since  time.Duration
	}
	var all []pending
	l.mu.Lock()
	l.stopped = true
	for reason, c := range l.reasons {
		if c.timer != nil {
			// A summary already running finds nothing left to say.
			c.timer.Stop()
			all = append(all, pending{reason, c.suppressed, c.level, time.Since(c.start)})
			c.suppressed, c.level, c.timer = 0, 0, nil
		}
	}
	l.mu.Unlock()
	for _, p := range all {
		l.summary(p.reason, p.n, p.level, p.since)
	}
}

func (l *refusalLog) summary(reason string, n int, level slog.Level, since time.Duration) {
	if n == 0 {
		return
	}
	l.log.Log(context.Background(), level,
		fmt.Sprintf("%d more refusals (%s) in the last %v", n, reason, since.Round(time.Millisecond)),
		"reason", reason, "count", n)
}
