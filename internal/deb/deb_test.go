package deb_test

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"testing"

	"github.com/pulse-sidecar/pulse-sidecar/internal/deb"
	"github.com/pulse-sidecar/pulse-sidecar/internal/deb/debtest"
)

func names(t *testing.T, tr *tar.Reader) []string {
	t.Helper()
	var out []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, h.Name+"="+string(b))
	}
}

func TestReadDebCompressions(t *testing.T) {
	for _, ctlExt := range []string{"", ".gz", ".xz", ".zst"} {
		for _, dataExt := range []string{"", ".gz", ".xz", ".zst"} {
			t.Run("control.tar"+ctlExt+"+data.tar"+dataExt, func(t *testing.T) {
				pkg := debtest.Package{
					Name: "hello", Version: "1.0-1", MD5Sums: "d41d8cd98f00b204e9800998ecf8427e  usr/bin/hello\n",
					Data:       []debtest.Entry{debtest.Dir("./"), debtest.Dir("./usr/"), debtest.File("./usr/bin/hello", "hi")},
					ControlExt: ctlExt, DataExt: dataExt,
				}
				var got []string
				deb, err := read(debtest.Deb(t, pkg), func(tr *tar.Reader) error {
					got = names(t, tr)
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				if string(deb.Control) != pkg.Control() {
					t.Errorf("control = %q", deb.Control)
				}
				if string(deb.ControlFiles["md5sums"]) != pkg.MD5Sums {
					t.Errorf("md5sums = %q", deb.ControlFiles["md5sums"])
				}
				want := []string{"./=", "./usr/=", "./usr/bin/hello=hi"}
				if strings.Join(got, ",") != strings.Join(want, ",") {
					t.Errorf("data = %q, want %q", got, want)
				}
			})
		}
	}
}

func TestReadDebNilDataSkipsPayload(t *testing.T) {
	raw := debtest.Deb(t, debtest.Package{Name: "a", Version: "1", DataExt: ".xz", Data: []debtest.Entry{debtest.File("./x", "x")}})
	deb, err := read(raw, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(deb.Control), "Package: a\n") {
		t.Errorf("control = %q", deb.Control)
	}
}

func TestReadDebDataErrorNamesMember(t *testing.T) {
	raw := debtest.Deb(t, debtest.Package{Name: "a", Version: "1", DataExt: ".zst", Data: []debtest.Entry{debtest.File("./x", "x")}})
	boom := errors.New("boom")
	_, err := read(raw, func(*tar.Reader) error { return boom })
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), `"data.tar.zst"`) {
		t.Fatalf("err = %v", err)
	}
}

func TestReadDebRejects(t *testing.T) {
	good := debtest.Package{Name: "a", Version: "1", DataExt: ".gz", ControlExt: ".xz",
		Data: []debtest.Entry{debtest.File("./usr/share/a", strings.Repeat("payload ", 4000))}}
	goodRaw := debtest.Deb(t, good)
	ctl := debtest.Compress(t, ".gz", debtest.Tar(t, debtest.Entry{Name: "./control", Body: good.Control()}))
	data := debtest.Compress(t, ".gz", debtest.Tar(t, debtest.File("./x", "x")))
	ver := debtest.Member{Name: "debian-binary", Data: []byte("2.0\n")}

	cases := []struct {
		name string
		raw  []byte
		want string
	}{
		{"empty file", nil, "not a .deb"},
		{"not a deb", []byte("#!/bin/sh\necho this is a shell script, not a package\n"), "no ar magic"},
		{"empty ar", debtest.Ar(), "empty ar archive"},
		{"truncated header", goodRaw[:8+30], "truncated"},
		{"truncated in control", goodRaw[:8+60+4+60+20], "truncated"},
		{"truncated in data", goodRaw[:len(goodRaw)-40], "data.tar.gz"},
		{"version 3", debtest.Ar(debtest.Member{Name: "debian-binary", Data: []byte("3.0\n")}), "unsupported format version"},
		{"no debian-binary first", debtest.Ar(debtest.Member{Name: "control.tar.gz", Data: ctl}), "first member must be debian-binary"},
		{"no data", debtest.Ar(ver, debtest.Member{Name: "control.tar.gz", Data: ctl}), "no data.tar"},
		{"no control", debtest.Ar(ver), "no control.tar"},
		{"data before control", debtest.Ar(ver, debtest.Member{Name: "data.tar.gz", Data: data}, debtest.Member{Name: "control.tar.gz", Data: ctl}), "data archive before control"},
		{"bzip2", debtest.Ar(ver, debtest.Member{Name: "control.tar.bz2", Data: ctl}), "unsupported compression"},
		{"garbage compressed", debtest.Ar(ver, debtest.Member{Name: "control.tar.xz", Data: []byte("not xz at all")}), `"control.tar.xz"`},
		{"unknown member", debtest.Ar(ver, debtest.Member{Name: "evil", Data: nil}), `unknown member`},
		{"control missing control file", debtest.Ar(ver, debtest.Member{Name: "control.tar", Data: debtest.Tar(t, debtest.File("./md5sums", ""))}, debtest.Member{Name: "data.tar.gz", Data: data}), "no control file"},
		{"control traversal", debtest.Ar(ver, debtest.Member{Name: "control.tar", Data: debtest.Tar(t, debtest.File("./../control", ""))}), "unexpected entry"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := read(c.raw, func(tr *tar.Reader) error {
				for {
					if _, err := tr.Next(); err != nil {
						if err == io.EOF {
							return nil
						}
						return err
					}
				}
			})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to mention %q", err, c.want)
			}
			t.Log(err)
		})
	}
}

