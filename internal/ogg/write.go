package ogg

import (
	"encoding/binary"
	"fmt"
	"io"
)

// PageHeader is what a writer chooses about a page; the lacing table and
// CRC follow from the packets.
type PageHeader struct {
	Flags    byte
	Granule  int64
	Serial   uint32
	Sequence uint32
}

// maxPagePacket is the largest packet one page can hold on its own: 255
// lacing values, the last below 255.
const maxPagePacket = 254*255 + 254

// AppendPage appends one page holding the given whole packets to dst. The
// packets must fit in one page's 255 lacing values; larger data has to be
// split over pages by the caller (Opus packets never need that).
func AppendPage(dst []byte, h PageHeader, packets ...[]byte) ([]byte, error) {
	nseg := 0
	for _, p := range packets {
		nseg += len(p)/255 + 1
	}
	if nseg > maxSegments {
		return dst, fmt.Errorf("ogg page: %d packets need %d lacing values, more than %d", len(packets), nseg, maxSegments)
	}
	start := len(dst)
	dst = append(dst, capture[:]...)
	dst = append(dst, 0, h.Flags)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(h.Granule))
	dst = binary.LittleEndian.AppendUint32(dst, h.Serial)
	dst = binary.LittleEndian.AppendUint32(dst, h.Sequence)
	dst = append(dst, 0, 0, 0, 0, byte(nseg))
	for _, p := range packets {
		for range len(p) / 255 {
			dst = append(dst, 255)
		}
		dst = append(dst, byte(len(p)%255))
	}
	for _, p := range packets {
		dst = append(dst, p...)
	}
	binary.LittleEndian.PutUint32(dst[start+22:], pageCRC(dst[start:]))
	return dst, nil
}

// OpusWriter writes an Ogg Opus stream (RFC 7845): the OpusHead page, the
// OpusTags page, then one page per audio packet, each written to the
// underlying writer as soon as its packet arrives, so a decoder reading a
// pipe gets every packet without waiting for a page to fill. Granule
// positions count 48 kHz samples from the start of the stream, from each
// packet's TOC byte.
//
// An OpusWriter is not safe for concurrent use.
type OpusWriter struct {
	w       io.Writer
	serial  uint32
	seq     uint32
	granule int64
	buf     []byte
	closed  bool
}

// NewOpusWriter writes the two header pages of a stream with the given
// serial number to w and returns a writer for its packets. vendor is the
// OpusTags vendor string.
func NewOpusWriter(w io.Writer, serial uint32, head OpusHead, vendor string) (*OpusWriter, error) {
	hb, err := head.Marshal()
	if err != nil {
		return nil, err
	}
	ow := &OpusWriter{w: w, serial: serial}
	buf, _ := AppendPage(nil, PageHeader{Flags: FlagBOS, Serial: serial, Sequence: 0}, hb)
	// RFC 7845 section 5.2 puts the comment header on a page of its own,
	// with granule position 0.
	buf, err = AppendPage(buf, PageHeader{Serial: serial, Sequence: 1}, OpusTags(vendor))
	if err != nil {
		return nil, err
	}
	ow.seq = 2
	if _, err := w.Write(buf); err != nil {
		return nil, fmt.Errorf("ogg opus headers: %w", err)
	}
	return ow, nil
}

// WritePacket writes one Opus packet as a page of its own. A packet that
// is not a valid Opus packet is refused and nothing is written: the
// granule positions would be wrong from there on.
func (ow *OpusWriter) WritePacket(pkt []byte) error {
	if ow.closed {
		return fmt.Errorf("ogg opus: write after close")
	}
	n, err := PacketSamples(pkt)
	if err != nil {
		return err
	}
	ow.buf, err = AppendPage(ow.buf[:0], PageHeader{Granule: ow.granule + int64(n), Serial: ow.serial, Sequence: ow.seq}, pkt)
	if err != nil {
		return err
	}
	if _, err := ow.w.Write(ow.buf); err != nil {
		return fmt.Errorf("ogg opus page %d: %w", ow.seq, err)
	}
	ow.granule += int64(n)
	ow.seq++
	return nil
}

// Granule is the number of 48 kHz samples written so far, pre-skip
// included.
func (ow *OpusWriter) Granule() int64 { return ow.granule }

// Close ends the stream with an empty page flagged end-of-stream; it does
// not close the underlying writer.
func (ow *OpusWriter) Close() error {
	if ow.closed {
		return nil
	}
	ow.closed = true
	ow.buf, _ = AppendPage(ow.buf[:0], PageHeader{Flags: FlagEOS, Granule: ow.granule, Serial: ow.serial, Sequence: ow.seq})
	if _, err := ow.w.Write(ow.buf); err != nil {
		return fmt.Errorf("ogg opus end of stream: %w", err)
	}
	return nil
}
