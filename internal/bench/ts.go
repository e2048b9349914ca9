// Package bench measures a speaker relay from the outside: it feeds the
// speaker FIFO (or PulseAudio) on one side and listens on the websocket on
// the other, so any relay that keeps the same contract can be measured, and
// it reads the relay's cost from /proc and its ops port.
package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// PacketSize is the size of one MPEG-TS packet.
const PacketSize = 188

// DefaultPID carries the synthetic stream. It differs from ffmpeg's first
// elementary stream (0x100), so a relay whose own encoder writes into the
// same FIFO does not confuse the measurement.
const DefaultPID = 0x0BE0

// stampMagic marks a payload as ours: a relay may forward other packets
// (an encoder's) on the same socket, and a 13-bit PID alone could collide.
const stampMagic = "PSBENCH1"

// headerLen is a TS header without adaptation field.
const headerLen = 4

// Stamp is what every synthetic packet carries: its sequence number in the
// stream and the wall-clock time, in Unix nanoseconds, at which the writer
// handed it to the FIFO. Wall clock because the monotonic clock is not
// comparable across processes; writer and listeners share one machine.
type Stamp struct {
	Seq  uint64
	Sent int64
}

// AppendPacket appends one 188-byte TS packet on pid with continuity counter
// cc (mod 16) carrying s, padded with 0xFF like stuffing.
func AppendPacket(dst []byte, pid uint16, cc uint8, s Stamp) []byte {
	start := len(dst)
	dst = append(dst,
		0x47,
		byte(pid>>8)&0x1F, byte(pid),
		0x10|cc&0x0F, // payload only, no adaptation field
	)
	dst = append(dst, stampMagic...)
	dst = binary.BigEndian.AppendUint64(dst, s.Seq)
	dst = binary.BigEndian.AppendUint64(dst, uint64(s.Sent))
	for len(dst)-start < PacketSize {
		dst = append(dst, 0xFF)
	}
	return dst
}

// ErrNotStamped is returned by ParsePacket for a well-formed packet that is
// not part of a synthetic stream on the wanted PID.
var ErrNotStamped = errors.New("bench: packet carries no stamp")

// Packet is a parsed TS packet header plus its stamp.
type Packet struct {
	PID   uint16
	CC    uint8
	Stamp Stamp
}

// ParsePacket reads one packet (exactly PacketSize bytes). A packet with a
// valid header but no stamp (another PID, an encoder's audio) returns
// ErrNotStamped with its header filled in.
func ParsePacket(p []byte) (Packet, error) {
	if len(p) != PacketSize {
		return Packet{}, fmt.Errorf("bench: TS packet of %d bytes, want %d", len(p), PacketSize)
	}
	if p[0] != 0x47 {
		return Packet{}, fmt.Errorf("bench: TS packet starts with 0x%02x, want sync byte 0x47", p[0])
	}
	pkt := Packet{PID: uint16(p[1]&0x1F)<<8 | uint16(p[2]), CC: p[3] & 0x0F}
	// Adaptation field present, or no payload: not a packet we wrote.
	if p[3]&0x30 != 0x10 || string(p[headerLen:headerLen+len(stampMagic)]) != stampMagic {
		return pkt, ErrNotStamped
	}
	b := p[headerLen+len(stampMagic):]
	pkt.Stamp = Stamp{Seq: binary.BigEndian.Uint64(b), Sent: int64(binary.BigEndian.Uint64(b[8:]))}
	return pkt, nil
}

// Stamps calls fn for every stamped packet on pid in msg, a websocket
// message that the contract says holds whole packets. It returns how many
// packets msg held and an error if msg is not a whole number of packets or
// one of them is malformed.
func Stamps(msg []byte, pid uint16, fn func(Stamp)) (int, error) {
	if len(msg)%PacketSize != 0 {
		return 0, fmt.Errorf("bench: message of %d bytes is not whole TS packets", len(msg))
	}
	n := 0
	for ; len(msg) > 0; msg = msg[PacketSize:] {
		pkt, err := ParsePacket(msg[:PacketSize])
		n++
		if errors.Is(err, ErrNotStamped) {
			continue
		}
		if err != nil {
			return n, err
		}
		if pkt.PID == pid {
			fn(pkt.Stamp)
		}
	}
	return n, nil
}
