package speaker

import (
	"errors"
	"io"
	"os"
	"time"
)

// read drains the FIFO for the relay's whole life, with or without
// listeners or an encoder, so nothing stale accumulates in the pipe; it
// returns when the file is closed.
func (r *Relay) read(in io.Reader) {
	var (
		p       Packetizer
		buf     = make([]byte, readSize)
		scratch = make([]byte, 0, readSize+PacketSize)
		resyncs uint64
	)
	for {
		n, err := in.Read(buf)
		if n > 0 {
			now := time.Now()
			r.lastData.Store(now.UnixNano())
			if r.stalledSeen() {
				r.cfg.Log.Info("encoder stream flows again")
			}
			if r.resetPacketizer.Swap(false) {
				p.Reset()
			}
			// Each broadcast chunk is a fresh slice, since listeners hold
			// on to it; with nobody listening, a reused one is enough to
			// keep the packetizer in step.
			dst := scratch[:0]
			listening := r.hub.len() > 0
			if listening {
				dst = make([]byte, 0, n+PacketSize)
			}
			out := p.Append(dst, buf[:n])
			r.m.packetsIn.Add(float64(len(out) / PacketSize))
			if got := p.Resyncs(); got != resyncs {
				r.m.resyncs.Add(float64(got - resyncs))
				resyncs = got
			}
			if listening && len(out) > 0 {
				if err := r.hub.broadcast(out, now); err != nil {
					r.cfg.Log.Error("broadcast", "err", err)
				}
			}
		}
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				r.cfg.Log.Error("reading speaker FIFO", "path", r.cfg.FIFO, "err", err)
			}
			return
		}
	}
}

// encoderStalled makes the relay not ready until an encoder started after
// now delivers.
func (r *Relay) encoderStalled() {
	r.setReady(func() { r.stalled, r.replaced = true, false })
}

// encoderStarted records that an encoder was started (after a stall, the
// replacement).
func (r *Relay) encoderStarted() {
	r.readyMu.Lock()
	r.replaced = true
	r.readyMu.Unlock()
}

// stalledSeen clears a stall once data flows again from an encoder started
// after it, and tells whether it did.
func (r *Relay) stalledSeen() bool {
	r.readyMu.Lock()
	clear := r.stalled && r.replaced
	r.readyMu.Unlock()
	if clear {
		r.setReady(func() { r.stalled = false })
	}
	return clear
}
