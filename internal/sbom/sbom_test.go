package sbom

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/package-url/packageurl-go"
	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdx"
	"github.com/spdx/tools-golang/spdxlib"

	"github.com/pulse-sidecar/pulse-sidecar/internal/debian"
)

const dep5 = `Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: foo

Files: *
Copyright: 2020 Someone
License: GPL-2+

Files: lib/*
Copyright: 2021 Other
License: LGPL-2.1+ or BSD-3-clause

Files: odd/*
Copyright: 2022 Odd
License: Sleepycat-ish

License: Sleepycat-ish
 Do what you like,
 .
 but nicely.
`

func sha(c string) string { return strings.Repeat(c, 64) }

func input() Input {
	return Input{
		Name:    "pulse-sidecar",
		Image:   v1.Hash{Algorithm: "sha256", Hex: sha("a")},
		Created: time.Unix(1700000000, 0),
		Distro:  "debian-12",
		Packages: []debian.LockedPackage{
			{Name: "libfoo1", Version: "1:2.3-4+deb12u1", Architecture: "amd64", SHA256: sha("1"), Filename: "pool/main/f/foo/libfoo1_2.3-4+deb12u1_amd64.deb", Source: "foo"},
			{Name: "bar-data", Version: "5.0", Architecture: "all", SHA256: sha("2"), Filename: "pool/main/b/bar/bar-data_5.0_all.deb"},
			{Name: "baz", Version: "1", Architecture: "amd64", SHA256: sha("3"), Filename: "pool/main/b/baz/baz_1_amd64.deb"},
		},
		Copyright: map[string][]byte{
			"libfoo1":  []byte(dep5),
			"bar-data": []byte("This is free-form text, not DEP-5.\nLicense: whatever\n"),
		},
		Daemon: &debug.BuildInfo{
			Path: "github.com/pulse-sidecar/pulse-sidecar/cmd/pulse-sidecar",
			Main: debug.Module{Path: "github.com/pulse-sidecar/pulse-sidecar", Version: "(devel)"},
			Deps: []*debug.Module{
				{Path: "github.com/oklog/run", Version: "v1.2.0"},
				{Path: "github.com/gorilla/websocket", Version: "v1.5.3"},
				{Path: "example.com/old", Version: "v0.1.0", Replace: &debug.Module{Path: "example.com/new", Version: "v0.2.0+incompatible"}},
			},
		},
	}
}

func parse(t *testing.T, b []byte) *spdx.Document {
	t.Helper()
	doc, err := spdxjson.Read(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("tools-golang cannot read the SBOM: %v\n%s", err, b)
	}
	if err := spdxlib.ValidateDocument(doc); err != nil {
		t.Fatalf("invalid SPDX document: %v", err)
	}
	return doc
}

