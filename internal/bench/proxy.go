package bench

import (
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"time"
)

// DelayProxy is a TCP proxy on 127.0.0.1 that holds everything coming from
// upstream for Delay before passing it on, and everything going upstream not
// at all. It is the known delay that proves the latency tool: a listener
// behind it must measure Delay more than one connected directly.
type DelayProxy struct {
	Delay    time.Duration
	upstream string
	ln       net.Listener
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	closed   bool
}

// StartDelayProxy listens on a free loopback port and forwards every
// connection to upstream (host:port).
func StartDelayProxy(upstream string, delay time.Duration) (*DelayProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench: delay proxy: %w", err)
	}
	p := &DelayProxy{Delay: delay, upstream: upstream, ln: ln, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's host:port.
func (p *DelayProxy) Addr() string { return p.ln.Addr().String() }

// URL returns u (a ws:// or http:// URL of the upstream) pointing at the
// proxy instead.
func (p *DelayProxy) URL(u string) (string, error) {
	pu, err := url.Parse(u)
	if err != nil {
		return "", fmt.Errorf("bench: delay proxy: %w", err)
	}
	pu.Host = p.Addr()
	return pu.String(), nil
}

// Close stops listening, cuts every connection and waits for the proxy's
// goroutines.
func (p *DelayProxy) Close() error {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.wg.Wait()
	return err
}

func (p *DelayProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *DelayProxy) accept() {
	defer p.wg.Done()
	for {
		down, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.serve(down)
		}()
	}
}

func (p *DelayProxy) serve(down net.Conn) {
	if !p.track(down) {
		return
	}
	up, err := net.DialTimeout("tcp", p.upstream, 10*time.Second)
	if err != nil {
		down.Close()
		return
	}
	if !p.track(up) {
		down.Close()
		return
	}
	done := make(chan struct{}, 2)
	go func() {
		io.Copy(up, down)
		up.Close()
		done <- struct{}{}
	}()
	go func() {
		p.delayed(down, up)
		down.Close()
		done <- struct{}{}
	}()
	<-done
	<-done
	p.mu.Lock()
	delete(p.conns, down)
	delete(p.conns, up)
	p.mu.Unlock()
}

// delayed copies src to dst, each read chunk written Delay after it was
// read. The queue is bounded: a reader that falls behind slows src down
// instead of growing memory.
func (p *DelayProxy) delayed(dst io.Writer, src io.ReadCloser) {
	type chunk struct {
		due time.Time
		b   []byte
	}
	q := make(chan chunk, 256)
	go func() {
		defer close(q)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				q <- chunk{time.Now().Add(p.Delay), buf[:n]}
			}
			if err != nil {
				return
			}
		}
	}()
	var werr error
	for c := range q {
		if werr != nil {
			continue // drain so the reader ends
		}
		time.Sleep(time.Until(c.due))
		if _, werr = dst.Write(c.b); werr != nil {
			src.Close()
		}
	}
}
