package debian

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// pkg is shorthand for a test package; the fields a lock needs are filled
// in so the resolver sees what a real index holds.
func pkg(name, version, arch string, fields ...string) Package {
	p := Package{
		Name: name, Version: version, Architecture: arch,
		Filename: fmt.Sprintf("pool/main/%c/%s/%s_%s_%s.deb", name[0], name, name, version, arch),
		Size:     1, SHA256: strings.Repeat("0", 64),
		Source: name, SourceVersion: version,
	}
	for i := 0; i+1 < len(fields); i += 2 {
		switch v := fields[i+1]; fields[i] {
		case "Depends":
			p.Depends = v
		case "Pre-Depends":
			p.PreDepends = v
		case "Provides":
			p.Provides = v
		case "Multi-Arch":
			p.MultiArch = v
		case "Priority":
			p.Priority = v
		default:
			panic("unknown test field " + fields[i])
		}
	}
	return p
}

func names(cs []*Candidate) string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name+"="+c.Version)
	}
	return strings.Join(out, " ")
}

func universe(t *testing.T, arch string, idx ...Index) *Universe {
	t.Helper()
	u, err := NewUniverse(arch, idx)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestResolveClosure(t *testing.T) {
	main := Index{Archive: "debian", Suite: "bookworm", Packages: []Package{
		pkg("app", "1.0", "amd64", "Pre-Depends", "libc6 (>= 2.34)", "Depends", "missing-pkg | libalt, mailer, libvers (>= 2), python3:any, data, libarm [arm64], libnot [!amd64]"),
		pkg("libc6", "2.36-9+deb12u1", "amd64", "Multi-Arch", "same"),
		pkg("libalt", "1", "amd64", "Depends", "libc6"),
		pkg("libalt2", "1", "amd64"),
		// Two providers of a virtual package: apt prefers the higher Priority.
		pkg("zmailer", "1", "amd64", "Provides", "mailer", "Priority", "standard"),
		pkg("amailer", "1", "amd64", "Provides", "mailer", "Priority", "optional"),
		// The real libvers is too old; a versioned Provides satisfies it.
		pkg("libvers", "1", "amd64"),
		pkg("libvers-ng", "3", "amd64", "Provides", "libvers (= 2.5)"),
		pkg("python3", "3.11", "amd64", "Multi-Arch", "allowed"),
		pkg("data", "1", "all", "Multi-Arch", "foreign", "Depends", "libalt2 | libalt"),
		pkg("libarm", "1", "arm64"),
		pkg("libnot", "1", "amd64"),
		pkg("unrelated", "1", "amd64"),
	}}
	security := Index{Archive: "debian-security", Suite: "bookworm-security", Packages: []Package{
		pkg("libc6", "2.36-9+deb12u4", "amd64", "Multi-Arch", "same"),
		// Older than bookworm's: must not win.
		pkg("libalt", "0.9", "amd64"),
	}}
	u := universe(t, "amd64", main, security)
	got, err := u.Resolve([]string{"app"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := "app=1.0 data=1 libalt=1 libc6=2.36-9+deb12u4 libvers-ng=3 python3=3.11 zmailer=1"
	if names(got) != want {
		t.Errorf("closure\n got %s\nwant %s", names(got), want)
	}
	for _, c := range got {
		if c.Name == "libc6" && (c.Archive != "debian-security" || c.Suite != "bookworm-security") {
			t.Errorf("libc6 from %s/%s", c.Archive, c.Suite)
		}
		if c.Name == "libalt" && c.Suite != "bookworm" {
			t.Errorf("libalt from %s", c.Suite)
		}
	}
}

func TestResolveAlternativePrefersSelected(t *testing.T) {
	// root depends on "a | b" after something already pulled in b: apt
	// keeps b instead of adding a.
	u := universe(t, "amd64", Index{Suite: "s", Packages: []Package{
		pkg("root", "1", "amd64", "Depends", "x, a | b"),
		pkg("x", "1", "amd64", "Depends", "b"),
		pkg("a", "1", "amd64"),
		pkg("b", "1", "amd64"),
	}})
	got, err := u.Resolve([]string{"root"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if names(got) != "b=1 root=1 x=1" {
		t.Errorf("closure %s", names(got))
	}
}

func TestResolveArm64AndArchAll(t *testing.T) {
	idx := Index{Suite: "s", Packages: []Package{
		pkg("root", "1", "amd64", "Depends", "common, libx86 [amd64]"),
		pkg("root", "1", "arm64", "Depends", "common, libarm [arm64]"),
		pkg("common", "1", "all"),
		pkg("libx86", "1", "amd64"),
		pkg("libarm", "1", "arm64"),
	}}
	for arch, want := range map[string]string{"amd64": "common=1 libx86=1 root=1", "arm64": "common=1 libarm=1 root=1"} {
		got, err := universe(t, arch, idx).Resolve([]string{"root"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if names(got) != want {
			t.Errorf("%s: %s, want %s", arch, names(got), want)
		}
	}
}

func TestResolveExclude(t *testing.T) {
	u := universe(t, "amd64", Index{Suite: "s", Packages: []Package{
		pkg("root", "1", "amd64", "Pre-Depends", "dpkg (>= 1.20)", "Depends", "debconf (>= 0.5) | debconf-2.0, perlapi-5.36.0, adduser"),
		pkg("dpkg", "1.21", "amd64", "Depends", "tar"),
		pkg("tar", "1", "amd64"),
		pkg("debconf", "1.5", "all", "Provides", "debconf-2.0"),
		pkg("perl-base", "5.36", "amd64", "Provides", "perlapi-5.36.0"),
		pkg("adduser", "3", "all", "Depends", "passwd"),
		pkg("passwd", "1", "amd64"),
	}})
	got, err := u.Resolve([]string{"root", "dpkg"}, []string{"dpkg", "debconf", "perl-base", "adduser"})
	if err != nil {
		t.Fatal(err)
	}
	if names(got) != "root=1" {
		t.Errorf("closure %s", names(got))
	}
}

func TestResolveErrors(t *testing.T) {
	u := universe(t, "amd64", Index{Suite: "bookworm", Packages: []Package{
		pkg("ffmpeg", "1", "amd64", "Depends", "libavcodec59"),
		pkg("libavcodec59", "1", "amd64", "Depends", "libfoo (>= 2)"),
		pkg("libfoo", "1", "amd64"),
		pkg("tool", "1", "amd64", "Depends", "lib:any"),
		pkg("lib", "1", "amd64"),
		pkg("virt-user", "1", "amd64", "Depends", "virt (>= 1)"),
		pkg("unversioned", "1", "amd64", "Provides", "virt"),
	}})
	cases := map[string]string{
		"ffmpeg":    "ffmpeg -> libavcodec59 -> libfoo (>= 2): no candidate (bookworm has libfoo 1",
		"nosuch":    "nosuch: no candidate (nosuch is not in any suite)",
		"tool":      "tool -> lib:any: no candidate",
		"virt-user": "virt-user -> virt (>= 1): no candidate (virt is not in any suite; no provider offers a version >= 1)",
	}
	for root, want := range cases {
		_, err := u.Resolve([]string{root}, nil)
		var re *ResolveError
		if !errors.As(err, &re) {
			t.Errorf("%s: error %v is not a ResolveError", root, err)
			continue
		}
		if !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%s:\n got %s\nwant %s...", root, err, want)
		}
	}
}

func TestResolveDeterministic(t *testing.T) {
	var pkgs []Package
	for i := 0; i < 50; i++ {
		pkgs = append(pkgs, pkg(fmt.Sprintf("p%02d", i), "1", "amd64", "Provides", "virt", "Depends", fmt.Sprintf("p%02d | virt", (i+7)%50)))
	}
	u := universe(t, "amd64", Index{Suite: "s", Packages: pkgs})
	first, err := u.Resolve([]string{"p00", "p13"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		again, err := universe(t, "amd64", Index{Suite: "s", Packages: pkgs}).Resolve([]string{"p00", "p13"}, nil)
		if err != nil || names(again) != names(first) {
			t.Fatalf("run %d: %s vs %s (%v)", i, names(again), names(first), err)
		}
	}
}