func TestGenerate(t *testing.T) {
	b, err := Generate(input())
	if err != nil {
		t.Fatal(err)
	}
	doc := parse(t, b)
	if doc.SPDXVersion != "SPDX-2.3" || doc.CreationInfo.Created != "2023-11-14T22:13:20Z" {
		t.Errorf("version %s created %s", doc.SPDXVersion, doc.CreationInfo.Created)
	}
	if !strings.Contains(doc.DocumentNamespace, "sha256:"+sha("a")) {
		t.Errorf("namespace %q does not derive from the image digest", doc.DocumentNamespace)
	}
	// image + 3 debs + daemon + 3 modules
	if len(doc.Packages) != 8 {
		t.Fatalf("got %d packages, want 8", len(doc.Packages))
	}
	purls := map[string]string{}
	licenses := map[string]string{}
	for _, p := range doc.Packages {
		for _, r := range p.PackageExternalReferences {
			if r.RefType == "purl" {
				purls[p.PackageName] = r.Locator
			}
		}
		licenses[p.PackageName] = p.PackageLicenseDeclared
	}
	wantPURL := map[string]string{
		"libfoo1":                                "pkg:deb/debian/libfoo1@1:2.3-4%2Bdeb12u1?arch=amd64&distro=debian-12",
		"bar-data":                               "pkg:deb/debian/bar-data@5.0?arch=all&distro=debian-12",
		"github.com/oklog/run":                   "pkg:golang/github.com/oklog/run@v1.2.0",
		"example.com/new":                        "pkg:golang/example.com/new@v0.2.0%2Bincompatible",
		"github.com/pulse-sidecar/pulse-sidecar": "pkg:golang/github.com/pulse-sidecar/pulse-sidecar",
		"pulse-sidecar":                          "pkg:oci/pulse-sidecar@sha256:" + sha("a"),
	}
	for name, want := range wantPURL {
		if purls[name] != want {
			t.Errorf("%s purl %q, want %q", name, purls[name], want)
		}
	}
	// Each parses back to the version it was made from, epoch and "+" included.
	for name, v := range map[string]string{"libfoo1": "1:2.3-4+deb12u1", "example.com/new": "v0.2.0+incompatible", "pulse-sidecar": "sha256:" + sha("a")} {
		p, err := packageurl.FromString(purls[name])
		if err != nil || p.Version != v {
			t.Errorf("%s purl %q parses to version %q (%v), want %q", name, purls[name], p.Version, err, v)
		}
	}
	wantLic := map[string]string{
		"libfoo1":  "GPL-2.0-or-later AND (LGPL-2.1-or-later OR BSD-3-Clause) AND LicenseRef-Sleepycat-ish",
		"bar-data": "NOASSERTION",
		"baz":      "NOASSERTION",
	}
	for name, want := range wantLic {
		if licenses[name] != want {
			t.Errorf("%s license %q, want %q", name, licenses[name], want)
		}
	}
	if len(doc.OtherLicenses) != 1 || doc.OtherLicenses[0].ExtractedText != "Do what you like,\n\nbut nicely." {
		t.Errorf("extracted licenses: %+v", doc.OtherLicenses)
	}
	for _, p := range doc.Packages {
		if p.PackageName == "libfoo1" && (len(p.PackageChecksums) != 1 || p.PackageChecksums[0].Value != sha("1")) {
			t.Errorf("libfoo1 checksum: %+v", p.PackageChecksums)
		}
	}
	ids, err := spdxlib.GetDescribedPackageIDs(doc)
	if err != nil || len(ids) != 1 || ids[0] != "Image" {
		t.Errorf("described: %v %v", ids, err)
	}
	contains := 0
	for _, r := range doc.Relationships {
		if r.Relationship == "CONTAINS" {
			contains++
		}
	}
	if contains != 7 {
		t.Errorf("%d CONTAINS relationships, want 7", contains)
	}
}

func TestGenerateIsDeterministic(t *testing.T) {
	a, err := Generate(input())
	if err != nil {
		t.Fatal(err)
	}
	in := input()
	in.Packages[0], in.Packages[2] = in.Packages[2], in.Packages[0]
	in.Daemon.Deps[0], in.Daemon.Deps[1] = in.Daemon.Deps[1], in.Daemon.Deps[0]
	b, err := Generate(in)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("the same inputs in another order gave different bytes")
	}
	in.Image.Hex = sha("b")
	c, err := Generate(in)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, c) {
		t.Fatal("another image digest gave the same document")
	}
}

