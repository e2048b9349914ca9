package bench

import (
	"context"
	"fmt"
	"io"
	"time"
)

// DefaultBitRate is the real encoder's rate on the wire (MP2 128 kbit/s in
// MPEG-TS, measured).
const DefaultBitRate = 207_000

// DefaultChunkPackets is how many packets the real encoder writes at once.
const DefaultChunkPackets = 3

// Writer writes a synthetic stamped TS stream.
type Writer struct {
	PID uint16
	// BitRate paces the stream in bits per second; 0 writes as fast as the
	// destination takes it.
	BitRate      int
	ChunkPackets int              // packets per write (DefaultChunkPackets when 0)
	Now          func() time.Time // time.Now when nil
}

// WriterStats is what a Writer wrote.
type WriterStats struct {
	Packets uint64
	Bytes   uint64
	Elapsed time.Duration
}

// Interval is the time between two chunks at the writer's bit rate, 0 for
// max rate.
func (w Writer) Interval() time.Duration {
	if w.BitRate <= 0 {
		return 0
	}
	bits := int64(w.chunkPackets()) * PacketSize * 8
	return time.Duration(bits * int64(time.Second) / int64(w.BitRate))
}

func (w Writer) chunkPackets() int {
	if w.ChunkPackets <= 0 {
		return DefaultChunkPackets
	}
	return w.ChunkPackets
}

// Run writes chunks to dst until ctx ends or a write fails. Each write is one
// chunk, under PIPE_BUF for the default size, so it lands in a FIFO whole
// even when another writer (the relay's encoder) shares it. Pacing is against
// the start time, so a late tick is caught up rather than lost.
func (w Writer) Run(ctx context.Context, dst io.Writer) (WriterStats, error) {
	now := w.Now
	if now == nil {
		now = time.Now
	}
	n := w.chunkPackets()
	interval := w.Interval()
	buf := make([]byte, 0, n*PacketSize)
	var st WriterStats
	start := now()
	var timer *time.Timer
	if interval > 0 {
		timer = time.NewTimer(0)
		defer timer.Stop()
	}
	for chunk := int64(0); ; chunk++ {
		if interval > 0 {
			timer.Reset(time.Until(start.Add(time.Duration(chunk) * interval)))
			select {
			case <-ctx.Done():
				st.Elapsed = now().Sub(start)
				return st, nil
			case <-timer.C:
			}
		} else if ctx.Err() != nil {
			st.Elapsed = now().Sub(start)
			return st, nil
		}
		buf = buf[:0]
		sent := now().UnixNano()
		for i := 0; i < n; i++ {
			buf = AppendPacket(buf, w.PID, uint8(st.Packets), Stamp{Seq: st.Packets, Sent: sent})
			st.Packets++
		}
		if _, err := dst.Write(buf); err != nil {
			st.Elapsed = now().Sub(start)
			return st, fmt.Errorf("bench: writing synthetic stream: %w", err)
		}
		st.Bytes += uint64(len(buf))
	}
}
