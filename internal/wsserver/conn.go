package wsserver

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Conn is an admitted, upgraded websocket. gorilla allows one reader and
// one writer at a time, plus Close and WriteControl from anywhere: the
// session reads in Serve and writes from one goroutine of its own; Close,
// Ping and the server use only control frames and deadlines.
type Conn struct {
	ws    *websocket.Conn
	peer  string
	cfg   *Config
	ctx   context.Context
	stop  context.CancelFunc
	pings *time.Ticker

	closeOnce sync.Once
	closer    chan struct{} // closed when the closing goroutine is done; nil until Close
	finished  chan struct{} // closed once Serve returned
}

func (s *Server) newConn(ws *websocket.Conn, peer string) *Conn {
	ctx, stop := context.WithCancel(context.Background())
	c := &Conn{
		ws: ws, peer: peer, cfg: &s.cfg, ctx: ctx, stop: stop,
		pings:    time.NewTicker(s.cfg.PingInterval),
		finished: make(chan struct{}),
	}
	ws.SetReadLimit(s.cfg.ReadLimit)
	_ = ws.NetConn().SetReadDeadline(time.Now().Add(s.cfg.PongWait))
	ws.SetPongHandler(func(string) error { c.Alive(); return nil })
	return c
}

// WS is the websocket, for the session's reader and its one writer.
func (c *Conn) WS() *websocket.Conn { return c.ws }

// Peer is the remote address.
func (c *Conn) Peer() string { return c.peer }

// Context ends when the connection is being closed: the session was
// dropped or the server is stopping. A session stops writing then, and
// reads on only to see the peer's close frame.
func (c *Conn) Context() context.Context { return c.ctx }

// Alive pushes the read deadline out by the pong wait; pongs call it, and a
// session calls it for every message it reads. It does nothing once the
// connection is closing, so the close deadline holds.
func (c *Conn) Alive() {
	if c.ctx.Err() == nil {
		_ = c.ws.NetConn().SetReadDeadline(time.Now().Add(c.cfg.PongWait))
	}
}

// Pings delivers a tick whenever a ping is due; the session's writer sends
// it with Ping, so that one goroutine writes.
func (c *Conn) Pings() <-chan time.Time { return c.pings.C }

// Ping sends a ping frame.
func (c *Conn) Ping() error {
	return c.ws.WriteControl(websocket.PingMessage, nil, c.WriteDeadline())
}

// WriteDeadline is the deadline for a write starting now.
func (c *Conn) WriteDeadline() time.Time { return time.Now().Add(c.cfg.WriteWait) }

// KeepAlive pings until stop is closed, the connection closes or a ping
// fails: the writer of a session that sends nothing else.
func (c *Conn) KeepAlive(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-c.ctx.Done():
			return
		case <-c.pings.C:
			if c.Ping() != nil {
				return
			}
		}
	}
}

// Close starts a bounded close handshake with code and returns at once; it
// may be called from any goroutine, any number of times (the first call
// wins). The session's context ends now; a writer blocked on a peer that does
// not read fails within a second, the reader sees the peer's close frame or
// a deadline, and the socket is closed under both after that second
// whatever they do.
func (c *Conn) Close(code int, text string) { c.close(code, text, closeWait) }

func (c *Conn) close(code int, text string, wait time.Duration) {
	c.closeOnce.Do(func() {
		c.stop()
		done := make(chan struct{})
		c.closer = done
		go func() {
			defer close(done)
			deadline := time.Now().Add(wait)
			nc := c.ws.NetConn()
			// A writer stuck on a full send buffer gives up by the deadline,
			// releasing gorilla's write lock for the close frame, if there is
			// time left.
			_ = nc.SetWriteDeadline(deadline)
			_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), deadline)
			_ = nc.SetReadDeadline(deadline)
			t := time.NewTimer(time.Until(deadline))
			defer t.Stop()
			select {
			case <-t.C:
				// Whoever reset a deadline meanwhile, this ends every
				// blocked read and write.
				_ = nc.Close()
			case <-c.finished:
			}
		}()
	})
}

// Drain reads and drops the raw socket until the peer closes it or a second
// passed. After gorilla itself sent a close frame (a protocol error, a
// message over the limit), closing a socket that still holds unread client
// data makes the kernel send a reset, which can overtake the close frame and
// hide its code from the client.
func (c *Conn) Drain() {
	nc := c.ws.NetConn()
	_ = nc.SetReadDeadline(time.Now().Add(min(closeWait, c.cfg.WriteWait)))
	_, _ = io.Copy(io.Discard, nc)
}

// finish runs after Serve returned: it ends the closing goroutine, if any,
// and closes the socket.
func (c *Conn) finish() {
	c.stop()
	c.pings.Stop()
	close(c.finished)
	c.closeOnce.Do(func() {}) // no close may start from now on
	if c.closer != nil {
		<-c.closer
	}
	_ = c.ws.Close()
}

// limitListener accepts at most max connections at once; past it a new
// connection is accepted and closed at once, so the backlog never holds real
// clients behind a flood.
type limitListener struct {
	net.Listener
	max        int64
	sendBuffer int
	m          *metrics
	refusals   *refusalLog

	mu     sync.Mutex
	active int64
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		over := l.active >= l.max
		if !over {
			l.active++
		}
		l.mu.Unlock()
		if over {
			_ = nc.Close()
			l.m.refused.WithLabelValues(ReasonConnections).Inc()
			l.refusals.refused(ReasonConnections, slog.LevelInfo, "websocket refused", "peer", nc.RemoteAddr().String(),
				"reason", ReasonConnections, "detail", "too many connections: accepted and closed", "max_connections", l.max)
			continue
		}
		l.m.connections.Inc()
		if tc, ok := nc.(*net.TCPConn); ok && l.sendBuffer > 0 {
			_ = tc.SetWriteBuffer(l.sendBuffer)
		}
		return &limitConn{Conn: nc, l: l}, nil
	}
}

type limitConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		c.l.active--
		c.l.mu.Unlock()
		c.l.m.connections.Dec()
	})
	return err
}
