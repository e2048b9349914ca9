package ogg

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Header type flags of a page (RFC 3533 section 6).
const (
	FlagContinued byte = 0x01 // the first packet continues one from the previous page
	FlagBOS       byte = 0x02 // first page of a logical stream
	FlagEOS       byte = 0x04 // last page of a logical stream
)

const (
	headerSize  = 27
	maxSegments = 255
	// MaxPageSize is the largest possible page: header, a full segment
	// table and 255 segments of 255 bytes.
	MaxPageSize = headerSize + maxSegments + maxSegments*255
	// NoGranule is the granule position of a page on which no packet ends.
	NoGranule int64 = -1
)

var capture = [4]byte{'O', 'g', 'g', 'S'}

// Kind says what a page carries in an Ogg Opus stream.
type Kind int

const (
	// KindOther is a page that is not part of an Opus stream this reader
	// follows: another codec, a page before any OpusHead, a stray page.
	KindOther Kind = iota
	// KindOpusHead is the first page of an Ogg Opus stream (BOS, OpusHead).
	KindOpusHead
	// KindOpusTags is a page of the comment header, which follows OpusHead
	// and may span pages.
	KindOpusTags
	// KindAudio is a page of audio packets.
	KindAudio
)

func (k Kind) String() string {
	switch k {
	case KindOther:
		return "other"
	case KindOpusHead:
		return "OpusHead"
	case KindOpusTags:
		return "OpusTags"
	case KindAudio:
		return "audio"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Page is one Ogg page. Raw is the page exactly as it was read or written,
// header and body, and the other fields are decoded from it; Raw is the
// page's own copy, so it may be kept and sent on as it is.
type Page struct {
	Raw      []byte
	Flags    byte
	Granule  int64 // NoGranule when no packet ends on this page
	Serial   uint32
	Sequence uint32

	// Kind and NewStream are set by a Splitter or Reader, which follow the
	// stream from page to page; they are zero on a page from ParsePage.
	Kind Kind
	// NewStream marks the OpusHead page of a stream that follows another
	// one in the same byte stream (a chained stream: the encoder
	// restarted); decoders must be reset and given the new headers.
	NewStream bool
}

// BOS reports whether this is the first page of its logical stream.
func (p Page) BOS() bool { return p.Flags&FlagBOS != 0 }

// EOS reports whether this is the last page of its logical stream.
func (p Page) EOS() bool { return p.Flags&FlagEOS != 0 }

// Continued reports whether the page's first packet began on an earlier page.
func (p Page) Continued() bool { return p.Flags&FlagContinued != 0 }

// Segments is the page's lacing table.
func (p Page) Segments() []byte {
	n := int(p.Raw[26])
	return p.Raw[headerSize : headerSize+n]
}

// Body is the page's packet data.
func (p Page) Body() []byte { return p.Raw[headerSize+int(p.Raw[26]):] }

// Packets splits the body along the lacing table. The first piece continues
// a packet from the previous page when Continued() is true; the last piece
// is unfinished (continues on the next page) when last is false.
func (p Page) Packets() (pieces [][]byte, last bool) {
	body := p.Body()
	start, size := 0, 0
	last = true
	for i, l := range p.Segments() {
		size += int(l)
		if l < 255 {
			pieces = append(pieces, body[start:start+size])
			start += size
			size = 0
			continue
		}
		if i == len(p.Segments())-1 {
			pieces = append(pieces, body[start:start+size])
			last = false
		}
	}
	return pieces, last
}

// Errors a page can fail with, wrapped with detail.
var (
	ErrCapture = errors.New("no OggS capture pattern")
	ErrVersion = errors.New("unsupported stream structure version")
	ErrFlags   = errors.New("reserved header type bits set")
	ErrCRC     = errors.New("CRC mismatch")
	ErrShort   = errors.New("page truncated")
)

// pageLen returns the length of the page at the start of b after checking
// its fixed header, or 0 with a nil error when b is too short to tell.
func pageLen(b []byte) (int, error) {
	if len(b) < headerSize {
		if len(b) >= 4 && [4]byte(b[:4]) != capture {
			return 0, ErrCapture
		}
		return 0, nil
	}
	if [4]byte(b[:4]) != capture {
		return 0, ErrCapture
	}
	if b[4] != 0 {
		return 0, fmt.Errorf("%w %d", ErrVersion, b[4])
	}
	if b[5]&^(FlagContinued|FlagBOS|FlagEOS) != 0 {
		return 0, fmt.Errorf("%w: %#02x", ErrFlags, b[5])
	}
	n := int(b[26])
	if len(b) < headerSize+n {
		return 0, nil
	}
	size := headerSize + n
	for _, l := range b[headerSize : headerSize+n] {
		size += int(l)
	}
	return size, nil
}

// ParsePage decodes and checks the single page that b holds entirely. The
// Page keeps its own copy of b.
func ParsePage(b []byte) (Page, error) {
	n, err := pageLen(b)
	if err != nil {
		return Page{}, fmt.Errorf("ogg page: %w", err)
	}
	if n == 0 || len(b) < n {
		return Page{}, fmt.Errorf("ogg page: %w: have %d bytes", ErrShort, len(b))
	}
	if len(b) > n {
		return Page{}, fmt.Errorf("ogg page: %d bytes after the page's %d", len(b)-n, n)
	}
	if got, want := pageCRC(b), binary.LittleEndian.Uint32(b[22:]); got != want {
		return Page{}, fmt.Errorf("ogg page: %w: computed %#08x, stored %#08x", ErrCRC, got, want)
	}
	return decode(append([]byte(nil), b...)), nil
}

// decode reads the fields of a checked page; raw becomes Page.Raw.
func decode(raw []byte) Page {
	return Page{
		Raw:      raw,
		Flags:    raw[5],
		Granule:  int64(binary.LittleEndian.Uint64(raw[6:])),
		Serial:   binary.LittleEndian.Uint32(raw[14:]),
		Sequence: binary.LittleEndian.Uint32(raw[18:]),
	}
}

// crcTable is CRC-32 with the generator polynomial 0x04c11db7, MSB first,
// no reflection: Ogg's checksum, which is not the zlib/IEEE one that Go's
// hash/crc32 computes (that one is bit-reflected).
var crcTable = func() (t [256]uint32) {
	for i := range t {
		r := uint32(i) << 24
		for range 8 {
			if r&0x80000000 != 0 {
				r = r<<1 ^ 0x04c11db7
			} else {
				r <<= 1
			}
		}
		t[i] = r
	}
	return t
}()

// pageCRC computes the checksum of a whole page with its CRC field taken as
// zero, initial value 0 and no final XOR.
func pageCRC(page []byte) uint32 {
	var crc uint32
	for i, b := range page {
		if i >= 22 && i < 26 {
			b = 0
		}
		crc = crc<<8 ^ crcTable[byte(crc>>24)^b]
	}
	return crc
}
