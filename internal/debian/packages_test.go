package debian

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/ulikunitz/xz"
)

const twoPackages = `Package: libavcodec59
Source: ffmpeg (7:5.1.6-0+deb12u1)
Version: 7:5.1.6-0+deb12u1+b1
Architecture: amd64
Multi-Arch: same
Priority: optional
Pre-Depends: libc6 (>= 2.34)
Depends: libaom3 (>= 3.2.0),
 libc6 (>= 2.36),
 libdav1d6 (>= 1.0.0)
Description: FFmpeg library
Filename: pool/main/f/ffmpeg/libavcodec59_5.1.6-0+deb12u1+b1_amd64.deb
Size: 5678
SHA256: 0000000000000000000000000000000000000000000000000000000000000001

Package: base-files
Essential: yes
Version: 12.4+deb12u11
Architecture: amd64
Provides: base
Filename: pool/main/b/base-files/base-files_12.4+deb12u11_amd64.deb
Size: 70000
SHA256: 0000000000000000000000000000000000000000000000000000000000000002
`

func TestParsePackages(t *testing.T) {
	// CRLF line ends and extra blank lines must not matter.
	doc := "\n\n" + strings.ReplaceAll(twoPackages, "\n", "\r\n") + "\r\n\r\n"
	pkgs, err := ParsePackages("test", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) != 2 {
		t.Fatalf("%d packages", len(pkgs))
	}
	a := pkgs[0]
	if a.Name != "libavcodec59" || a.Version != "7:5.1.6-0+deb12u1+b1" || a.MultiArch != "same" || a.Size != 5678 {
		t.Errorf("fields: %+v", a)
	}
	if a.Source != "ffmpeg" || a.SourceVersion != "7:5.1.6-0+deb12u1" {
		t.Errorf("source = %q %q", a.Source, a.SourceVersion)
	}
	rels, err := ParseRelations(a.Depends)
	if err != nil || len(rels) != 3 || rels[2][0].Name != "libdav1d6" {
		t.Errorf("folded Depends %q -> %v, %v", a.Depends, rels, err)
	}
	b := pkgs[1]
	if b.Source != "base-files" || b.SourceVersion != "12.4+deb12u11" || !b.Essential || b.Provides != "base" {
		t.Errorf("defaults: %+v", b)
	}
}

func TestParsePackagesErrors(t *testing.T) {
	cases := map[string]string{
		"no Package field":   "Version: 1\n",
		"missing SHA256":     "Package: a\nVersion: 1\nArchitecture: all\nFilename: pool/a\nSize: 1\n",
		"bad Size":           "Package: a\nVersion: 1\nArchitecture: all\nFilename: pool/a\nSize: x\nSHA256: " + strings.Repeat("0", 64) + "\n",
		"short SHA256":       "Package: a\nVersion: 1\nArchitecture: all\nFilename: pool/a\nSize: 1\nSHA256: 00\n",
		"path as SHA256":     "Package: a\nVersion: 1\nArchitecture: all\nFilename: pool/a\nSize: 1\nSHA256: " + strings.Repeat("../", 21) + "x\n",
		"uppercase SHA256":   "Package: a\nVersion: 1\nArchitecture: all\nFilename: pool/a\nSize: 1\nSHA256: " + strings.Repeat("AB", 32) + "\n",
		"not a field":        "Package: a\nnonsense\n",
		"stray continuation": " continued\n",
	}
	for name, doc := range cases {
		_, err := ParsePackages("suite x main/binary-amd64/Packages", []byte(doc))
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if !strings.Contains(err.Error(), "main/binary-amd64/Packages") {
			t.Errorf("%s: error %q does not name the index", name, err)
		}
	}
}

func TestDecompress(t *testing.T) {
	plain := []byte(twoPackages)
	var xzBuf, gzBuf bytes.Buffer
	xw, _ := xz.NewWriter(&xzBuf)
	xw.Write(plain)
	xw.Close()
	gw := gzip.NewWriter(&gzBuf)
	gw.Write(plain)
	gw.Close()
	for name, data := range map[string][]byte{"Packages.xz": xzBuf.Bytes(), "Packages.gz": gzBuf.Bytes(), "Packages": plain} {
		got, err := Decompress(name, data, 1<<20)
		if err != nil || !bytes.Equal(got, plain) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := Decompress("Packages.xz", xzBuf.Bytes(), 10); err == nil {
		t.Error("limit not enforced")
	}
	if _, err := Decompress("Packages.gz", []byte("not gzip"), 1<<20); err == nil || !strings.Contains(err.Error(), "Packages.gz") {
		t.Errorf("corrupt gzip: %v", err)
	}
}

func TestParseParagraphsMultiline(t *testing.T) {
	doc := "A: one\nB:\n two\n three\n# comment\nC: x\n\nA: again\n"
	var got []Paragraph
	err := ParseParagraphs("doc", doc, func(p Paragraph) error {
		got = append(got, append(Paragraph(nil), p...))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Value("b") != "two\n three" || got[0].Value("C") != "x" || got[1].Value("A") != "again" {
		t.Errorf("%q", got)
	}
}

// syntheticIndex builds an index shaped like bookworm's amd64 one: ~60k
// paragraphs of ~20 fields.
func syntheticIndex(n int) []byte {
	var b bytes.Buffer
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "Package: pkg%d\nSource: src%d (1.%d-1)\nVersion: 1.%d-1+b1\nInstalled-Size: 123\nMaintainer: Someone <someone@example.invalid>\nArchitecture: amd64\nMulti-Arch: same\nDepends: libc6 (>= 2.34), libfoo%d (>= 1.0) | libbar, libbaz\nDescription: package number %d\nHomepage: https://example.invalid/\nDescription-md5: 0123456789abcdef0123456789abcdef\nTag: role::shared-lib\nSection: libs\nPriority: optional\nFilename: pool/main/p/pkg%d/pkg%d_1.%d-1+b1_amd64.deb\nSize: %d\nMD5sum: 0123456789abcdef0123456789abcdef\nSHA256: %064d\n\n", i, i, i, i, i, i, i, i, i, 1000+i, i)
	}
	return b.Bytes()
}

func BenchmarkParsePackages(b *testing.B) {
	index := syntheticIndex(60000)
	b.SetBytes(int64(len(index)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		pkgs, err := ParsePackages("bench", index)
		if err != nil || len(pkgs) != 60000 {
			b.Fatal(err, len(pkgs))
		}
	}
}
