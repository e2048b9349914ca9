package rootfs_test

import (
	"archive/tar"
	"io"
	"strings"
	"testing"

	"github.com/pulse-sidecar/pulse-sidecar/internal/deb/debtest"
	"github.com/pulse-sidecar/pulse-sidecar/internal/rootfs"
)

func docFilter(t *testing.T) rootfs.Filter {
	t.Helper()
	keep, err := rootfs.PathFilter(rootfs.DocRules())
	if err != nil {
		t.Fatal(err)
	}
	return keep
}

func TestDocRules(t *testing.T) {
	keep := docFilter(t)
	for p, want := range map[string]bool{
		"usr":                           true,
		"usr/share":                     true,
		"usr/share/doc":                 true, // leads to copyright
		"usr/share/doc/libc6":           true,
		"usr/share/doc/libc6/copyright": true,
		"usr/share/doc/libc6/changelog.Debian.gz": false,
		"usr/share/doc/libc6/examples/copyright":  false,
		"usr/share/doc-base":                      false,
		"usr/share/doc-base/foo":                  false,
		"usr/share/man":                           false,
		"usr/share/man/man1/ls.1.gz":              false,
		"usr/share/info/dir":                      false,
		"usr/share/locale/de/LC_MESSAGES/x.mo":    false,
		"usr/share/lintian/overrides/libc6":       false,
		"usr/share/mandoc":                        true, // "man" matches whole elements only
		"usr/lib/locale/C.utf8/LC_CTYPE":          true,
		"usr/share/pulseaudio/alsa-mixer":         true,
	} {
		if got := keep(p); got != want {
			t.Errorf("keep(%q) = %v, want %v", p, got, want)
		}
	}
}

func TestDocRulesInAddTar(t *testing.T) {
	f := rootfs.New()
	err := f.AddTar("libc6", tarOf(t,
		debtest.Dir("./"), debtest.Dir("./usr/"), debtest.Dir("./usr/share/"), debtest.Dir("./usr/share/doc/"),
		debtest.Dir("./usr/share/doc/libc6/"),
		debtest.File("./usr/share/doc/libc6/copyright", "LGPL"),
		debtest.File("./usr/share/doc/libc6/NEWS.gz", "news"),
		debtest.Dir("./usr/share/man/"), debtest.File("./usr/share/man/ld.so.8.gz", "man"),
	), docFilter(t))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	_ = f.Walk(func(e rootfs.Entry) error { got = append(got, e.Path); return nil })
	want := "usr usr/share usr/share/doc usr/share/doc/libc6 usr/share/doc/libc6/copyright"
	if strings.Join(got, " ") != want {
		t.Errorf("tree = %v, want %s", got, want)
	}
}

func TestPathFilterBadPatterns(t *testing.T) {
	for _, p := range []string{"usr/share", "/usr/**/doc", "/usr/../etc", "/usr/[", "/usr//x"} {
		if _, err := rootfs.PathFilter([]string{p}, nil); err == nil {
			t.Errorf("pattern %q accepted", p)
		}
	}
}