// TestReadDebTruncatedWhenCallerStopsEarly checks that a payload reader that
// stops early does not hide a cut-off file.
func TestReadDebTruncatedWhenCallerStopsEarly(t *testing.T) {
	raw := debtest.Deb(t, debtest.Package{Name: "a", Version: "1", Data: []debtest.Entry{debtest.File("./x", strings.Repeat("x", 10000))}})
	_, err := read(raw[:len(raw)-3000], func(*tar.Reader) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("err = %v", err)
	}
}

func read(raw []byte, data func(*tar.Reader) error) (*deb.Deb, error) {
	return deb.Read(bytes.NewReader(raw), int64(len(raw)), deb.DefaultLimits, data)
}

func drain(tr *tar.Reader) error {
	for {
		if _, err := tr.Next(); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		if _, err := io.Copy(io.Discard, tr); err != nil {
			return err
		}
	}
}

// withMember rebuilds a .deb whose data member is replaced.
func withData(t *testing.T, name string, data []byte) []byte {
	t.Helper()
	p := debtest.Package{Name: "evil", Version: "1"}
	ctl := debtest.Compress(t, ".gz", debtest.Tar(t, debtest.Entry{Name: "./control", Body: p.Control()}))
	return debtest.Ar(
		debtest.Member{Name: "debian-binary", Data: []byte("2.0\n")},
		debtest.Member{Name: "control.tar.gz", Data: ctl},
		debtest.Member{Name: name, Data: data},
	)
}

// fixTarChecksum recomputes a ustar header block's checksum after a test
// edited it.
func fixTarChecksum(h []byte) {
	copy(h[148:156], "        ")
	sum := 0
	for _, c := range h[:512] {
		sum += int(c)
	}
	copy(h[148:156], fmt.Sprintf("%06o\x00 ", sum))
}

// xzWithDict patches the LZMA2 dictionary byte of the first block header
// of an xz file (and the header's CRC32), as a hostile file would claim
// 4 GiB with a few bytes.
func xzWithDict(t *testing.T, x []byte, dictByte byte) []byte {
	t.Helper()
	x = append([]byte(nil), x...)
	hdrLen := (int(x[12]) + 1) * 4
	hdr := x[12 : 12+hdrLen]
	i := bytes.Index(hdr, []byte{0x21, 0x01}) // LZMA2 filter id, one property byte
	if i < 0 {
		t.Fatal("no LZMA2 filter in the block header")
	}
	hdr[i+2] = dictByte
	binary.LittleEndian.PutUint32(hdr[hdrLen-4:], crc32.ChecksumIEEE(hdr[:hdrLen-4]))
	return x
}

