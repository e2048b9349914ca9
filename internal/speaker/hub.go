package speaker

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// chunk is a run of whole TS packets, shared by every listener it is queued
// for. Nobody writes to it after broadcast: that is what lets one chunk, and
// its websocket frame, serve a thousand listeners without a copy.
type chunk struct {
	data []byte
	// msg is data framed once as a server binary message; gorilla encodes
	// the frame a single time however many connections write it.
	msg *websocket.PreparedMessage
	// header marks an Ogg Opus header page (OpusHead, OpusTags): a
	// decoder cannot start without them, so skipping ahead keeps them.
	header bool
}

// hub fans chunks out to listeners. It never waits for a listener: each one
// has a bounded queue that its own writer drains, so a slow peer can only
// hurt itself.
type hub struct {
	queueBytes int           // per-listener bound; past it the queue is dropped
	slowAfter  time.Duration // how long a listener may stay behind before it is closed
	m          *metrics
	// changed is called, outside the hub's lock, after the number of
	// listeners changed; the encoder control reads len() then.
	changed func()

	mu        sync.Mutex
	listeners []*listener
	// headers are the current Ogg Opus stream's header pages, queued first
	// for every listener that joins mid-stream; nil for MPEG-TS.
	headers []*chunk
}

type listener struct {
	// ready holds one token when the queue went from empty to non-empty
	// since the writer last looked, so a writer wakes once per batch rather
	// than once per chunk.
	ready chan struct{}
	// done is closed when the hub gave up on the listener (too slow).
	done chan struct{}
	// drop is called, outside the hub's lock, right after done is closed: it
	// closes the connection, so a writer blocked on the listener's socket
	// gives up too.
	drop func()

	mu     sync.Mutex
	queue  []*chunk
	queued int // bytes in queue
	// behindSince is when the listener first had its queue dropped without
	// having caught up since; zero while it keeps up.
	behindSince time.Time
	// skipped records a drop since the writer last took the queue, so one
	// small queue right after a drop is not mistaken for keeping up.
	skipped bool
}

// join adds a listener. It receives the stream's header pages, if any, then
// the chunks broadcast from now on, so its first byte is a packet (or page)
// boundary. drop (optional) is called when the hub gives up on it.
func (h *hub) join(drop func()) *listener {
	l := &listener{ready: make(chan struct{}, 1), done: make(chan struct{}), drop: drop}
	h.mu.Lock()
	for _, c := range h.headers {
		l.queue = append(l.queue, c)
		l.queued += len(c.data)
	}
	if len(l.queue) > 0 {
		l.ready <- struct{}{}
	}
	h.listeners = append(h.listeners, l)
	h.m.listeners.Inc()
	h.mu.Unlock()
	h.notify()
	return l
}

// leave removes a listener; leaving twice, or after being closed as slow, is
// harmless.
func (h *hub) leave(l *listener) {
	h.mu.Lock()
	i := slices.Index(h.listeners, l)
	removed := i >= 0
	if removed {
		h.listeners = slices.Delete(h.listeners, i, i+1)
		h.m.listeners.Dec()
	}
	h.mu.Unlock()
	if removed {
		h.notify()
	}
}

func (h *hub) len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.listeners)
}

func (h *hub) notify() {
	if h.changed != nil {
		h.changed()
	}
}

// broadcast queues data, whole TS packets that the caller will not touch
// again, for every listener; now is when it was read.
func (h *hub) broadcast(data []byte, now time.Time) error {
	return h.publish(data, now, nil)
}

// publish is broadcast with a hook that runs under the hub's lock with the
// framed chunk and may veto it, so that the Opus reader updates the header
// pages in step with what listeners get.
func (h *hub) publish(data []byte, now time.Time, locked func(c *chunk) bool) error {
	h.mu.Lock()
	if len(h.listeners) == 0 && locked == nil {
		h.mu.Unlock()
		return nil
	}
	msg, err := websocket.NewPreparedMessage(websocket.BinaryMessage, data)
	if err != nil {
		h.mu.Unlock()
		return fmt.Errorf("framing %d bytes: %w", len(data), err)
	}
	c := &chunk{data: data, msg: msg}
	if locked != nil && !locked(c) {
		h.mu.Unlock()
		return nil
	}
	kept := h.listeners[:0]
	var dropped []*listener
	for _, l := range h.listeners {
		skipped, slow := l.push(c, h.queueBytes, h.slowAfter, now)
		if skipped > 0 {
			h.m.skippedBytes.Add(float64(skipped))
		}
		if slow {
			close(l.done)
			dropped = append(dropped, l)
			continue
		}
		kept = append(kept, l)
	}
	clear(h.listeners[len(kept):])
	h.listeners = kept
	if len(dropped) > 0 {
		h.m.slowClosed.Add(float64(len(dropped)))
		h.m.listeners.Sub(float64(len(dropped)))
	}
	h.mu.Unlock()
	for _, l := range dropped {
		if l.drop != nil {
			l.drop()
		}
	}
	if len(dropped) > 0 {
		h.notify()
	}
	return nil
}

// push queues c. A queue that would outgrow limit is dropped first: the
// listener skips ahead to live audio, since late audio is worth less than
// none (JSMpeg itself drops audio lagging more than a quarter second). It
// returns the bytes dropped and whether the listener has been behind for
// longer than slowAfter and should be closed.
func (l *listener) push(c *chunk, limit int, slowAfter time.Duration, now time.Time) (skipped int, slow bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.queue) > 0 && l.queued+len(c.data) > limit {
		skipped = l.queued
		// Header pages not yet sent stay: without them the listener's
		// decoder could never start.
		kept := l.queue[:0]
		for _, q := range l.queue {
			if q.header {
				kept = append(kept, q)
				skipped -= len(q.data)
			}
		}
		clear(l.queue[len(kept):])
		l.queue = kept
		l.queued = 0
		for _, q := range kept {
			l.queued += len(q.data)
		}
		l.skipped = true
		switch {
		case l.behindSince.IsZero():
			l.behindSince = now
		case now.Sub(l.behindSince) > slowAfter:
			return skipped, true
		}
	}
	l.queue = append(l.queue, c)
	l.queued += len(c.data)
	select {
	case l.ready <- struct{}{}:
	default:
	}
	return skipped, false
}

// take hands the writer everything queued and gives the listener into,
// emptied, as its next queue; swapping two slices keeps steady state free of
// allocations.
func (l *listener) take(into []*chunk) []*chunk {
	clear(into)
	l.mu.Lock()
	defer l.mu.Unlock()
	// The writer is back for more and at most one chunk arrived while it was
	// writing, without a drop: it keeps up with the live edge.
	if !l.skipped && len(l.queue) <= 1 {
		l.behindSince = time.Time{}
	}
	l.skipped = false
	batch := l.queue
	l.queue = into[:0]
	l.queued = 0
	return batch
}
