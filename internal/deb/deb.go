package deb

import (
	"archive/tar"
	"bufio"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Deb is the control part of a binary package. The data part is never kept:
// Read streams it to its caller, so a 100 MB library package costs no
// memory here.
type Deb struct {
	// Control is the "control" member of control.tar: the package's own
	// deb822 paragraph, byte for byte.
	Control []byte
	// ControlFiles holds every regular file of control.tar by base name
	// ("control", "md5sums", "conffiles", "postinst", ...). Maintainer
	// scripts are kept only so callers can report what they skip.
	ControlFiles map[string][]byte
}

// Limits bound what one package may cost to read, so a hostile file
// (one that got past its digest check, or is read unverified) cannot
// exhaust memory or disk.
type Limits struct {
	// ControlTar caps the decompressed control.tar.
	ControlTar int64
	// Data caps the decompressed data.tar: the total bytes one package
	// may unpack.
	Data int64
	// Dictionary caps the xz dictionary and the zstd window, each of
	// which the decoder allocates up front as the header demands.
	Dictionary int64
}

// DefaultLimits are far above Debian 12's packages (the largest data.tar
// in the image unpacks to ~100 MiB; dpkg-deb compresses with xz -6, an 8
// MiB dictionary) and far below what would hurt the build machine.
var DefaultLimits = Limits{ControlTar: 64 << 20, Data: 2 << 30, Dictionary: 64 << 20}

// Limits that keep a hostile package from exhausting memory. Real control
// archives are a few KiB; the largest md5sums in Debian 12 is a few MiB.
const (
	maxControlFile = 32 << 20 // one member of control.tar
	arMagic        = "!<arch>\n"
	arHeaderLen    = 60
)

// Read parses a .deb of size bytes (an ar archive): "debian-binary" must
// say 2.x, then control.tar[.gz|.xz|.zst] is read fully and
// data.tar[.gz|.xz|.zst] is decompressed and handed to data as a tar
// stream. data may be nil to skip the payload (reading only the metadata).
// Errors name the member at fault; the caller adds the file or package
// name. Sparse tar entries are refused, and decompression is bounded by
// lim.
//
// Read parses whatever it is given: callers with a pinned digest check the
// bytes first, as the build does, so only the pinned file reaches the
// decompressors. The whole archive is
// consumed, so a truncated file is reported even when data stops reading
// early.
func Read(r io.ReaderAt, size int64, lim Limits, data func(tr *tar.Reader) error) (*Deb, error) {
	br := bufio.NewReaderSize(io.NewSectionReader(r, 0, size), 64<<10)
	magic := make([]byte, len(arMagic))
	if _, err := io.ReadFull(br, magic); err != nil {
		return nil, fmt.Errorf("not a .deb: reading ar magic: %w", noEOF(err))
	}
	if string(magic) != arMagic {
		return nil, fmt.Errorf("not a .deb: no ar magic (starts with %q)", magic)
	}
	ar := &arReader{r: br, at: r, pos: int64(len(arMagic)), total: size}

	var deb *Deb
	sawVersion, sawData := false, false
	for {
		name, err := ar.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		switch {
		case !sawVersion:
			// dpkg insists on this order: the format version comes first so
			// a future incompatible format is refused before anything else.
			if name != "debian-binary" {
				return nil, fmt.Errorf("ar member %q: first member must be debian-binary", name)
			}
			if err := checkDebianBinary(ar); err != nil {
				return nil, err
			}
			sawVersion = true
		case strings.HasPrefix(name, "control.tar"):
			if deb != nil {
				return nil, fmt.Errorf("ar member %q: second control archive", name)
			}
			if sawData {
				return nil, fmt.Errorf("ar member %q: control archive after data archive", name)
			}
			deb, err = readControl(name, ar, lim)
			if err != nil {
				return nil, err
			}
		case strings.HasPrefix(name, "data.tar"):
			if deb == nil {
				return nil, fmt.Errorf("ar member %q: data archive before control archive", name)
			}
			if sawData {
				return nil, fmt.Errorf("ar member %q: second data archive", name)
			}
			sawData = true
			if data != nil {
				if err := streamData(name, ar, lim, data); err != nil {
					return nil, err
				}
			}
		case strings.HasPrefix(name, "_"):
			// Reserved for signatures and other add-ons (deb(5)); skipped.
		default:
			return nil, fmt.Errorf("ar member %q: unknown member in a .deb", name)
		}
		// Whatever the member's reader left unread is skipped here, so a
		// short member still shows up as truncation.
		if err := ar.skip(); err != nil {
			return nil, err
		}
	}
	switch {
	case !sawVersion:
		return nil, errors.New("not a .deb: empty ar archive")
	case deb == nil:
		return nil, errors.New("no control.tar member")
	case !sawData:
		return nil, errors.New("no data.tar member")
	}
	return deb, nil
}

func checkDebianBinary(ar *arReader) error {
	b, err := io.ReadAll(io.LimitReader(ar, 64))
	if err != nil {
		return fmt.Errorf("ar member \"debian-binary\": %w", err)
	}
	v := strings.TrimSpace(string(b))
	if !strings.HasPrefix(v, "2.") {
		return fmt.Errorf("ar member \"debian-binary\": unsupported format version %q (want 2.x)", v)
	}
	return nil
}

func readControl(name string, ar *arReader, lim Limits) (*Deb, error) {
	dr, closeFn, err := decompressor(name, ar, lim)
	if err != nil {
		return nil, fmt.Errorf("ar member %q: %w", name, err)
	}
	defer closeFn()
	limited := &capped{r: dr, left: lim.ControlTar}
	tr := tar.NewReader(noSparse(limited))
	deb := &Deb{ControlFiles: map[string][]byte{}}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("ar member %q: %w", name, noEOF(err))
		}
		if hdr.Typeflag != tar.TypeReg {
			continue // "./" and the odd directory carry nothing we need
		}
		base := path.Clean(strings.TrimPrefix(hdr.Name, "./"))
		if strings.Contains(base, "/") || base == "." || base == ".." {
			return nil, fmt.Errorf("ar member %q: unexpected entry %q", name, hdr.Name)
		}
		if hdr.Size > maxControlFile {
			return nil, fmt.Errorf("ar member %q: %s is %d bytes, over the %d limit", name, base, hdr.Size, maxControlFile)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return nil, fmt.Errorf("ar member %q: reading %s: %w", name, base, noEOF(err))
		}
		if _, dup := deb.ControlFiles[base]; dup {
			return nil, fmt.Errorf("ar member %q: %s appears twice", name, base)
		}
		deb.ControlFiles[base] = b
	}
	ctl, ok := deb.ControlFiles["control"]
	if !ok {
		return nil, fmt.Errorf("ar member %q: no control file", name)
	}
	deb.Control = ctl
	return deb, nil
}

