package rootfs_test

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pulse-sidecar/pulse-sidecar/internal/deb/debtest"
	"github.com/pulse-sidecar/pulse-sidecar/internal/rootfs"
)

var epoch = time.Unix(1700000000, 0)

func tarOf(t testing.TB, entries ...debtest.Entry) *tar.Reader {
	t.Helper()
	return tar.NewReader(bytes.NewReader(debtest.Tar(t, entries...)))
}

func mustAdd(t testing.TB, f *rootfs.FS, origin string, entries ...debtest.Entry) {
	t.Helper()
	if err := f.AddTar(origin, tarOf(t, entries...), nil); err != nil {
		t.Fatal(err)
	}
}

// readBack is a parsed WriteTar output entry with the content.
type readBack struct {
	hdr  *tar.Header
	body string
}

func writeAndRead(t testing.TB, f *rootfs.FS) ([]byte, []readBack) {
	t.Helper()
	var buf bytes.Buffer
	if err := f.WriteTar(&buf, epoch); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(bytes.NewReader(buf.Bytes()))
	var out []readBack
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, readBack{h, string(b)})
	}
	return buf.Bytes(), out
}

func TestAddTarNormalises(t *testing.T) {
	f := rootfs.New()
	mustAdd(t, f, "pkg",
		debtest.Dir("./"),
		debtest.Dir("./usr/"),
		debtest.Dir("./usr/bin/"),
		debtest.Entry{Name: "./usr/bin/su", Mode: 0o4755, Body: "su"},
		debtest.Entry{Name: "./usr/bin/wall", Mode: 0o2755, Gid: 5, Body: "wall"},
		debtest.Entry{Name: "./usr/share/world", Mode: 0o666, Body: "w"},
		debtest.Entry{Name: "./usr/share/owned", Uid: 1000, Gid: 1000, Body: "o"},
		debtest.Entry{Name: "./usr/bin/ping", Body: "ping", PAX: map[string]string{"SCHILY.xattr.security.capability": "\x01"}},
		debtest.Entry{Name: "./tmp/", Type: tar.TypeDir, Mode: 0o1777},
	)
	for p, want := range map[string]fs.FileMode{
		"usr/bin/su": 0o755, "usr/bin/wall": 0o755, "usr/share/world": 0o644, "usr/share/owned": 0o644, "tmp": 0o755,
	} {
		e, ok := f.Lookup("/" + p)
		if !ok {
			t.Fatalf("%s missing", p)
		}
		if e.Mode != want || e.Uid != 0 || e.Gid != 0 || e.Origin != "pkg" {
			t.Errorf("%s: mode %v owner %d:%d origin %q, want %v 0:0 pkg", p, e.Mode, e.Uid, e.Gid, e.Origin, want)
		}
	}
	var got []string
	for _, fx := range f.Fixups() {
		got = append(got, fx.Path+": "+fx.Change)
	}
	want := []string{
		"tmp: group/other write removed (mode 0777)",
		"tmp: sticky bit dropped",
		"usr/bin/ping: extended attribute security.capability dropped",
		"usr/bin/su: setuid bit dropped",
		"usr/bin/wall: owner 0:5 forced to 0:0",
		"usr/bin/wall: setgid bit dropped",
		"usr/share/owned: owner 1000:1000 forced to 0:0",
		"usr/share/world: group/other write removed (mode 0666)",
	}
	if !slices.Equal(got, want) {
		t.Errorf("fixups:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Implicit parents (usr/share, tmp's root) are created root-owned 0755.
	if e, ok := f.Lookup("usr/share"); !ok || e.Type != tar.TypeDir || e.Mode != 0o755 {
		t.Errorf("usr/share = %+v", e)
	}
}

func TestAddTarRejectsHostilePayloads(t *testing.T) {
	cases := []struct {
		name    string
		entries []debtest.Entry
		want    string
	}{
		{"dotdot", []debtest.Entry{debtest.File("../etc/x", "x")}, `"../etc/x" has a ".." component`},
		{"dot slash dotdot", []debtest.Entry{debtest.File("./../x", "x")}, `".." component`},
		{"inner dotdot", []debtest.Entry{debtest.File("./usr/../../x", "x")}, `".." component`},
		{"absolute", []debtest.Entry{debtest.File("/etc/passwd", "x")}, `absolute path "/etc/passwd"`},
		{"write through symlink", []debtest.Entry{
			debtest.Dir("./usr/lib/"), debtest.Symlink("./usr/lib/evil", "/etc"), debtest.File("./usr/lib/evil/passwd", "root::0:0"),
		}, "usr/lib/evil/passwd: parent usr/lib/evil is a symlink (-> /etc, from package evil)"},
		{"write through relative symlink", []debtest.Entry{
			debtest.Symlink("./x", "../../.."), debtest.Dir("./x/y/"),
		}, "parent x is a symlink"},
		{"hard link outside", []debtest.Entry{debtest.Link("./usr/x", "../../etc/shadow")}, `hard link target: path "../../etc/shadow" has a ".." component`},
		{"hard link absolute", []debtest.Entry{debtest.Link("./usr/x", "/etc/shadow")}, "absolute path"},
		{"hard link not yet seen", []debtest.Entry{debtest.Link("./usr/a", "./usr/b"), debtest.File("./usr/b", "b")}, "usr/a: hard link to ./usr/b, which is not an earlier file in the tree"},
		{"hard link to dir", []debtest.Entry{debtest.Dir("./usr/"), debtest.Link("./x", "./usr")}, "which is a directory"},
		{"hard link to symlink", []debtest.Entry{debtest.Symlink("./s", "t"), debtest.Link("./x", "./s")}, "which is a symlink"},
		{"char device", []debtest.Entry{{Name: "./dev/mem", Type: tar.TypeChar}}, "./dev/mem: device node"},
		{"block device", []debtest.Entry{{Name: "./dev/sda", Type: tar.TypeBlock}}, "./dev/sda: device node"},
		{"fifo", []debtest.Entry{{Name: "./run/fifo", Type: tar.TypeFifo}}, "./run/fifo: FIFO not allowed"},
		{"file then dir", []debtest.Entry{debtest.File("./a", "a"), debtest.Dir("./a/")}, "a: is a directory here but a file there"},
		{"file under file", []debtest.Entry{debtest.File("./a", "a"), debtest.File("./a/b", "b")}, "parent a is not a directory"},
		{"root as file", []debtest.Entry{{Name: ".", Type: tar.TypeReg}}, "root must be a directory"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := rootfs.New().AddTar("evil", tarOf(t, c.entries...), nil)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "package evil: ") {
				t.Fatalf("err = %v\nwant it to start with \"package evil: \" and mention %q", err, c.want)
			}
		})
	}
}

