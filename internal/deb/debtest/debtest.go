// Package debtest builds synthetic .deb files for tests, hostile ones
// included, so tests of the reader and of the image build need no archive.
package debtest

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Entry is one tar entry. A zero Type means a regular file (a directory if
// Name ends in "/"); a zero Mode means 0644 for files and 0755 otherwise.
type Entry struct {
	Name     string
	Type     byte
	Mode     int64
	Uid, Gid int
	Linkname string
	Body     string
	// PAX records, e.g. SCHILY.xattr.security.capability.
	PAX map[string]string
}

// Dir, File, Symlink and Link are shorthands for the common entries.
func Dir(name string) Entry        { return Entry{Name: name, Type: tar.TypeDir} }
func File(name, body string) Entry { return Entry{Name: name, Body: body} }
func Symlink(name, target string) Entry {
	return Entry{Name: name, Type: tar.TypeSymlink, Linkname: target}
}
func Link(name, target string) Entry { return Entry{Name: name, Type: tar.TypeLink, Linkname: target} }

// Tar returns an uncompressed tar of entries, in the given order.
func Tar(t testing.TB, entries ...Entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		typ := e.Type
		if typ == 0 {
			typ = tar.TypeReg
			if len(e.Name) > 0 && e.Name[len(e.Name)-1] == '/' {
				typ = tar.TypeDir
			}
		}
		mode := e.Mode
		if mode == 0 {
			mode = 0o755
			if typ == tar.TypeReg {
				mode = 0o644
			}
		}
		hdr := &tar.Header{
			Name: e.Name, Typeflag: typ, Mode: mode, Uid: e.Uid, Gid: e.Gid,
			Uname: "root", Gname: "root", Linkname: e.Linkname,
			ModTime: time.Unix(1700000000, 0), PAXRecords: e.PAX,
		}
		if typ == tar.TypeReg {
			hdr.Size = int64(len(e.Body))
		}
		if len(e.PAX) > 0 {
			hdr.Format = tar.FormatPAX
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("debtest: tar header %s: %v", e.Name, err)
		}
		if typ == tar.TypeReg {
			if _, err := io.WriteString(tw, e.Body); err != nil {
				t.Fatalf("debtest: tar body %s: %v", e.Name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatalf("debtest: tar: %v", err)
	}
	return buf.Bytes()
}

// Compress compresses b the way a .deb member named with ext would be:
// "" (none), ".gz", ".xz" or ".zst".
func Compress(t testing.TB, ext string, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w io.WriteCloser
	var err error
	switch ext {
	case "":
		return b
	case ".gz":
		w = gzip.NewWriter(&buf)
	case ".xz":
		w, err = xz.NewWriter(&buf)
	case ".zst":
		w, err = zstd.NewWriter(&buf)
	default:
		t.Fatalf("debtest: unknown compression %q", ext)
	}
	if err != nil {
		t.Fatalf("debtest: %s writer: %v", ext, err)
	}
	if _, err := w.Write(b); err != nil {
		t.Fatalf("debtest: %s: %v", ext, err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("debtest: %s: %v", ext, err)
	}
	return buf.Bytes()
}

// Member is one ar archive member.
type Member struct {
	Name string
	Data []byte
}

// Ar returns a common-format ar archive of members.
func Ar(members ...Member) []byte {
	var buf bytes.Buffer
	buf.WriteString("!<arch>\n")
	for _, m := range members {
		fmt.Fprintf(&buf, "%-16s%-12d%-6d%-6d%-8s%-10d`\n", m.Name, 1700000000, 0, 0, "100644", len(m.Data))
		buf.Write(m.Data)
		if len(m.Data)%2 == 1 {
			buf.WriteByte('\n')
		}
	}
	return buf.Bytes()
}

// Package describes a .deb to build.
type Package struct {
	Name, Version, Arch string // Arch defaults to "amd64"
	Extra               string // more control fields, "Depends: libc6\n"
	MD5Sums             string
	Data                []Entry
	ControlExt, DataExt string // compression of the members: "", ".gz", ".xz", ".zst"
}

// Control returns the package's control file.
func (p Package) Control() string {
	arch := p.Arch
	if arch == "" {
		arch = "amd64"
	}
	return fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: %s\nMaintainer: Test <test@invalid>\n%sDescription: test package %s\n",
		p.Name, p.Version, arch, p.Extra, p.Name)
}

// Deb returns the package as a .deb.
func Deb(t testing.TB, p Package) []byte {
	t.Helper()
	ctl := []Entry{Dir("./"), {Name: "./control", Body: p.Control()}}
	if p.MD5Sums != "" {
		ctl = append(ctl, Entry{Name: "./md5sums", Body: p.MD5Sums})
	}
	return Ar(
		Member{"debian-binary", []byte("2.0\n")},
		Member{"control.tar" + p.ControlExt, Compress(t, p.ControlExt, Tar(t, ctl...))},
		Member{"data.tar" + p.DataExt, Compress(t, p.DataExt, Tar(t, p.Data...))},
	)
}
