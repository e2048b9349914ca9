package debian_test

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/pulse-sidecar/pulse-sidecar/internal/debian"
	"github.com/pulse-sidecar/pulse-sidecar/internal/debian/debtest"
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
				deb, err := debian.ReadDeb(bytes.NewReader(debtest.Deb(t, pkg)), func(tr *tar.Reader) error {
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
	deb, err := debian.ReadDeb(bytes.NewReader(raw), nil)
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
	_, err := debian.ReadDeb(bytes.NewReader(raw), func(*tar.Reader) error { return boom })
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
			_, err := debian.ReadDeb(bytes.NewReader(c.raw), func(tr *tar.Reader) error {
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
	_, err := debian.ReadDeb(bytes.NewReader(raw[:len(raw)-3000]), func(*tar.Reader) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("err = %v", err)
	}
}