func readFile(t *testing.T, f *rootfs.FS, p string) string {
	t.Helper()
	rc, err := f.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestAddUsers(t *testing.T) {
	f := rootfs.New()
	users := []rootfs.User{
		{Name: "nobody", UID: 65534, GID: 65534, Gecos: "nobody", Home: "/nonexistent"},
		{Name: "pulse", UID: 102, GID: 104, Gecos: "PulseAudio daemon", Home: "/var/run/pulse"},
		{Name: "root", UID: 0, GID: 0, Gecos: "root", Home: "/root"},
	}
	groups := []rootfs.Group{
		{Name: "nogroup", GID: 65534},
		{Name: "audio", GID: 29, Members: []string{"root", "pulse"}},
		{Name: "pulse", GID: 104},
		{Name: "root", GID: 0},
	}
	if err := rootfs.AddUsers(f, users, groups); err != nil {
		t.Fatal(err)
	}
	wantPasswd := "root:x:0:0:root:/root:/usr/sbin/nologin\n" +
		"pulse:x:102:104:PulseAudio daemon:/var/run/pulse:/usr/sbin/nologin\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
	if got := readFile(t, f, "/etc/passwd"); got != wantPasswd {
		t.Errorf("passwd:\n%s\nwant:\n%s", got, wantPasswd)
	}
	wantGroup := "root:x:0:\naudio:x:29:pulse,root\npulse:x:104:\nnogroup:x:65534:\n"
	if got := readFile(t, f, "/etc/group"); got != wantGroup {
		t.Errorf("group:\n%s\nwant:\n%s", got, wantGroup)
	}
	if e, _ := f.Lookup("/etc/passwd"); e.Mode != 0o644 || e.Uid != 0 {
		t.Errorf("passwd entry %+v", e)
	}

	bad := []struct {
		name   string
		users  []rootfs.User
		groups []rootfs.Group
		want   string
	}{
		{"missing group", []rootfs.User{{Name: "pulse", UID: 102, GID: 104}}, nil, "primary gid 104"},
		{"colon", []rootfs.User{{Name: "root", GID: 0, Gecos: "a:b"}}, []rootfs.Group{{Name: "root"}}, "contains ':'"},
		{"bad name", []rootfs.User{{Name: "Root", GID: 0}}, []rootfs.Group{{Name: "root"}}, "only [a-z_]"},
		{"dup uid", []rootfs.User{{Name: "a"}, {Name: "b"}}, []rootfs.Group{{Name: "root"}}, "share uid 0"},
		{"dup gid", nil, []rootfs.Group{{Name: "a"}, {Name: "b"}}, "share gid 0"},
		{"unknown member", nil, []rootfs.Group{{Name: "audio", Members: []string{"ghost"}}}, "member ghost"},
		{"relative home", []rootfs.User{{Name: "root", Home: "root"}}, []rootfs.Group{{Name: "root"}}, "not absolute"},
	}
	for _, c := range bad {
		if err := rootfs.AddUsers(rootfs.New(), c.users, c.groups); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.name, err, c.want)
		}
	}
}

func TestAddDpkgStatus(t *testing.T) {
	f := rootfs.New()
	mustAdd(t, f, "libfoo", debtest.File("./usr/lib/libfoo.so.1", "foo"), debtest.File("./usr/share/doc/libfoo/copyright", "GPL"))
	pkg := debtest.Package{Name: "libfoo", Version: "1.0-1", Extra: "Depends: libc6 (>= 2.36)\n"}
	sums := "0123456789abcdef0123456789abcdef  usr/lib/libfoo.so.1\n" +
		"0123456789abcdef0123456789abcdef  usr/share/doc/libfoo/changelog.gz\n" +
		"0123456789abcdef0123456789abcdef  usr/share/doc/libfoo/copyright\n"
	err := rootfs.AddDpkgStatus(f, []rootfs.StatusEntry{{Package: "libfoo", Control: []byte(pkg.Control()), MD5Sums: []byte(sums)}})
	if err != nil {
		t.Fatal(err)
	}
	want := "Package: libfoo\nStatus: install ok installed\nVersion: 1.0-1\nArchitecture: amd64\n" +
		"Maintainer: Test <test@invalid>\nDepends: libc6 (>= 2.36)\nDescription: test package libfoo\n"
	if got := readFile(t, f, "/var/lib/dpkg/status.d/libfoo"); got != want {
		t.Errorf("status:\n%s\nwant:\n%s", got, want)
	}
	wantSums := "0123456789abcdef0123456789abcdef  usr/lib/libfoo.so.1\n" +
		"0123456789abcdef0123456789abcdef  usr/share/doc/libfoo/copyright\n"
	if got := readFile(t, f, "/var/lib/dpkg/status.d/libfoo.md5sums"); got != wantSums {
		t.Errorf("md5sums:\n%s\nwant:\n%s", got, wantSums)
	}

	for _, c := range []struct {
		entry rootfs.StatusEntry
		want  string
	}{
		{rootfs.StatusEntry{Package: "../x", Control: []byte("Package: ../x\n")}, "bad package name"},
		{rootfs.StatusEntry{Package: "a1", Control: []byte("Package: b1\n")}, `does not start with "Package: a1"`},
		{rootfs.StatusEntry{Package: "a1", Control: []byte("Package: a1\n\nPackage: a2\n")}, "more than one paragraph"},
		{rootfs.StatusEntry{Package: "a1"}, "empty control"},
	} {
		if err := rootfs.AddDpkgStatus(rootfs.New(), []rootfs.StatusEntry{c.entry}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err = %v, want %q", c.entry, err, c.want)
		}
	}
}

