package speaker

// PacketSize is the size of one MPEG transport stream packet.
const PacketSize = 188

// syncByte starts every TS packet.
const syncByte = 0x47

// Packetizer cuts a byte stream into whole, sync-aligned TS packets.
//
// A FIFO read returns whatever the writer managed to put into the pipe, so
// packet boundaries and read boundaries are unrelated; and when an encoder
// dies mid-packet and a new one starts, the stream is misaligned once. The
// Packetizer trusts a sync byte only when the byte one packet later is a sync
// byte too, so a 0x47 inside a payload cannot lock it onto a wrong boundary.
//
// Its zero value is ready to use. It is not safe for concurrent use.
type Packetizer struct {
	// pending holds, when locked, the start of a packet not yet complete
	// (pending[0] is a sync byte) and, when hunting, bytes that may still
	// contain a boundary but could not be confirmed yet. It never grows past
	// two packets, so it is allocated once.
	pending []byte
	locked  bool

	resyncs uint64
	dropped uint64
}

// Append appends every whole packet that in completes to dst and returns the
// extended slice; bytes that cannot be attributed to a packet are dropped.
// The output never exceeds len(in)+PacketSize bytes, so a dst with that much
// spare capacity is never reallocated.
func (p *Packetizer) Append(dst, in []byte) []byte {
	if p.pending == nil {
		p.pending = make([]byte, 0, 2*PacketSize)
	}
	for {
		if !p.locked {
			if len(in) == 0 {
				return dst
			}
			dst, in = p.hunt(dst, in)
			continue
		}
		if len(p.pending) > 0 {
			need := PacketSize - len(p.pending)
			if len(in) < need {
				p.pending = append(p.pending, in...)
				return dst
			}
			p.pending = append(p.pending, in[:need]...)
			in = in[need:]
			dst = append(dst, p.pending...)
			p.pending = p.pending[:0]
		}
		// Steady state: in is aligned, so whole runs of packets are copied
		// at once without looking at anything but their first bytes.
		n := 0
		for n+PacketSize <= len(in) && in[n] == syncByte {
			n += PacketSize
		}
		dst = append(dst, in[:n]...)
		in = in[n:]
		switch {
		case len(in) == 0:
			return dst
		case in[0] != syncByte:
			p.locked = false
			p.resyncs++
		default:
			p.pending = append(p.pending, in...)
			return dst
		}
	}
}

// hunt looks for a confirmed packet boundary in pending plus the start of in.
// It consumes at most what fits into pending and returns the rest of in.
func (p *Packetizer) hunt(dst, in []byte) ([]byte, []byte) {
	take := min(len(in), cap(p.pending)-len(p.pending))
	p.pending = append(p.pending, in[:take]...)
	in = in[take:]
	buf := p.pending
	for i := 0; i+PacketSize < len(buf); i++ {
		if buf[i] != syncByte || buf[i+PacketSize] != syncByte {
			continue
		}
		p.dropped += uint64(i)
		p.locked = true
		dst = append(dst, buf[i:i+PacketSize]...)
		// What follows is a confirmed start; since pending holds at most two
		// packets it is at most one whole packet.
		rest := copy(buf, buf[i+PacketSize:])
		p.pending = buf[:rest]
		if rest == PacketSize {
			dst = append(dst, p.pending...)
			p.pending = p.pending[:0]
		}
		return dst, in
	}
	// Every position that could be confirmed was rejected. Keep only the
	// unconfirmed tail, from its first sync byte on.
	from := max(0, len(buf)-PacketSize)
	for from < len(buf) && buf[from] != syncByte {
		from++
	}
	p.dropped += uint64(from)
	p.pending = buf[:copy(buf, buf[from:])]
	return dst, in
}

// Reset forgets a partial packet and hunts for a boundary again. The reader
// calls it when a new encoder starts, so the tail of a killed encoder's last
// packet is not glued to the new encoder's first bytes.
func (p *Packetizer) Reset() {
	if p.locked && len(p.pending) > 0 {
		p.dropped += uint64(len(p.pending))
	}
	p.pending = p.pending[:0]
	p.locked = false
}

// Resyncs reports how many times the stream lost packet alignment.
func (p *Packetizer) Resyncs() uint64 { return p.resyncs }

// Dropped reports how many bytes were discarded because they belonged to no
// packet.
func (p *Packetizer) Dropped() uint64 { return p.dropped }
