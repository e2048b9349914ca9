package ogg

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Splitter cuts whole pages out of a byte stream fed in chunks of any size.
// It checks each page's capture pattern, version, flags and CRC; bytes that
// do not form a valid page are skipped (counted by Skipped) and it resyncs on
// the next capture pattern. It also follows the Ogg Opus stream from page to
// page to set Page.Kind and Page.NewStream and to keep the current stream's
// header pages (Headers).
//
// A false capture pattern inside garbage can hold later pages back until as
// many bytes as its header claims (at most MaxPageSize) have arrived and its
// CRC fails; an encoder's output has no garbage, so this costs nothing in
// practice and keeps the splitter simple.
//
// A Splitter is not safe for concurrent use.
type Splitter struct {
	buf     []byte
	off     int
	skipped int64
	follow  follower
}

// Write appends b to the bytes waiting to be split. It never fails.
func (s *Splitter) Write(b []byte) (int, error) {
	if s.off > 0 && s.off >= len(s.buf)/2 {
		s.buf = append(s.buf[:0], s.buf[s.off:]...)
		s.off = 0
	}
	s.buf = append(s.buf, b...)
	return len(b), nil
}

// Next returns the next whole, valid page, or false when more bytes are
// needed for it.
func (s *Splitter) Next() (Page, bool) {
	for {
		b := s.buf[s.off:]
		i := bytes.Index(b, capture[:])
		if i < 0 {
			// Keep what could be the start of a capture pattern.
			keep := min(len(b), len(capture)-1)
			s.skip(len(b) - keep)
			return Page{}, false
		}
		s.skip(i)
		b = b[i:]
		n, err := pageLen(b)
		if err != nil {
			s.skip(1)
			continue
		}
		if n == 0 || len(b) < n {
			return Page{}, false
		}
		if pageCRC(b[:n]) != binary.LittleEndian.Uint32(b[22:]) {
			s.skip(1)
			continue
		}
		p := decode(append([]byte(nil), b[:n]...))
		s.off += n
		s.follow.classify(&p)
		return p, true
	}
}

func (s *Splitter) skip(n int) {
	s.off += n
	s.skipped += int64(n)
}

// Skipped is the number of bytes discarded so far because they were not
// part of a valid page.
func (s *Splitter) Skipped() int64 { return s.skipped }

// Buffered is the number of bytes held for a page not yet complete.
func (s *Splitter) Buffered() int { return len(s.buf) - s.off }

// Headers returns the current Opus stream's header pages (the OpusHead page
// and the OpusTags pages) once all of them have been seen, nil before. These
// are what a listener joining mid-stream needs first.
func (s *Splitter) Headers() []Page { return s.follow.complete() }

// follower tracks which Opus stream the pages belong to.
type follower struct {
	started bool // an OpusHead has been seen
	serial  uint32
	inTags  bool // the comment header is not finished yet
	headers []Page
}

var (
	opusHeadMagic = []byte("OpusHead")
	opusTagsMagic = []byte("OpusTags")
)

func (f *follower) classify(p *Page) {
	switch {
	case p.BOS() && !p.Continued() && bytes.HasPrefix(p.Body(), opusHeadMagic):
		p.Kind = KindOpusHead
		p.NewStream = f.started
		f.started, f.serial, f.inTags = true, p.Serial, true
		f.headers = []Page{*p}
	case !f.started || p.Serial != f.serial:
		p.Kind = KindOther
	case f.inTags:
		p.Kind = KindOpusTags
		if !p.Continued() && !bytes.HasPrefix(p.Body(), opusTagsMagic) {
			// A stream without its comment header: RFC 7845 requires
			// one, but its audio is still audio.
			p.Kind = KindAudio
			f.inTags = false
			return
		}
		f.headers = append(f.headers, *p)
		for _, l := range p.Segments() {
			if l < 255 {
				f.inTags = false
			}
		}
	default:
		p.Kind = KindAudio
	}
}

func (f *follower) complete() []Page {
	if !f.started || f.inTags {
		return nil
	}
	return append([]Page(nil), f.headers...)
}

// Reader reads pages from an io.Reader such as an encoder's stdout. Each
// Next returns as soon as a whole page has arrived, so a page flushed by the
// encoder is never held back waiting for more input.
type Reader struct {
	r   io.Reader
	s   Splitter
	buf []byte
	err error
}

// NewReader returns a Reader of r.
func NewReader(r io.Reader) *Reader {
	return &Reader{r: r, buf: make([]byte, 16<<10)}
}

// Next returns the next valid page. At the end of the input it returns
// io.EOF, or io.ErrUnexpectedEOF when a partial page was left; a read error
// is returned as it is, once the pages read before it have been returned.
func (r *Reader) Next() (Page, error) {
	for {
		if p, ok := r.s.Next(); ok {
			return p, nil
		}
		if r.err != nil {
			if errors.Is(r.err, io.EOF) && r.s.Buffered() >= len(capture) {
				return Page{}, fmt.Errorf("ogg: %d bytes of a partial page at the end: %w", r.s.Buffered(), io.ErrUnexpectedEOF)
			}
			return Page{}, r.err
		}
		n, err := r.r.Read(r.buf)
		r.s.Write(r.buf[:n])
		if err != nil {
			r.err = err
		}
	}
}

// Skipped is the number of bytes discarded so far because they were not
// part of a valid page.
func (r *Reader) Skipped() int64 { return r.s.Skipped() }

// Headers returns the current Opus stream's header pages once complete; see
// Splitter.Headers.
func (r *Reader) Headers() []Page { return r.s.Headers() }

// Packet is one packet reassembled from pages.
type Packet struct {
	Data   []byte
	Serial uint32
	// Granule is the page's granule position for the last packet that
	// ends on a page, NoGranule for the others.
	Granule int64
}

// maxPacket bounds a packet being reassembled across pages, so that a
// broken stream cannot grow it forever; Opus packets are under 64 KiB.
const maxPacket = 1 << 20

// Assembler reassembles packets from consecutive pages of one logical
// stream. A packet whose pages were not all seen (a joiner's first page, a
// sequence gap, a new stream) is dropped, never glued to the wrong data.
type Assembler struct {
	partial []byte
	open    bool // partial holds the start of a packet
	serial  uint32
	seq     uint32
	seen    bool
}

// Push takes the next page and returns the packets completed on it.
func (a *Assembler) Push(p Page) []Packet {
	if !p.Continued() || (a.seen && (p.Serial != a.serial || p.Sequence != a.seq+1)) {
		a.open = false
	}
	a.seen, a.serial, a.seq = true, p.Serial, p.Sequence
	pieces, last := p.Packets()
	var out []Packet
	for i, piece := range pieces {
		if i == 0 && p.Continued() {
			if !a.open {
				if len(pieces) == 1 && !last {
					// The whole page is the middle of a packet
					// whose start was not seen.
					return nil
				}
				continue
			}
			piece = append(a.partial, piece...)
			a.open = false
		}
		if i == len(pieces)-1 && !last {
			if len(piece) > maxPacket {
				a.open = false
				continue
			}
			a.partial = append(a.partial[:0:0], piece...)
			a.open = true
			continue
		}
		out = append(out, Packet{Data: append([]byte(nil), piece...), Serial: p.Serial, Granule: NoGranule})
	}
	// The granule position counts up to the last packet completed on
	// the page (RFC 3533 section 6).
	if len(out) > 0 {
		out[len(out)-1].Granule = p.Granule
	}
	return out
}
