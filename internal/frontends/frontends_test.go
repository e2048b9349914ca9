package frontends

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/pulse-sidecar/pulse-sidecar/internal/debian"
)

func TestVendorHashRoundTrip(t *testing.T) {
	flake := []byte("{\n  x = 1;\n      vendorHash = \"sha256-old=\";\n  y = 2;\n}\n")
	if h, err := VendorHash(flake); err != nil || h != "sha256-old=" {
		t.Fatalf("VendorHash = %q, %v", h, err)
	}
	got, err := SetVendorHash(flake, "sha256-new=")
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.Replace(string(flake), "sha256-old=", "sha256-new=", 1); string(got) != want {
		t.Errorf("SetVendorHash gave\n%s\nwant\n%s", got, want)
	}
	if _, err := SetVendorHash(flake, "deadbeef"); err == nil {
		t.Error("SetVendorHash accepted a hash that is not SRI sha256")
	}
	for _, bad := range []string{"{ }", "vendorHash = \"a\";\nvendorHash = \"b\";\n"} {
		if _, err := VendorHash([]byte(bad)); err == nil {
			t.Errorf("VendorHash(%q) found one vendorHash", bad)
		}
	}
}

func TestDownloads(t *testing.T) {
	l, err := debian.ReadLock(filepath.Join("testdata", "lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := Downloads(l, "amd64", Mirrors{Debian: []string{"https://m.test/debian/"}, Security: []string{"https://s.test/debian-security"}, Snapshot: "https://snap.test/"})
	if err != nil {
		t.Fatal(err)
	}
	if len(d) != 3 {
		t.Fatalf("%d downloads for amd64, want 3", len(d))
	}
	sec := d[1]
	want := []string{
		"https://s.test/debian-security/pool/updates/main/f/foo/libfoo1_2.3~rc1-1+deb12u1_amd64.deb",
		"https://snap.test/archive/debian-security/20240301T090000Z/pool/updates/main/f/foo/libfoo1_2.3~rc1-1+deb12u1_amd64.deb",
	}
	if sec.FileName != "libfoo1_2.3~rc1-1+deb12u1_amd64.deb" || strings.Join(sec.URLs, " ") != strings.Join(want, " ") {
		t.Errorf("security package: %+v, want urls %q", sec, want)
	}
	if _, err := Downloads(l, "amd64", Mirrors{Debian: []string{"https://m.test/debian"}}); err == nil || !strings.Contains(err.Error(), "libfoo1") {
		t.Errorf("a security package without a base URL gave %v, want an error naming libfoo1", err)
	}
	if _, err := Downloads(l, "riscv64", Mirrors{}); err == nil {
		t.Error("Downloads for an architecture the lock lacks succeeded")
	}
}