func streamData(name string, ar *arReader, lim Limits, fn func(*tar.Reader) error) error {
	dr, closeFn, err := decompressor(name, ar, lim)
	if err != nil {
		return fmt.Errorf("ar member %q: %w", name, err)
	}
	defer closeFn()
	if err := fn(tar.NewReader(noSparse(&capped{r: dr, left: lim.Data}))); err != nil {
		return fmt.Errorf("ar member %q: %w", name, noEOF(err))
	}
	return nil
}

// decompressor picks the decoder from the member name's suffix, as dpkg does.
// closeFn releases decoder resources (zstd keeps buffers until closed).
// Decoders that allocate what their header asks for are held to
// lim.Dictionary before they start; gzip's window is fixed at 32 KiB.
func decompressor(name string, r *arReader, lim Limits) (io.Reader, func(), error) {
	nop := func() {}
	switch path.Ext(name) {
	case ".tar":
		return r, nop, nil
	case ".gz":
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, noEOF(err) // already says "gzip: ..."

		}
		return zr, func() { zr.Close() }, nil
	case ".xz":
		// ulikunitz/xz allocates whatever dictionary a block header
		// names (ReaderConfig.DictCap is a minimum, not a cap), so every
		// block header is checked first, through the random access the
		// member's bytes allow.
		if err := checkXZ(io.NewSectionReader(r.at, r.start, r.size), lim.Dictionary); err != nil {
			return nil, nil, err
		}
		zr, err := xz.ReaderConfig{SingleStream: true}.NewReader(r)
		if err != nil {
			return nil, nil, noEOF(err) // already says "xz: ..."

		}
		return zr, nop, nil
	case ".zst":
		// One decoder goroutine is enough: a .deb is read sequentially and
		// the build already decodes several packages in parallel.
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxWindow(uint64(lim.Dictionary)))
		if err != nil {
			return nil, nil, fmt.Errorf("zstd: %w", err)
		}
		return zr, zr.Close, nil
	default:
		return nil, nil, fmt.Errorf("unsupported compression %q", path.Ext(name))
	}
}

