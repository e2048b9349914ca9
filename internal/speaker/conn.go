package speaker

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/gorilla/websocket"
)

// maxClientMessage bounds what a listener may send. Listeners have nothing
// to say; the server reads only so that pongs and close frames are seen.
const maxClientMessage = 4 << 10

// ServeHTTP upgrades any path to a listener websocket (a proxy in front maps
// /sound to it). The jwt_token query parameter is the proxy's business and
// ignored here.
func (r *Relay) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	if r.stopping {
		r.mu.Unlock()
		http.Error(w, "speaker relay is shutting down", http.StatusServiceUnavailable)
		return
	}
	r.conns.Add(1)
	r.mu.Unlock()

	conn, err := r.upgrader.Upgrade(w, req, nil)
	if err != nil {
		r.conns.Done()
		r.cfg.Log.Debug("websocket upgrade refused", "peer", req.RemoteAddr, "origin", req.Header.Get("Origin"), "err", err)
		return
	}
	// Bound the kernel's share of a slow listener's backlog: left alone,
	// loopback and LAN sockets autotune up to tcp_wmem's 4 MiB (minutes
	// of audio) before the hub's queue ever sees the listener fall behind.
	if tc, ok := conn.NetConn().(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(32 << 10)
	}
	log := r.cfg.Log.With("peer", req.RemoteAddr)
	l := r.hub.join()
	log.Debug("listener joined")
	go func() {
		defer r.conns.Done()
		err := r.serve(r.serveCtx, conn, l)
		r.hub.leave(l)
		log.Debug("listener left", "err", err)
	}()
}

// serve writes the stream to one listener until it goes away, falls too far
// behind, or ctx ends; it returns once its reader goroutine has ended too.
func (r *Relay) serve(ctx context.Context, conn *websocket.Conn, l *listener) error {
	readDone := make(chan error, 1)
	go func() { readDone <- r.discard(conn) }()
	defer func() {
		conn.Close()
		<-readDone
	}()

	ping := time.NewTicker(r.cfg.PingInterval)
	defer ping.Stop()
	var batch []*chunk
	for {
		select {
		case <-l.ready:
			batch = l.take(batch)
			if err := r.write(conn, batch); err != nil {
				return err
			}
		case <-ping.C:
			if err := conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(r.cfg.WriteWait)); err != nil {
				return err
			}
		case err := <-readDone:
			readDone <- err // for the deferred wait
			return err
		case <-l.done:
			r.close(conn, websocket.CloseTryAgainLater, "listener too slow")
			return errors.New("listener stayed behind, closed")
		case <-ctx.Done():
			r.close(conn, websocket.CloseGoingAway, "server shutting down")
			return ctx.Err()
		}
	}
}

// write sends a batch of chunks. One chunk, the usual case for a listener
// that keeps up, goes out as the shared prepared frame; a backlog of several
// goes out as one message, so catching up costs one write, not one per
// chunk. JSMpeg does not care where messages split, only that packets are
// whole.
func (r *Relay) write(conn *websocket.Conn, batch []*chunk) error {
	if err := conn.SetWriteDeadline(time.Now().Add(r.cfg.WriteWait)); err != nil {
		return err
	}
	n := 0
	if len(batch) == 1 {
		if err := conn.WritePreparedMessage(batch[0].msg); err != nil {
			return err
		}
		n = len(batch[0].data)
	} else {
		w, err := conn.NextWriter(websocket.BinaryMessage)
		if err != nil {
			return err
		}
		for _, c := range batch {
			if _, err := w.Write(c.data); err != nil {
				return err
			}
			n += len(c.data)
		}
		if err := w.Close(); err != nil {
			return err
		}
	}
	r.m.bytesOut.Add(float64(n))
	r.m.packetsOut.Add(float64(n / PacketSize))
	return nil
}

// discard reads and drops whatever the listener sends: gorilla handles pings,
// pongs and close frames only while someone reads. Pongs push the read
// deadline out; a listener that stops answering pings is dropped.
func (r *Relay) discard(conn *websocket.Conn) error {
	conn.SetReadLimit(maxClientMessage)
	deadline := func() error { return conn.SetReadDeadline(time.Now().Add(r.cfg.PongWait)) }
	if err := deadline(); err != nil {
		return err
	}
	conn.SetPongHandler(func(string) error { return deadline() })
	for {
		if _, _, err := conn.NextReader(); err != nil {
			return err
		}
	}
}

// close says goodbye with a close frame, briefly: a listener that is not
// reading would otherwise hold the goroutine for a whole write wait.
func (r *Relay) close(conn *websocket.Conn, code int, text string) {
	_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text),
		time.Now().Add(min(time.Second, r.cfg.WriteWait)))
}