func TestReadDebHostile(t *testing.T) {
	payload := debtest.Tar(t, debtest.File("./x", "x"))
	zeros := debtest.Tar(t, debtest.File("./zeros", string(make([]byte, 3<<20))))
	regular := debtest.Tar(t, debtest.File("./s", "sparse?"))
	gnuSparse := append([]byte(nil), regular...)
	gnuSparse[156] = 'S'
	fixTarChecksum(gnuSparse)
	paxSparse := debtest.Tar(t, debtest.Entry{Name: "./s", Body: "x", PAX: map[string]string{"GNU.spars3.major": "1", "GNU.spars3.minor": "0"}})
	paxSparse = bytes.ReplaceAll(paxSparse, []byte("GNU.spars3."), []byte("GNU.sparse."))
	xzPayload := debtest.Compress(t, ".xz", payload)
	small := deb.Limits{ControlTar: 1 << 20, Data: 1 << 20, Dictionary: 1 << 20}

	cases := []struct {
		name   string
		raw    []byte
		limits deb.Limits
		want   string
	}{
		{"xz claims a 4 GiB dictionary", withData(t, "data.tar.xz", xzWithDict(t, xzPayload, 40)), deb.DefaultLimits, "dictionary"},
		{"xz dictionary over the limit", withData(t, "data.tar.xz", xzPayload), small, "LZMA2 dictionary of 8 MiB"},
		{"two xz streams", withData(t, "data.tar.xz", append(append([]byte(nil), xzPayload...), xzWithDict(t, xzPayload, 40)...)), deb.DefaultLimits, "single stream"},
		{"zstd window over the limit", withData(t, "data.tar.zst", debtest.Compress(t, ".zst", zeros)), small, "window"},
		{"gzip bomb", withData(t, "data.tar.gz", debtest.Compress(t, ".gz", zeros)), small, "more than 1048576 bytes"},
		{"uncompressed over the limit", withData(t, "data.tar", zeros), small, "more than 1048576 bytes"},
		{"GNU sparse entry", withData(t, "data.tar", gnuSparse), deb.DefaultLimits, "sparse"},
		// After a body of zeros, which must not be mistaken for the end.
		{"GNU sparse entry after zeros", withData(t, "data.tar", append(append([]byte(nil), zeros[:len(zeros)-1024]...), gnuSparse...)), deb.DefaultLimits, "sparse"},
		{"PAX sparse entry", withData(t, "data.tar.gz", debtest.Compress(t, ".gz", paxSparse)), deb.DefaultLimits, "sparse"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := deb.Read(bytes.NewReader(c.raw), int64(len(c.raw)), c.limits, drain)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to mention %q", err, c.want)
			}
			t.Log(err)
		})
	}
	// The same members within the limits read fine: the checks refuse
	// what is hostile, not the formats. PAX records (a long name, an
	// extended attribute) and hard links must not trip the sparse check.
	long := "./usr/share/" + strings.Repeat("long-directory-name/", 8) + "file"
	paxTar := debtest.Tar(t,
		debtest.Entry{Name: long, Body: strings.Repeat("p", 1000)},
		debtest.Entry{Name: "./usr/bin/ping", Body: "elf", PAX: map[string]string{"SCHILY.xattr.security.capability": "\x01\x00\x00\x02"}},
		debtest.Link("./usr/bin/ping6", "./usr/bin/ping"),
		debtest.File("./after", "after"),
	)
	var seen []string
	if _, err := read(withData(t, "data.tar.xz", debtest.Compress(t, ".xz", paxTar)), func(tr *tar.Reader) error {
		seen = names(t, tr)
		return nil
	}); err != nil || len(seen) != 4 || seen[3] != "./after=after" {
		t.Errorf("PAX entries: %v, %v", seen, err)
	}
	for _, ext := range []string{".xz", ".zst", ".gz", ""} {
		raw := withData(t, "data.tar"+ext, debtest.Compress(t, ext, zeros))
		if _, err := read(raw, drain); err != nil {
			t.Errorf("data.tar%s within the default limits: %v", ext, err)
		}
	}
}

// TestReadDebExactlyAtTheLimit: a payload of exactly the cap is fine, one
// byte more is not.
func TestReadDebExactlyAtTheLimit(t *testing.T) {
	body := debtest.Tar(t, debtest.File("./x", strings.Repeat("x", 5000)))
	lim := deb.Limits{ControlTar: 1 << 20, Data: int64(len(body)), Dictionary: 8 << 20}
	raw := withData(t, "data.tar.gz", debtest.Compress(t, ".gz", body))
	read := func(lim deb.Limits) error {
		_, err := deb.Read(bytes.NewReader(raw), int64(len(raw)), lim, drain)
		return err
	}
	if err := read(lim); err != nil {
		t.Errorf("at the limit: %v", err)
	}
	lim.Data--
	if err := read(lim); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("one byte over: %v", err)
	}
}
