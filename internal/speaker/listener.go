package speaker

import (
	"fmt"
	"net/http"

	"github.com/gorilla/websocket"

	"github.com/pulse-sidecar/pulse-sidecar/internal/wsserver"
)

// Close codes a listener may see besides 1001 (server stopping).
const (
	// closeTooSlow: the listener stayed behind live audio for longer than
	// SlowCloseAfter, skipping ahead did not help.
	closeTooSlow = 4002
)

// admit takes any path (a proxy in front maps /sound to it). The codec
// parameter picks the stream: none or mp2 is MP2 in MPEG-TS as it always
// was, opus the Ogg Opus stream; anything else is refused before the
// upgrade.
func (r *Relay) admit(req *http.Request) (wsserver.Session, error) {
	codec := ""
	if v := req.URL.Query()["codec"]; len(v) > 0 {
		codec = v[len(v)-1]
	}
	switch codec {
	case "", CodecMP2:
		return &listenerSession{r: r, codec: CodecMP2, hub: r.hub}, nil
	case CodecOpus:
		return &listenerSession{r: r, codec: CodecOpus, hub: r.opus.hub, pagePerMessage: true}, nil
	}
	return nil, &wsserver.Refusal{Status: http.StatusBadRequest, Reason: wsserver.ReasonParams,
		Text: fmt.Sprintf("codec %.12q: want mp2 or opus", codec)}
}

// Codecs of the speaker stream, the values of ?codec=.
const (
	CodecMP2  = "mp2"
	CodecOpus = "opus"
)

// listenerSession serves one listener websocket.
type listenerSession struct {
	r     *Relay
	codec string
	hub   *hub
	// pagePerMessage: every chunk is its own message (one Ogg page each),
	// never folded into a batch.
	pagePerMessage bool
}

// Serve writes the stream to one listener until it goes away, falls too far
// behind, or the server stops; it returns once its reader has ended too.
func (s *listenerSession) Serve(c *wsserver.Conn) {
	r := s.r
	log := r.cfg.Log.With("peer", c.Peer(), "codec", s.codec)
	l := s.hub.join(func() { c.Close(closeTooSlow, "listener too slow") })
	log.Debug("listener joined")
	err := r.serve(c, l, s.pagePerMessage)
	s.hub.leave(l)
	log.Debug("listener left", "err", err)
}

func (r *Relay) serve(c *wsserver.Conn, l *listener, pagePerMessage bool) error {
	readDone := make(chan error, 1)
	go func() { readDone <- discard(c) }()
	// The peer's close frame, or the close deadline, ends the reader; the
	// writer stops at once.
	defer func() { <-readDone }()
	var batch []*chunk
	for {
		select {
		case <-l.ready:
			batch = l.take(batch)
			if err := r.write(c, batch, pagePerMessage); err != nil {
				c.Close(websocket.CloseGoingAway, "write failed")
				return err
			}
		case <-c.Pings():
			if err := c.Ping(); err != nil {
				c.Close(websocket.CloseGoingAway, "ping failed")
				return err
			}
		case err := <-readDone:
			readDone <- err // for the deferred wait
			return err
		case <-c.Context().Done():
			// Closed by the hub (too slow) or the server (stopping).
			return c.Context().Err()
		}
	}
}

// write sends a batch of chunks; it is the listener's only writer of data
// frames. One chunk, the usual case for a listener that keeps up, goes out
// as the shared prepared frame. A backlog of several goes out as one
// message, so catching up costs one write, not one per chunk: JSMpeg does
// not care where messages split, only that packets are whole. With
// pagePerMessage (Ogg Opus) every chunk stays a message of its own, since a
// WebCodecs client hands each message to its page parser as it is. An
// empty batch (a wakeup whose chunks an earlier take already got) sends
// nothing: an empty message is no use to a decoder.
func (r *Relay) write(c *wsserver.Conn, batch []*chunk, pagePerMessage bool) error {
	if len(batch) == 0 {
		return nil
	}
	conn := c.WS()
	if err := conn.SetWriteDeadline(c.WriteDeadline()); err != nil {
		return err
	}
	n := 0
	if len(batch) == 1 || pagePerMessage {
		for _, ch := range batch {
			if err := conn.WritePreparedMessage(ch.msg); err != nil {
				return err
			}
			n += len(ch.data)
		}
	} else {
		w, err := conn.NextWriter(websocket.BinaryMessage)
		if err != nil {
			return err
		}
		for _, ch := range batch {
			if _, err := w.Write(ch.data); err != nil {
				return err
			}
			n += len(ch.data)
		}
		if err := w.Close(); err != nil {
			return err
		}
	}
	r.m.bytesOut.Add(float64(n))
	if !pagePerMessage {
		r.m.packetsOut.Add(float64(n / PacketSize))
	}
	return nil
}

// discard reads and drops whatever the listener sends: gorilla handles
// pings, pongs and close frames only while someone reads, and the server's
// pong handler pushes the read deadline out.
func discard(c *wsserver.Conn) error {
	for {
		if _, _, err := c.WS().NextReader(); err != nil {
			return err
		}
	}
}