func TestGenerateRejectsBadInput(t *testing.T) {
	for name, mutate := range map[string]func(*Input){
		"no name":    func(in *Input) { in.Name = "" },
		"no digest":  func(in *Input) { in.Image = v1.Hash{} },
		"no created": func(in *Input) { in.Created = time.Time{} },
		"bad sha":    func(in *Input) { in.Packages[1].SHA256 = "abc" },
		"duplicate":  func(in *Input) { in.Packages[1] = in.Packages[0] },
	} {
		in := input()
		mutate(&in)
		if _, err := Generate(in); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestConvertExpression(t *testing.T) {
	for in, want := range map[string]string{
		"GPL-2":                          "GPL-2.0-only",
		"GPL-3+":                         "GPL-3.0-or-later",
		"LGPL-2.1":                       "LGPL-2.1-only",
		"GPL-2+ or Artistic":             "GPL-2.0-or-later OR Artistic-1.0-Perl",
		"Expat":                          "MIT",
		"BSD-3-clause and public-domain": "BSD-3-Clause AND LicenseRef-public-domain",
		"GPL-2+ with OpenSSL exception":  "LicenseRef-GPL-2-with-OpenSSL-exception",
		"FSF-unlimited and GPL-2 with Libtool exception": "LicenseRef-FSF-unlimited AND LicenseRef-GPL-2-with-Libtool-exception",
		"MPL-1.1+": "MPL-1.1+",
	} {
		if got, _ := convertExpression(in); got != want {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
}

// TestRealLock generates the SBOM for the repository's lock, with this
// machine's Debian copyright files where it has them, and checks the
// package count against the lock.
func TestRealLock(t *testing.T) {
	lock, err := debian.ReadLock(filepath.Join("..", "..", "image", "debian.lock.json"))
	if err != nil {
		t.Fatalf("reading the repository lock: %v", err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bi, err := ReadBuildInfo(self)
	if err != nil {
		t.Fatal(err)
	}
	for _, arch := range lock.Architectures {
		pkgs := lock.PackagesFor(arch)
		copyrights := map[string][]byte{}
		for _, p := range pkgs {
			if b, err := os.ReadFile(filepath.Join("/usr/share/doc", p.Name, "copyright")); err == nil {
				copyrights[p.Name] = b
			}
		}
		in := Input{Name: "pulse-sidecar", Image: v1.Hash{Algorithm: "sha256", Hex: sha("c")}, Created: time.Unix(0, 0), Distro: lock.Distribution, Packages: pkgs, Copyright: copyrights, Daemon: bi}
		b, err := Generate(in)
		if err != nil {
			t.Fatal(err)
		}
		doc := parse(t, b)
		debs := 0
		for _, p := range doc.Packages {
			for _, r := range p.PackageExternalReferences {
				if strings.HasPrefix(r.Locator, "pkg:deb/debian/") {
					debs++
				}
			}
		}
		if debs != len(pkgs) {
			t.Errorf("%s: %d Debian packages in the SBOM, %d in the lock", arch, debs, len(pkgs))
		}
		if want := 1 + len(pkgs) + 1 + len(bi.Deps); len(doc.Packages) != want {
			t.Errorf("%s: %d packages, want %d", arch, len(doc.Packages), want)
		}
		again, err := Generate(in)
		if err != nil || !bytes.Equal(b, again) {
			t.Fatalf("%s: second run differs (err %v)", arch, err)
		}
	}
}

func TestArtifact(t *testing.T) {
	doc, err := Generate(input())
	if err != nil {
		t.Fatal(err)
	}
	img := v1.Descriptor{MediaType: "application/vnd.oci.image.manifest.v1+json", Size: 1234, Digest: v1.Hash{Algorithm: "sha256", Hex: sha("a")},
		Annotations: map[string]string{"org.opencontainers.image.ref.name": "x"}}
	a, err := NewArtifact(img, doc)
	if err != nil {
		t.Fatal(err)
	}
	var m artifactManifest
	if err := json.Unmarshal(a.Manifest, &m); err != nil {
		t.Fatal(err)
	}
	if m.Subject == nil || m.Subject.Digest != img.Digest || m.Subject.Size != img.Size || m.Subject.Annotations != nil ||
		m.ArtifactType != MediaType || len(m.Layers) != 1 || m.Layers[0].Digest != digestOf(doc) {
		t.Fatalf("referrer manifest: %s", a.Manifest)
	}
	if len(a.Blobs) != 2 || string(a.Blobs[0]) != "{}" || !bytes.Equal(a.Blobs[1], doc) || m.Config.Digest != digestOf(a.Blobs[0]) {
		t.Fatalf("blobs %q", a.Blobs)
	}
	again, _ := NewArtifact(img, doc)
	if !bytes.Equal(again.Manifest, a.Manifest) {
		t.Fatal("two renderings differ")
	}
	d, err := Describes(doc)
	if err != nil || d != img.Digest {
		t.Fatalf("Describes = %s, %v; want %s", d, err, img.Digest)
	}
	if _, err := Describes([]byte(`{"packages":[]}`)); err == nil {
		t.Fatal("a document without the image package describes an image")
	}
}