func TestAddTarTruncatedPayload(t *testing.T) {
	raw := debtest.Tar(t, debtest.File("./big", strings.Repeat("x", 5000)))
	err := rootfs.New().AddTar("cut", tar.NewReader(bytes.NewReader(raw[:2048])), nil)
	if err == nil || !strings.Contains(err.Error(), "package cut: big: reading content: unexpected EOF") {
		t.Fatalf("err = %v", err)
	}
}

func TestAddTarSizeLimit(t *testing.T) {
	err := rootfs.New(rootfs.WithMaxFileSize(10)).AddTar("fat", tarOf(t, debtest.File("./f", "more than ten bytes")), nil)
	if err == nil || !strings.Contains(err.Error(), "size 19 outside 0..10") {
		t.Fatalf("err = %v", err)
	}
}

func TestPackagesConflict(t *testing.T) {
	cases := []struct {
		name string
		a, b []debtest.Entry
		want string // "" means both packages add cleanly
	}{
		{"different content", []debtest.Entry{debtest.File("./etc/x", "a")}, []debtest.Entry{debtest.File("./etc/x", "b")},
			"package pkg-b: etc/x: content differs (also provided by package pkg-a)"},
		{"identical content", []debtest.Entry{debtest.File("./etc/x", "a")}, []debtest.Entry{debtest.File("./etc/x", "a")}, ""},
		{"different mode", []debtest.Entry{debtest.File("./etc/x", "a")}, []debtest.Entry{{Name: "./etc/x", Body: "a", Mode: 0o755}},
			"mode 0755 differs from 0644"},
		{"dirs merge", []debtest.Entry{debtest.Dir("./usr/"), debtest.File("./usr/a", "a")}, []debtest.Entry{debtest.Dir("./usr/"), debtest.File("./usr/b", "b")}, ""},
		{"dir modes differ", []debtest.Entry{{Name: "./var/x/", Mode: 0o700}}, []debtest.Entry{debtest.Dir("./var/x/")},
			"directory mode 0755 differs from 0700"},
		{"file vs symlink", []debtest.Entry{debtest.File("./lib/x", "a")}, []debtest.Entry{debtest.Symlink("./lib/x", "y")},
			"lib/x: is a symlink here but a file there (also provided by package pkg-a)"},
		{"symlinks differ", []debtest.Entry{debtest.Symlink("./lib/x", "y")}, []debtest.Entry{debtest.Symlink("./lib/x", "z")},
			"symlink to z differs from symlink to y"},
		{"same symlink", []debtest.Entry{debtest.Symlink("./lib/x", "y")}, []debtest.Entry{debtest.Symlink("./lib/x", "y")}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := rootfs.New()
			mustAdd(t, f, "pkg-a", c.a...)
			err := f.AddTar("pkg-b", tarOf(t, c.b...), nil)
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
}

// packages used for order-independence: shared directories, an identical
// file in two packages, hard links in both directions of the sort order,
// an implicit parent that a later package declares, symlinks, long names.
func determinismPackages(t testing.TB) map[string][]debtest.Entry {
	long := "./usr/share/" + strings.Repeat("very-long-directory-name/", 8) + "file"
	return map[string][]debtest.Entry{
		"libfoo": {
			debtest.Dir("./"), debtest.Dir("./usr/"), debtest.Dir("./usr/lib/"),
			debtest.File("./usr/lib/libfoo.so.1.2", "foo"),
			debtest.Symlink("./usr/lib/libfoo.so.1", "libfoo.so.1.2"),
			debtest.File("./usr/share/doc/libfoo/copyright", "GPL"),
			debtest.File("./usr/share/common", "same in two packages"),
		},
		"tools": {
			debtest.Dir("./usr/"), debtest.Dir("./usr/bin/"),
			debtest.File("./usr/bin/zz-tool", "tool"),
			debtest.Link("./usr/bin/aa-tool", "./usr/bin/zz-tool"), // link sorts first
			debtest.File("./usr/bin/m-tool", "m"),
			debtest.Link("./usr/bin/n-tool", "./usr/bin/m-tool"),
			debtest.File("./usr/share/common", "same in two packages"),
			debtest.File(long, "deep"),
		},
		"data": {
			debtest.Dir("./usr/"), debtest.Dir("./usr/share/"), debtest.Dir("./usr/share/doc/"),
			{Name: "./usr/share/doc/libfoo/", Type: tar.TypeDir, Mode: 0o755},
			debtest.File("./usr/share/doc/data/copyright", "MIT"),
			debtest.Symlink("./usr/share/"+strings.Repeat("l", 120), "/"+strings.Repeat("t", 150)),
		},
	}
}

func permutations(s []string) [][]string {
	if len(s) <= 1 {
		return [][]string{slices.Clone(s)}
	}
	var out [][]string
	for i := range s {
		rest := append(slices.Clone(s[:i]), s[i+1:]...)
		for _, p := range permutations(rest) {
			out = append(out, append([]string{s[i]}, p...))
		}
	}
	return out
}

func TestWriteTarOrderIndependent(t *testing.T) {
	pkgs := determinismPackages(t)
	var first []byte
	for _, order := range permutations([]string{"libfoo", "tools", "data"}) {
		f := rootfs.New()
		for _, name := range order {
			mustAdd(t, f, name, pkgs[name]...)
		}
		if err := f.AddDir("/tmp", 0o1777, 0, 0); err != nil {
			t.Fatal(err)
		}
		out, _ := writeAndRead(t, f)
		if first == nil {
			first = out
			continue
		}
		if !bytes.Equal(out, first) {
			t.Fatalf("order %v gives different bytes", order)
		}
		var origins []string
		_ = f.Walk(func(e rootfs.Entry) error {
			origins = append(origins, e.Path+"="+e.Origin)
			return nil
		})
		if !slices.Contains(origins, "usr/share/common=libfoo") || !slices.Contains(origins, "usr/share/doc/libfoo=data") {
			t.Errorf("order %v: origins not order-independent: %v", order, origins)
		}
	}
}

func TestWriteTarFormat(t *testing.T) {
	f := rootfs.New()
	for name, entries := range determinismPackages(t) {
		mustAdd(t, f, name, entries...)
	}
	if err := f.AddDir("/container", 0o750, 102, 104); err != nil {
		t.Fatal(err)
	}
	_, out := writeAndRead(t, f)
	var names []string
	byName := map[string]readBack{}
	for _, r := range out {
		h := r.hdr
		names = append(names, strings.TrimSuffix(h.Name, "/"))
		byName[h.Name] = r
		if !h.ModTime.Equal(epoch) || !h.AccessTime.IsZero() || !h.ChangeTime.IsZero() {
			t.Errorf("%s: times %v %v %v", h.Name, h.ModTime, h.AccessTime, h.ChangeTime)
		}
		if h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: uname %q gname %q", h.Name, h.Uname, h.Gname)
		}
		if strings.HasPrefix(h.Name, "/") || strings.HasPrefix(h.Name, "./") {
			t.Errorf("%s: not a relative clean name", h.Name)
		}
		if (h.Typeflag == tar.TypeDir) != strings.HasSuffix(h.Name, "/") {
			t.Errorf("%s: directory names end in / and only they do", h.Name)
		}
		for k := range h.PAXRecords {
			if k != "path" && k != "linkpath" {
				t.Errorf("%s: unexpected PAX record %s", h.Name, k)
			}
		}
		if len(h.Xattrs) > 0 { //nolint:staticcheck // checking the deprecated field too
			t.Errorf("%s: xattrs", h.Name)
		}
		if h.Name != "container/" && (h.Uid != 0 || h.Gid != 0) {
			t.Errorf("%s: owner %d:%d", h.Name, h.Uid, h.Gid)
		}
	}
	if !slices.IsSorted(names) {
		t.Errorf("names not sorted: %v", names)
	}
	seen := map[string]bool{}
	for _, r := range out {
		if r.hdr.Typeflag == tar.TypeLink && !seen[r.hdr.Linkname] {
			t.Errorf("hard link %s precedes its target %s", r.hdr.Name, r.hdr.Linkname)
		}
		seen[r.hdr.Name] = true
	}
	// aa-tool sorts before zz-tool, so it carries the content.
	if r := byName["usr/bin/aa-tool"]; r.hdr == nil || r.hdr.Typeflag != tar.TypeReg || r.body != "tool" {
		t.Errorf("aa-tool = %+v", r)
	}
	if r := byName["usr/bin/zz-tool"]; r.hdr == nil || r.hdr.Typeflag != tar.TypeLink || r.hdr.Linkname != "usr/bin/aa-tool" {
		t.Errorf("zz-tool = %+v", r)
	}
	if r := byName["container/"]; r.hdr == nil || r.hdr.Mode != 0o750 || r.hdr.Uid != 102 || r.hdr.Gid != 104 {
		t.Errorf("container = %+v", r.hdr)
	}
	// Walk reports what WriteTar writes.
	var walked []string
	if err := f.Walk(func(e rootfs.Entry) error {
		walked = append(walked, fmt.Sprintf("%s %c %s", e.Path, e.Type, e.Linkname))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var written []string
	for _, r := range out {
		written = append(written, fmt.Sprintf("%s %c %s", strings.TrimSuffix(r.hdr.Name, "/"), r.hdr.Typeflag, r.hdr.Linkname))
	}
	if !slices.Equal(walked, written) {
		t.Errorf("Walk and WriteTar disagree:\n%v\n%v", walked, written)
	}
}

func TestHardLinkSurvivesRemovalOfFirst(t *testing.T) {
	f := rootfs.New()
	mustAdd(t, f, "p", debtest.File("./b", "content"), debtest.Link("./a", "./b"), debtest.Link("./c", "./b"))
	if e, _ := f.Lookup("c"); e.Type != tar.TypeLink || e.Linkname != "a" {
		t.Errorf("c = %+v", e)
	}
	f.Remove("a")
	_, out := writeAndRead(t, f)
	if len(out) != 2 || out[0].hdr.Name != "b" || out[0].body != "content" || out[1].hdr.Linkname != "b" {
		t.Errorf("after removing a: %+v", out)
	}
}

func TestIdenticalFileBecomesLinkWhateverTheOrder(t *testing.T) {
	a := []debtest.Entry{debtest.File("./x", "same"), debtest.Link("./y", "./x")}
	b := []debtest.Entry{debtest.File("./x", "same"), debtest.File("./y", "same")}
	f1, f2 := rootfs.New(), rootfs.New()
	mustAdd(t, f1, "a", a...)
	mustAdd(t, f1, "b", b...)
	mustAdd(t, f2, "b", b...)
	mustAdd(t, f2, "a", a...)
	o1, _ := writeAndRead(t, f1)
	o2, _ := writeAndRead(t, f2)
	if !bytes.Equal(o1, o2) {
		t.Fatal("hard link outcome depends on package order")
	}
}

func TestGeneratedEntries(t *testing.T) {
	f := rootfs.New()
	mustAdd(t, f, "base-files", debtest.Entry{Name: "./tmp/", Type: tar.TypeDir, Mode: 0o1777}, debtest.File("./etc/motd", "hi"))
	if err := f.AddDir("/tmp", 0o1777, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.AddFile("/etc/motd", 0o600, 0, 0, []byte("replaced")); err != nil {
		t.Fatal(err)
	}
	if err := f.AddSymlink("/etc/localtime", "/usr/share/zoneinfo/UTC"); err != nil {
		t.Fatal(err)
	}
	if err := f.AddFile("/etc/localtime/x", 0o644, 0, 0, nil); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Errorf("writing through a generated symlink: %v", err)
	}
	if err := f.AddFile("/tmp", 0o644, 0, 0, nil); err != nil {
		t.Errorf("replacing an empty directory: %v", err)
	}
	if err := f.AddDir("/tmp", 0o1777, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.AddFile("/a/b/c", 0o644, 0, 0, nil); err != nil {
		t.Fatal(err)
	}
	if err := f.AddFile("/a", 0o644, 0, 0, nil); err == nil {
		t.Error("replacing a non-empty directory with a file succeeded")
	}
	e, _ := f.Lookup("tmp")
	if e.Mode != 0o777|fs.ModeSticky || e.Origin != "" {
		t.Errorf("tmp = %+v", e)
	}
	if e, _ := f.Lookup("etc/motd"); e.Mode != 0o600 || e.Size != 8 {
		t.Errorf("motd = %+v", e)
	}
	_, out := writeAndRead(t, f)
	for _, r := range out {
		if r.hdr.Name == "tmp/" && r.hdr.Mode != 0o1777 {
			t.Errorf("tmp/ written with mode %o", r.hdr.Mode)
		}
	}
	f.Remove("/a")
	if _, ok := f.Lookup("a/b/c"); ok {
		t.Error("Remove left children")
	}
}

func TestSpillDirGivesSameBytes(t *testing.T) {
	mem, disk := rootfs.New(), rootfs.New(rootfs.WithSpillDir(t.TempDir()))
	for _, f := range []*rootfs.FS{mem, disk} {
		for _, name := range []string{"libfoo", "tools", "data"} {
			mustAdd(t, f, name, determinismPackages(t)[name]...)
		}
		if err := f.AddFile("etc/x", 0o644, 0, 0, []byte("generated")); err != nil {
			t.Fatal(err)
		}
	}
	a, _ := writeAndRead(t, mem)
	b, _ := writeAndRead(t, disk)
	if !bytes.Equal(a, b) {
		t.Fatal("spilled tree writes different bytes")
	}
}

// BenchmarkWriteTar writes a tree shaped like the image's: ~20k entries,
// mostly small files, some large ones.
func BenchmarkWriteTar(b *testing.B) {
	f := rootfs.New()
	var total int64
	for i := 0; i < 20000; i++ {
		dir := fmt.Sprintf("usr/lib/x86_64-linux-gnu/pkg%03d", i%300)
		size := 2000 + (i%7)*1500
		if i%1000 == 0 {
			size = 4 << 20
		}
		content := bytes.Repeat([]byte{byte(i), byte(i >> 8)}, size/2)
		if err := f.AddFile(fmt.Sprintf("%s/file%05d.so", dir, i), 0o644, 0, 0, content); err != nil {
			b.Fatal(err)
		}
		total += int64(len(content))
	}
	b.SetBytes(total)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := f.WriteTar(io.Discard, epoch); err != nil {
			b.Fatal(err)
		}
	}
}

func TestParallelReadPayload(t *testing.T) {
	pkgs := determinismPackages(t)
	serial := rootfs.New()
	for _, name := range []string{"data", "libfoo", "tools"} {
		mustAdd(t, serial, name, pkgs[name]...)
	}
	want, _ := writeAndRead(t, serial)

	f := rootfs.New()
	names := []string{"tools", "libfoo", "data"}
	payloads := make([]*rootfs.Payload, len(names))
	errs := make([]error, len(names))
	done := make(chan int)
	for i, name := range names {
		tr := tarOf(t, pkgs[name]...) // t.Fatal belongs to the test goroutine
		go func() {
			payloads[i], errs[i] = f.ReadPayload(name, tr, nil)
			done <- i
		}()
	}
	for range names {
		<-done
	}
	for i := range names {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if err := f.AddPayload(payloads[i]); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := writeAndRead(t, f)
	if !bytes.Equal(got, want) {
		t.Fatal("parallel reading changes the output")
	}
}

// TestHardLinkGroupsOrderIndependent: package a links y to x, package b
// ships an identical y and links z to it. Whatever the order, the groups
// meet at y, so x, y and z end up as one set of links.
func TestHardLinkGroupsOrderIndependent(t *testing.T) {
	a := []debtest.Entry{debtest.File("./x", "same"), debtest.Link("./y", "./x")}
	b := []debtest.Entry{debtest.File("./y", "same"), debtest.Link("./z", "./y")}
	f1, f2 := rootfs.New(), rootfs.New()
	mustAdd(t, f1, "a", a...)
	mustAdd(t, f1, "b", b...)
	mustAdd(t, f2, "b", b...)
	mustAdd(t, f2, "a", a...)
	o1, out := writeAndRead(t, f1)
	o2, _ := writeAndRead(t, f2)
	if !bytes.Equal(o1, o2) {
		t.Fatal("hard link groups depend on package order")
	}
	if len(out) != 3 || out[0].body != "same" || out[1].hdr.Linkname != "x" || out[2].hdr.Linkname != "x" {
		t.Errorf("want x with y and z linked to it, got %+v", out)
	}
}

// TestIdenticalFilesStaySeparate: equal content at paths no package links
// is two files, not a link, in either order.
func TestIdenticalFilesStaySeparate(t *testing.T) {
	a := []debtest.Entry{debtest.File("./x", "same")}
	b := []debtest.Entry{debtest.File("./y", "same"), debtest.Link("./z", "./y")}
	for _, order := range [][]string{{"a", "b"}, {"b", "a"}} {
		f := rootfs.New()
		for _, name := range order {
			mustAdd(t, f, name, map[string][]debtest.Entry{"a": a, "b": b}[name]...)
		}
		if e, _ := f.Lookup("x"); e.Type != tar.TypeReg {
			t.Errorf("order %v: x = %+v, want a separate file", order, e)
		}
		if e, _ := f.Lookup("z"); e.Type != tar.TypeLink || e.Linkname != "y" {
			t.Errorf("order %v: z = %+v, want a link to y", order, e)
		}
	}
}

// TestHardLinkToOtherPackageRefused: a link may only point into its own
// package, so a link to a file only another package ships fails whichever
// package comes first.
func TestHardLinkToOtherPackageRefused(t *testing.T) {
	owner := []debtest.Entry{debtest.Dir("./usr/"), debtest.File("./usr/x", "content")}
	linker := []debtest.Entry{debtest.Dir("./usr/"), debtest.Link("./usr/y", "./usr/x")}
	for _, ownerFirst := range []bool{true, false} {
		f := rootfs.New()
		if ownerFirst {
			mustAdd(t, f, "owner", owner...)
		}
		err := f.AddTar("linker", tarOf(t, linker...), nil)
		if err == nil {
			t.Fatalf("owner first=%v: link to another package's file accepted", ownerFirst)
		}
		for _, want := range []string{"package linker: ", "usr/y", "./usr/x", "same payload"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("owner first=%v: error %q should mention %q", ownerFirst, err, want)
			}
		}
	}
}

// TestHardLinkChainInPayload: GNU tar links to the first path, but a link
// to an earlier link is the same file and is accepted.
func TestHardLinkChainInPayload(t *testing.T) {
	f := rootfs.New()
	mustAdd(t, f, "p", debtest.File("./a", "c"), debtest.Link("./b", "./a"), debtest.Link("./c", "./b"))
	if e, _ := f.Lookup("c"); e.Type != tar.TypeLink || e.Linkname != "a" {
		t.Errorf("c = %+v", e)
	}
}

// TestWriteTarPartSplitsHardLinkGroups: the group {x, y, z} of
// TestHardLinkGroupsOrderIndependent, with a's and b's entries in different
// layers. Each layer unpacks alone (overlay snapshotters extract each into
// its own directory), so each must hold the content of its paths and link
// only to its own earlier entries; applied in either order the two give
// every path its content.
func TestWriteTarPartSplitsHardLinkGroups(t *testing.T) {
	f := rootfs.New()
	mustAdd(t, f, "a", debtest.Dir("./usr/"), debtest.File("./usr/x", "same"), debtest.Link("./usr/y", "./usr/x"))
	mustAdd(t, f, "b", debtest.Dir("./usr/"), debtest.File("./usr/y", "same"), debtest.Link("./usr/z", "./usr/y"), debtest.File("./usr/only-b", "b"))
	part := func(origin string) []readBack {
		var buf bytes.Buffer
		if err := f.WriteTarPart(&buf, epoch, func(e rootfs.Entry) bool { return e.Origin == origin }); err != nil {
			t.Fatal(err)
		}
		var out []readBack
		seen := map[string]bool{}
		tr := tar.NewReader(&buf)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				return out
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Typeflag == tar.TypeLink && !seen[h.Linkname] {
				t.Errorf("layer %s: %s links to %s, not an earlier entry of the same layer", origin, h.Name, h.Linkname)
			}
			seen[h.Name] = true
			b, _ := io.ReadAll(tr)
			out = append(out, readBack{h, string(b)})
		}
	}
	names := func(rs []readBack) string {
		var s []string
		for _, r := range rs {
			s = append(s, r.hdr.Name+"="+string(r.hdr.Typeflag)+r.hdr.Linkname+":"+r.body)
		}
		return strings.Join(s, " ")
	}
	// y is shipped by both; it belongs to a, the first by name.
	if got, want := names(part("a")), "usr/=5: usr/x=0:same usr/y=1usr/x:"; got != want {
		t.Errorf("layer a: %s, want %s", got, want)
	}
	if got, want := names(part("b")), "usr/=5: usr/only-b=0:b usr/z=0:same"; got != want {
		t.Errorf("layer b: %s, want %s", got, want)
	}
}
