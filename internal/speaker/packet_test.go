package speaker

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// tsPackets returns n packets numbered from first (big-endian in bytes 1-4),
// with payloads full of stray sync bytes so that only the packetizer's
// confirmation rule keeps it on the right boundaries.
func tsPackets(rng *rand.Rand, first, n int) []byte {
	out := make([]byte, 0, n*PacketSize)
	for i := range n {
		p := make([]byte, PacketSize)
		for j := range p {
			if rng.IntN(4) == 0 {
				p[j] = syncByte
			} else {
				p[j] = byte(rng.IntN(256))
			}
		}
		p[0] = syncByte
		binary.BigEndian.PutUint32(p[1:5], uint32(first+i))
		out = append(out, p...)
	}
	return out
}

// garbage returns n bytes with no sync byte in them.
func garbage(rng *rand.Rand, n int) []byte {
	g := make([]byte, n)
	for i := range g {
		g[i] = byte(rng.IntN(255))
		if g[i] == syncByte {
			g[i] = 0
		}
	}
	return g
}

// feed pushes stream through a Packetizer in random chunks and checks that
// every non-empty result is whole packets.
func feed(t *testing.T, rng *rand.Rand, p *Packetizer, stream []byte, maxChunk int) []byte {
	t.Helper()
	var got []byte
	for len(stream) > 0 {
		n := min(len(stream), rng.IntN(maxChunk+1))
		out := p.Append(nil, stream[:n])
		stream = stream[n:]
		checkWhole(t, out)
		got = append(got, out...)
	}
	return got
}

func checkWhole(t *testing.T, b []byte) {
	t.Helper()
	if len(b)%PacketSize != 0 {
		t.Fatalf("chunk of %d bytes is not whole packets", len(b))
	}
	for i := 0; i < len(b); i += PacketSize {
		if b[i] != syncByte {
			t.Fatalf("packet at offset %d starts with %#x", i, b[i])
		}
	}
}

func TestPacketizerRandomChunking(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	stream := tsPackets(rng, 0, 500)
	for _, maxChunk := range []int{1, 7, 187, 188, 189, 1000, 20000} {
		var p Packetizer
		got := feed(t, rng, &p, stream, maxChunk)
		if !bytes.Equal(got, stream) {
			t.Errorf("max chunk %d: got %d bytes, want the %d bytes fed in", maxChunk, len(got), len(stream))
		}
		if p.Resyncs() != 0 || p.Dropped() != 0 {
			t.Errorf("max chunk %d: clean stream gave %d resyncs, %d dropped bytes", maxChunk, p.Resyncs(), p.Dropped())
		}
	}
}

func TestPacketizerGarbage(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	// Payload sync bytes are removed here: with them, garbage followed by a
	// stray 0x47 one packet further on can fake a boundary (see the test
	// below), and the exact counts checked here would depend on the seed.
	a := clean(tsPackets(rng, 0, 20))
	b := clean(tsPackets(rng, 20, 20))
	c := clean(tsPackets(rng, 40, 20))
	// A stream joined mid-packet, with a stray sync byte in that tail, then
	// garbage between runs of packets.
	var stream []byte
	tail := clean(tsPackets(rng, 1000, 1))[70:]
	tail[5] = syncByte
	stream = append(stream, tail...)
	stream = append(stream, a...)
	stream = append(stream, garbage(rng, 77)...)
	stream = append(stream, b...)
	stream = append(stream, garbage(rng, 500)...)
	stream = append(stream, c...)
	want := append(append(append([]byte(nil), a...), b...), c...)

	for _, maxChunk := range []int{1, 100, 188, 5000} {
		var p Packetizer
		got := feed(t, rng, &p, stream, maxChunk)
		if !bytes.Equal(got, want) {
			t.Errorf("max chunk %d: got %d bytes (%v), want %d (packets 0-59)", maxChunk, len(got), numbers(got), len(want))
		}
		if p.Resyncs() != 2 {
			t.Errorf("max chunk %d: %d resyncs, want 2", maxChunk, p.Resyncs())
		}
		if wantDropped := uint64(len(stream) - len(want)); p.Dropped() != wantDropped {
			t.Errorf("max chunk %d: dropped %d bytes, want %d", maxChunk, p.Dropped(), wantDropped)
		}
	}
}

// A stray sync byte exactly where a packet boundary would be, if the stream
// were off by the garbage's length, must not be trusted without a second one.
func TestPacketizerStraySyncNotTrusted(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	pk := clean(tsPackets(rng, 0, 10))
	// One stray sync byte at offset 10 of packet 2; offset 10 of packet 3
	// is not one, so that candidate fails.
	pk[2*PacketSize+10] = syncByte
	stream := append(garbage(rng, 3), pk[2*PacketSize+5:]...)
	var p Packetizer
	got := p.Append(nil, stream)
	if want := pk[3*PacketSize:]; !bytes.Equal(got, want) {
		t.Fatalf("got packets %v, want %v", numbers(got), numbers(want))
	}
}

func TestPacketizerReset(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	old := tsPackets(rng, 0, 3)
	fresh := tsPackets(rng, 100, 5)
	var p Packetizer
	got := p.Append(nil, old[:2*PacketSize+50]) // dies mid-packet
	p.Reset()
	got = p.Append(got, fresh)
	want := append(append([]byte(nil), old[:2*PacketSize]...), fresh...)
	if !bytes.Equal(got, want) {
		t.Fatalf("got packets %v, want %v", numbers(got), numbers(want))
	}
}

func TestPacketizerNoAllocs(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	stream := tsPackets(rng, 0, 100)
	dst := make([]byte, 0, len(stream)+PacketSize)
	var p Packetizer
	p.Append(dst, stream[:1]) // first use allocates its small buffer
	allocs := testing.AllocsPerRun(100, func() {
		for off := 0; off < len(stream); off += 1001 {
			dst = p.Append(dst[:0], stream[off:min(off+1001, len(stream))])
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per run of %d bytes, want 0", allocs, len(stream))
	}
}

// clean removes every sync byte that does not start a packet.
func clean(b []byte) []byte {
	for i := range b {
		if i%PacketSize != 0 && b[i] == syncByte {
			b[i] = 0
		}
	}
	return b
}

func numbers(b []byte) []uint32 {
	var n []uint32
	for i := 0; i+PacketSize <= len(b); i += PacketSize {
		n = append(n, binary.BigEndian.Uint32(b[i+1:i+5]))
	}
	return n
}

func BenchmarkPacketizer(b *testing.B) {
	rng := rand.New(rand.NewPCG(11, 12))
	stream := tsPackets(rng, 0, 1000)
	// ffmpeg's writes do not line up with packets; neither do these reads.
	const read = 4000
	dst := make([]byte, 0, read+PacketSize)
	var p Packetizer
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		for off := 0; off < len(stream); off += read {
			dst = p.Append(dst[:0], stream[off:min(off+read, len(stream))])
		}
	}
}
