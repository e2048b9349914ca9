package deb

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// capped fails a read past its budget, so a small compressed member
// cannot unpack to an unbounded stream.
type capped struct {
	r    io.Reader
	left int64
	cap  int64
}

func (c *capped) Read(p []byte) (int, error) {
	if c.cap == 0 {
		c.cap = c.left
	}
	if c.left <= 0 {
		// One byte more than allowed tells "exactly at the cap" from "over".
		var one [1]byte
		n, err := io.ReadFull(c.r, one[:])
		if n > 0 {
			return 0, fmt.Errorf("decompresses to more than %d bytes", c.cap)
		}
		if err == io.ErrUnexpectedEOF || err == nil {
			err = io.EOF
		}
		return 0, err
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}

// noSparse passes a tar stream through unchanged, following its headers,
// and fails at the first sparse entry (GNU type 'S', or PAX GNU.sparse.*
// records). archive/tar expands sparse files itself: a few bytes of map
// would become gigabytes of zeros in the image. No Debian package has
// sparse entries; dpkg refuses them too.
func noSparse(r io.Reader) io.Reader {
	return &tarWatch{r: r, paxSize: -1}
}

type tarWatch struct {
	r   io.Reader
	err error
	// state of the framing
	hdr     [512]byte
	hdrFill int   // bytes of the current header block seen
	body    int64 // bytes of the current entry's body (padded) still to pass
	pax     []byte
	paxLeft int64 // bytes of a PAX body still to collect
	paxSize int64 // size from a PAX "size" record, for the next header; -1 if none
	// paxGlobal marks a global header ('g'): archive/tar applies its
	// records to no entry, so neither may this reader.
	paxGlobal bool
	zeros     int // consecutive zero header blocks
	finished  bool
}

// maxPAX matches archive/tar's own limit on PAX header bodies.
const maxPAX = 1 << 20

func (t *tarWatch) Read(p []byte) (int, error) {
	if t.err != nil {
		return 0, t.err
	}
	n, err := t.r.Read(p)
	if perr := t.scan(p[:n]); perr != nil {
		t.err = perr
		return 0, perr
	}
	return n, err
}

func (t *tarWatch) scan(b []byte) error {
	for len(b) > 0 && !t.finished {
		switch {
		case t.body > 0:
			k := min(int64(len(b)), t.body)
			if t.paxLeft > 0 {
				c := min(k, t.paxLeft)
				t.pax = append(t.pax, b[:c]...)
				t.paxLeft -= c
				if t.paxLeft == 0 {
					if err := t.paxDone(); err != nil {
						return err
					}
				}
			}
			t.body -= k
			b = b[k:]
		default:
			k := copy(t.hdr[t.hdrFill:], b)
			t.hdrFill += k
			b = b[k:]
			if t.hdrFill == len(t.hdr) {
				t.hdrFill = 0
				if err := t.header(); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (t *tarWatch) header() error {
	h := t.hdr[:]
	if bytes.Count(h, []byte{0}) == len(h) {
		t.zeros++
		if t.zeros == 2 {
			t.finished = true // archive/tar stops here too
		}
		return nil
	}
	t.zeros = 0
	typ := h[156]
	size, err := tarNumber(h[124:136])
	if err != nil {
		return fmt.Errorf("tar header %q: size: %w", cstring(h[0:100]), err)
	}
	switch typ {
	case 'S':
		return fmt.Errorf("tar entry %q: sparse file (GNU type 'S'): refused", cstring(h[0:100]))
	case 'x', 'g':
		if size > maxPAX {
			return fmt.Errorf("tar PAX header of %d bytes", size)
		}
		t.pax, t.paxLeft, t.paxGlobal = t.pax[:0], size, typ == 'g'
		if size == 0 {
			if err := t.paxDone(); err != nil {
				return err
			}
		}
	default:
		if typ != 'L' && typ != 'K' && t.paxSize >= 0 {
			size = t.paxSize
		}
		if typ != 'L' && typ != 'K' {
			t.paxSize = -1
		}
		if headerOnly(typ) {
			size = 0
		}
	}
	t.body = (size + 511) &^ 511
	return nil
}

// headerOnly mirrors archive/tar: these types carry no body whatever
// their size field says.
func headerOnly(typ byte) bool {
	switch typ {
	case '1', '2', '3', '4', '5', '6':
		return true
	}
	return false
}

func (t *tarWatch) paxDone() error {
	recs := string(t.pax)
	if strings.Contains(recs, " GNU.sparse.") {
		return errors.New("tar entry with PAX GNU.sparse records: sparse files are refused")
	}
	if t.paxGlobal {
		return nil
	}
	t.paxSize = -1
	for _, line := range strings.Split(recs, "\n") {
		_, kv, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if v, ok := strings.CutPrefix(kv, "size="); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return fmt.Errorf("tar PAX size record %q", v)
			}
			t.paxSize = n
		}
	}
	return nil
}

// tarNumber reads a tar numeric field: octal text, or base-256 when the
// high bit of the first byte is set (GNU, for sizes of 8 GiB and more).
func tarNumber(f []byte) (int64, error) {
	if len(f) > 0 && f[0]&0x80 != 0 {
		if f[0]&0x40 != 0 {
			return 0, errors.New("negative")
		}
		var n int64
		for i, c := range f {
			if i == 0 {
				c &^= 0x80
			}
			if n > (1<<55)-1 {
				return 0, errors.New("too large")
			}
			n = n<<8 | int64(c)
		}
		return n, nil
	}
	s := strings.Trim(string(f), " \x00")
	if s == "" {
		return 0, nil
	}
	return strconv.ParseInt(s, 8, 64)
}

func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// xzCheckSizes is the size of a block's check field by check type.
var xzCheckSizes = [16]int64{0, 4, 4, 4, 8, 8, 8, 16, 16, 16, 32, 32, 32, 64, 64, 64}

// maxXZBlocks bounds the headers checked; dpkg-deb's multithreaded xz
// writes one block per few MiB of input.
const maxXZBlocks = 1 << 16

// checkXZ reads the block positions of a single-stream xz file from its
// index and checks every block header's LZMA2 dictionary against maxDict
// before any decoder allocates one. The blocks and index must fill the
// file exactly (one stream, no padding), and every block but the last
// must state its compressed size, consistent with the index: the decoder
// enforces a stated size, so it then finds each block header exactly where
// it was checked.
func checkXZ(r *io.SectionReader, maxDict int64) error {
	size := r.Size()
	if size < 24 {
		return errors.New("xz: file too short")
	}
	var head, foot [12]byte
	if _, err := r.ReadAt(head[:], 0); err != nil {
		return fmt.Errorf("xz: %w", noEOF(err))
	}
	if _, err := r.ReadAt(foot[:], size-12); err != nil {
		return fmt.Errorf("xz: %w", noEOF(err))
	}
	if string(head[:6]) != "\xfd7zXZ\x00" || string(foot[10:]) != "YZ" {
		return errors.New("xz: not a single xz stream (bad magic at the start or end)")
	}
	if head[6] != 0 || head[7] > 0x0f {
		return fmt.Errorf("xz: unsupported stream flags %#x %#x", head[6], head[7])
	}
	checkSize := xzCheckSizes[head[7]]
	indexSize := (int64(binary.LittleEndian.Uint32(foot[4:8])) + 1) * 4
	indexStart := size - 12 - indexSize
	if indexStart < 12 {
		return errors.New("xz: index larger than the file")
	}
	index := make([]byte, indexSize)
	if _, err := r.ReadAt(index, indexStart); err != nil {
		return fmt.Errorf("xz: index: %w", noEOF(err))
	}
	if index[0] != 0 {
		return errors.New("xz: bad index indicator")
	}
	ir := bytes.NewReader(index[1:])
	count, err := binary.ReadUvarint(ir)
	if err != nil || count > maxXZBlocks {
		return fmt.Errorf("xz: index: %d blocks (%v)", count, err)
	}
	unpadded := make([]int64, count)
	for i := range unpadded {
		u, err1 := binary.ReadUvarint(ir)
		_, err2 := binary.ReadUvarint(ir)
		if err1 != nil || err2 != nil || u > uint64(size) {
			return errors.New("xz: index: bad record")
		}
		unpadded[i] = int64(u)
	}
	pos := int64(12)
	for _, u := range unpadded {
		pos += (u + 3) &^ 3
	}
	if pos != indexStart {
		return fmt.Errorf("xz: blocks and index do not fill the file (blocks end at %d, index starts at %d): not a single stream", pos, indexStart)
	}
	pos = 12
	for i, u := range unpadded {
		if err := checkXZBlock(r, pos, u, checkSize, i == len(unpadded)-1, maxDict); err != nil {
			return fmt.Errorf("xz: block %d: %w", i, err)
		}
		pos += (u + 3) &^ 3
	}
	return nil
}

func checkXZBlock(r *io.SectionReader, pos, unpadded, checkSize int64, last bool, maxDict int64) error {
	var first [1]byte
	if _, err := r.ReadAt(first[:], pos); err != nil {
		return noEOF(err)
	}
	if first[0] == 0 {
		return errors.New("index where a block header belongs")
	}
	hdrLen := (int64(first[0]) + 1) * 4
	hdr := make([]byte, hdrLen)
	if _, err := r.ReadAt(hdr, pos); err != nil {
		return noEOF(err)
	}
	flags := hdr[1]
	if flags&0x3c != 0 {
		return fmt.Errorf("reserved block flags %#x", flags)
	}
	br := bytes.NewReader(hdr[2 : hdrLen-4])
	compressed := int64(-1)
	if flags&0x40 != 0 {
		c, err := binary.ReadUvarint(br)
		if err != nil {
			return errors.New("bad compressed size")
		}
		compressed = int64(c)
	}
	if flags&0x80 != 0 {
		if _, err := binary.ReadUvarint(br); err != nil {
			return errors.New("bad uncompressed size")
		}
	}
	switch {
	case compressed < 0 && !last:
		return errors.New("header states no compressed size, and it is not the last block")
	case compressed >= 0 && hdrLen+compressed+checkSize != unpadded:
		return fmt.Errorf("header says %d compressed bytes, the index %d", compressed, unpadded-hdrLen-checkSize)
	}
	for f := 0; f < int(flags&3)+1; f++ {
		id, err1 := binary.ReadUvarint(br)
		n, err2 := binary.ReadUvarint(br)
		if err1 != nil || err2 != nil || n > uint64(br.Len()) {
			return errors.New("bad filter flags")
		}
		props := make([]byte, n)
		br.Read(props)
		if id != 0x21 { // LZMA2 is the filter with a dictionary
			continue
		}
		if n != 1 || props[0] > 40 {
			return errors.New("bad LZMA2 properties")
		}
		dict := int64(1<<32 - 1)
		if b := props[0]; b < 40 {
			dict = int64(2|b&1) << (b/2 + 11)
		}
		if dict > maxDict {
			return fmt.Errorf("LZMA2 dictionary of %d MiB, over the %d MiB limit", dict>>20, maxDict>>20)
		}
	}
	return nil
}
