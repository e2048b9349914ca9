package build

import (
	"strings"
	"testing"

	"github.com/pulse-sidecar/pulse-sidecar/internal/debian"
)

// The image must not depend on the order packages are extracted in nor on
// where their contents are spilled; verify perturbs both.
func TestExtractOrderDoesNotChangeTheImage(t *testing.T) {
	want := image(t, fixture(t))
	wantDigest, _ := want.Digest()
	spill := t.TempDir()
	for _, order := range []string{"reverse", "shuffle:1", "shuffle:2", "shuffle:18446744073709551615"} {
		o, err := ParseExtractOrder(order)
		if err != nil {
			t.Fatal(err)
		}
		if o.String() != order {
			t.Errorf("%q reads back as %q", order, o)
		}
		in := fixture(t)
		in.Order = o
		in.SpillDir = spill // warm after the first round
		r, err := Build(in)
		if err != nil {
			t.Fatalf("%s: %v", order, err)
		}
		if d, _ := r.Image.Digest(); d != wantDigest {
			t.Errorf("order %s: digest %s, lock order gave %s", order, d, wantDigest)
		}
	}
	for _, bad := range []string{"random", "shuffle:", "shuffle:-1"} {
		if _, err := ParseExtractOrder(bad); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestStatusCarriesLockedSHA256AndCopyrightsAreReturned(t *testing.T) {
	in := fixture(t)
	r, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	fs := flatten(t, r.Image)
	for _, p := range in.Lock.Packages {
		file := "/var/lib/dpkg/status.d/" + p.Name
		para, err := debian.ParseControl(file, fs[file].body)
		if err != nil {
			t.Fatalf("%s does not parse as deb822: %v", file, err)
		}
		if got := para.Value("SHA256"); got != p.SHA256 {
			t.Errorf("%s: SHA256 %q, lock %q", file, got, p.SHA256)
		}
		if para.Value("Package") != p.Name || para.Value("Status") != "install ok installed" {
			t.Errorf("%s:\n%s", file, fs[file].body)
		}
	}
	if got := string(r.Copyright["libblas3"]); got != "BSD" {
		t.Errorf("libblas3 copyright %q", got)
	}
	if _, ok := r.Copyright["liblapack3"]; ok || len(r.Copyright) != 2 || r.Copyright["base-files"] == nil {
		t.Errorf("copyrights for packages that ship none: %v", r.Copyright)
	}
	// Idempotent: a control file that already names its digest keeps it.
	c := withSHA256([]byte("Package: a\nSHA256: ab\n"), "cd")
	if string(c) != "Package: a\nSHA256: ab\n" {
		t.Errorf("%q", c)
	}
}