// noEOF turns a bare io.EOF into io.ErrUnexpectedEOF: inside an archive,
// running out of bytes always means the file was cut short.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// arReader walks the members of a common-format ar archive. It is an
// io.Reader over the current member's bytes.
type arReader struct {
	r      *bufio.Reader
	at     io.ReaderAt // the same bytes, for decoders that need to look ahead
	pos    int64       // offset of r's next byte
	total  int64       // size of the whole archive
	name   string
	start  int64 // offset of the current member's data
	size   int64 // the current member's size
	remain int64 // unread bytes of the current member
	pad    bool  // members are 2-byte aligned
}

// next skips to the next member's header and returns its name, or io.EOF at
// the clean end of the archive.
func (a *arReader) next() (string, error) {
	if err := a.skip(); err != nil {
		return "", err
	}
	if a.pad {
		if _, err := a.r.Discard(1); err != nil {
			return "", fmt.Errorf("ar member %q: padding: %w", a.name, noEOF(err))
		}
		a.pos++
		a.pad = false
	}
	var hdr [arHeaderLen]byte
	n, err := io.ReadFull(a.r, hdr[:])
	a.pos += int64(n)
	if err == io.EOF {
		return "", io.EOF
	}
	if err != nil {
		return "", fmt.Errorf("ar header after %s: truncated (%d of %d bytes)", a.where(), n, arHeaderLen)
	}
	if string(hdr[58:60]) != "`\n" {
		return "", fmt.Errorf("ar header after %s: bad terminator %q", a.where(), hdr[58:60])
	}
	// GNU ar appends "/" to names; dpkg accepts both spellings.
	name := strings.TrimSuffix(strings.TrimRight(string(hdr[0:16]), " "), "/")
	size, err := strconv.ParseInt(strings.TrimRight(string(hdr[48:58]), " "), 10, 64)
	if err != nil || size < 0 {
		return "", fmt.Errorf("ar member %q: bad size field %q", name, hdr[48:58])
	}
	if name == "" || strings.ContainsAny(name, "/\x00") {
		return "", fmt.Errorf("ar header after %s: bad name %q", a.where(), hdr[0:16])
	}
	a.name, a.remain, a.pad = name, size, size%2 == 1
	a.start, a.size = a.pos, size
	if missing := a.start + size - a.total; missing > 0 {
		return "", fmt.Errorf("ar member %q: truncated, %d bytes missing: %w", name, missing, io.ErrUnexpectedEOF)
	}
	return name, nil
}

// where names the position for errors about the next header.
func (a *arReader) where() string {
	if a.name == "" {
		return "the magic"
	}
	return fmt.Sprintf("member %q", a.name)
}

func (a *arReader) Read(p []byte) (int, error) {
	if a.remain <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > a.remain {
		p = p[:a.remain]
	}
	n, err := a.r.Read(p)
	a.remain -= int64(n)
	a.pos += int64(n)
	if err == io.EOF && a.remain > 0 {
		// The member name is added by whoever wraps this reader's errors.
		return n, fmt.Errorf("truncated, %d bytes missing: %w", a.remain, io.ErrUnexpectedEOF)
	}
	if err == io.EOF {
		err = nil
	}
	return n, err
}

// skip discards the rest of the current member.
func (a *arReader) skip() error {
	if a.remain <= 0 {
		return nil
	}
	n, err := a.r.Discard(int(a.remain))
	a.remain -= int64(n)
	a.pos += int64(n)
	if err != nil {
		return fmt.Errorf("ar member %q: truncated, %d bytes missing: %w", a.name, a.remain, io.ErrUnexpectedEOF)
	}
	return nil
}