func TestAddAlternatives(t *testing.T) {
	f := rootfs.New()
	mustAdd(t, f, "libblas3",
		debtest.File("./usr/lib/x86_64-linux-gnu/blas/libblas.so.3.11.0", "blas"),
		debtest.Symlink("./usr/lib/x86_64-linux-gnu/blas/libblas.so.3", "libblas.so.3.11.0"),
	)
	alt := rootfs.Alternative{
		Link:   "/usr/lib/x86_64-linux-gnu/libblas.so.3",
		Name:   "libblas.so.3-x86_64-linux-gnu",
		Target: "/usr/lib/x86_64-linux-gnu/blas/libblas.so.3",
	}
	if err := rootfs.AddAlternatives(f, []rootfs.Alternative{alt}); err != nil {
		t.Fatal(err)
	}
	if e, _ := f.Lookup(alt.Link); e.Type != tar.TypeSymlink || e.Linkname != "/etc/alternatives/libblas.so.3-x86_64-linux-gnu" {
		t.Errorf("link = %+v", e)
	}
	if e, _ := f.Lookup("/etc/alternatives/libblas.so.3-x86_64-linux-gnu"); e.Type != tar.TypeSymlink || e.Linkname != alt.Target {
		t.Errorf("alternative = %+v", e)
	}
	if e, _ := f.Lookup("/etc/alternatives"); e.Type != tar.TypeDir || e.Mode != 0o755 {
		t.Errorf("/etc/alternatives = %+v", e)
	}

	missing := alt
	missing.Target = "/usr/lib/x86_64-linux-gnu/lapack/liblapack.so.3"
	if err := rootfs.AddAlternatives(f, []rootfs.Alternative{missing}); err == nil || !strings.Contains(err.Error(), "does not exist in the tree") {
		t.Errorf("missing target: %v", err)
	}
	mustAdd(t, f, "loop", debtest.Symlink("./l1", "l2"), debtest.Symlink("./l2", "/l1"), debtest.File("./realfile", "x"))
	loop := alt
	loop.Target = "/l1"
	if err := rootfs.AddAlternatives(f, []rootfs.Alternative{loop}); err == nil || !strings.Contains(err.Error(), "too many levels") {
		t.Errorf("symlink loop: %v", err)
	}
	overFile := alt
	overFile.Link = "/realfile"
	if err := rootfs.AddAlternatives(f, []rootfs.Alternative{overFile}); err == nil || !strings.Contains(err.Error(), "is a file from package loop") {
		t.Errorf("link over a package file: %v", err)
	}
}

func TestCheckModes(t *testing.T) {
	f := rootfs.New()
	mustAdd(t, f, "p", debtest.File("./usr/bin/x", "x"))
	if err := f.AddDir("/tmp", 0o1777, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.AddDir("/container", 0o750, 102, 104); err != nil {
		t.Fatal(err)
	}
	if err := rootfs.CheckModes(f, "/tmp", "/container"); err != nil {
		t.Fatal(err)
	}
	err := rootfs.CheckModes(f, "/tmp")
	if err == nil || !strings.Contains(err.Error(), "/container: owner 102:104") {
		t.Fatalf("err = %v", err)
	}
	if err := f.AddFile("/usr/bin/su", 0o4755, 0, 0, nil); err != nil {
		t.Fatal(err)
	}
	err = rootfs.CheckModes(f, "/tmp", "/container")
	if err == nil || !strings.Contains(err.Error(), "/usr/bin/su: set-id bit") {
		t.Fatalf("err = %v", err)
	}
}
