package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// tally is what one listener saw since the last reset.
type tally struct {
	bytes   uint64
	stamped uint64 // our packets
	lost    uint64 // packets missing from the sequence (skipped by the relay)
	delays  []time.Duration
}

// listener reads one websocket and turns the stamps it receives into delays.
type listener struct {
	conn *websocket.Conn
	pid  uint16
	now  func() time.Time

	mu       sync.Mutex
	t        tally
	lastSeq  uint64
	lastSent int64
	seen     bool
	err      error // why reading stopped, nil while it runs
}

// read runs until the connection fails or is closed. A message that is not
// whole TS packets ends it: the contract says it never happens.
func (l *listener) read() {
	buf := make([]byte, 0, 4096)
	for {
		_, r, err := l.conn.NextReader()
		if err == nil {
			buf, err = readAll(buf[:0], r)
		}
		if err == nil {
			at := l.now().UnixNano()
			l.mu.Lock()
			l.t.bytes += uint64(len(buf))
			_, err = Stamps(buf, l.pid, func(s Stamp) { l.record(s, at) })
			l.mu.Unlock()
		}
		if err != nil {
			l.mu.Lock()
			l.err = err
			l.mu.Unlock()
			return
		}
	}
}

// record is called with l.mu held. Packets written together share a send
// time, so one delay is kept per write rather than one per packet.
func (l *listener) record(s Stamp, at int64) {
	l.t.stamped++
	if l.seen && s.Seq > l.lastSeq+1 {
		l.t.lost += s.Seq - l.lastSeq - 1
	}
	if !l.seen || s.Sent != l.lastSent {
		l.t.delays = append(l.t.delays, time.Duration(at-s.Sent))
	}
	l.seen, l.lastSeq, l.lastSent = true, s.Seq, s.Sent
}

// take returns the tally since the last take and starts a new one.
func (l *listener) take() (tally, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := l.t
	l.t = tally{delays: make([]time.Duration, 0, cap(t.delays))}
	return t, l.err
}

func readAll(buf []byte, r io.Reader) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// Pool is a set of websocket listeners on one URL. Readers take part in
// the figures; slow ones connect and never read, so the relay's queue for
// them fills and it has to cope.
type Pool struct {
	URL string
	PID uint16
	// Concurrency bounds simultaneous handshakes (32 when 0): thousands at
	// once would measure the accept backlog rather than the relay.
	Concurrency int
	Now         func() time.Time

	mu        sync.Mutex
	listeners []*listener
	slow      []*websocket.Conn
	wg        sync.WaitGroup
}

// Readers is the number of reading listeners connected so far.
func (p *Pool) Readers() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.listeners)
}

// Grow connects reading listeners until there are n.
func (p *Pool) Grow(ctx context.Context, n int) error {
	have := p.Readers()
	if n <= have {
		return nil
	}
	conns, err := p.dial(ctx, n-have, 0)
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.Now
	if now == nil {
		now = time.Now
	}
	for _, c := range conns {
		l := &listener{conn: c, pid: p.PID, now: now}
		p.listeners = append(p.listeners, l)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			l.read()
		}()
	}
	return err
}

// AddSlow connects n listeners that never read. Their receive buffers are
// made small so the relay sees them stall within seconds, not minutes.
func (p *Pool) AddSlow(ctx context.Context, n int) error {
	conns, err := p.dial(ctx, n, 4096)
	p.mu.Lock()
	p.slow = append(p.slow, conns...)
	p.mu.Unlock()
	return err
}

func (p *Pool) dial(ctx context.Context, n, rcvbuf int) ([]*websocket.Conn, error) {
	nd := &net.Dialer{Timeout: 30 * time.Second}
	if rcvbuf > 0 {
		nd.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
			}); err != nil {
				return err
			}
			return serr
		}
	}
	d := websocket.Dialer{NetDialContext: nd.DialContext, HandshakeTimeout: 30 * time.Second,
		ReadBufferSize: 4096, WriteBufferSize: 512}
	conc := p.Concurrency
	if conc <= 0 {
		conc = 32
	}
	var (
		mu    sync.Mutex
		conns []*websocket.Conn
		errs  []error
		wg    sync.WaitGroup
		sem   = make(chan struct{}, conc)
	)
	for i := 0; i < n && ctx.Err() == nil; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			c, resp, err := d.DialContext(ctx, p.URL, http.Header{})
			if resp != nil && resp.Body != nil {
				resp.Body.Close()
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			conns = append(conns, c)
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return conns, fmt.Errorf("bench: %d of %d connections to %s failed, first: %w", len(errs), n, p.URL, errs[0])
	}
	return conns, ctx.Err()
}

// PoolStats aggregates the reading listeners since the last Take.
type PoolStats struct {
	Readers int
	Bytes   uint64
	Stamped uint64
	Lost    uint64
	// Dropped counts listeners whose connection ended on the relay's side.
	Dropped int
	Delays  []time.Duration
}

// Take collects and resets every reading listener's tally.
func (p *Pool) Take() PoolStats {
	p.mu.Lock()
	ls := append([]*listener(nil), p.listeners...)
	p.mu.Unlock()
	var st PoolStats
	st.Readers = len(ls)
	for _, l := range ls {
		t, err := l.take()
		st.Bytes += t.bytes
		st.Stamped += t.stamped
		st.Lost += t.lost
		st.Delays = append(st.Delays, t.delays...)
		if err != nil {
			st.Dropped++
		}
	}
	return st
}

// Close disconnects everyone and waits for the readers to end.
func (p *Pool) Close() {
	p.mu.Lock()
	for _, l := range p.listeners {
		l.conn.Close()
	}
	for _, c := range p.slow {
		c.Close()
	}
	p.listeners, p.slow = nil, nil
	p.mu.Unlock()
	p.wg.Wait()
}
