package fetch

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// NewProgress reports to w: one line rewritten in place on a terminal, a
// plain line per finished download otherwise (CI logs stay readable).
// Redraws are rate-limited inside Add, so no goroutine is needed.
func NewProgress(w io.Writer, terminal bool) Progress {
	return &display{w: w, terminal: terminal, now: time.Now}
}

type display struct {
	w        io.Writer
	terminal bool
	now      func() time.Time

	mu                          sync.Mutex
	total, done, cached, failed int
	bytes, totalBytes           int64
	lastDraw                    time.Time
}

func (d *display) Start(total int, bytes int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.total, d.totalBytes = total, bytes
	if !d.terminal {
		fmt.Fprintf(d.w, "fetch: %d files, %s\n", total, mib(bytes))
	}
}

func (d *display) Add(n int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.bytes += n
	if d.terminal && d.now().Sub(d.lastDraw) > 100*time.Millisecond {
		d.draw()
	}
}

func (d *display) Done(it Item, cached bool, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.done++
	if cached {
		d.cached++
	}
	if err != nil {
		d.failed++
	}
	switch {
	case d.terminal:
		d.draw()
	case err != nil:
		fmt.Fprintf(d.w, "fetch: [%d/%d] %s: failed\n", d.done, d.total, it.Name)
	case !cached:
		fmt.Fprintf(d.w, "fetch: [%d/%d] %s (%s)\n", d.done, d.total, it.Name, mib(it.Size))
	}
}

func (d *display) Finish() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.terminal {
		d.draw()
		fmt.Fprintln(d.w)
	}
	fmt.Fprintf(d.w, "fetch: %d of %d files ready (%d from cache, %d failed), %s\n", d.done-d.failed, d.total, d.cached, d.failed, mib(d.bytes))
}

func (d *display) draw() {
	d.lastDraw = d.now()
	fmt.Fprintf(d.w, "\r\x1b[Kfetch: %d/%d files, %s of %s", d.done, d.total, mib(d.bytes), mib(d.totalBytes))
}

func mib(n int64) string {
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
