package build

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/pulse-sidecar/pulse-sidecar/internal/deb/debtest"
	"github.com/pulse-sidecar/pulse-sidecar/internal/debian"
	"github.com/pulse-sidecar/pulse-sidecar/internal/sbom"
	"github.com/pulse-sidecar/pulse-sidecar/internal/spec"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/image.json and sbom.spdx.json from this build")

// golden is what TestGoldenImage pins: the manifest digest says it all,
// the rest says where a change is when it moves.
type golden struct {
	Manifest string   `json:"manifest"`
	Config   string   `json:"config"`
	Layers   []string `json:"layers"`
	DiffIDs  []string `json:"diff_ids"`
}

// goldenInputs is a fixed synthetic image: the spec in testdata/golden and
// three small .debs with uncompressed members (so only our tar, gzip and
// JSON writers, not a package compressor, decide the bytes).
func goldenInputs(t *testing.T) Inputs {
	t.Helper()
	dir := filepath.Join("testdata", "golden")
	s, err := spec.Load(filepath.Join(dir, "spec.json"))
	if err != nil {
		t.Fatal(err)
	}
	pkgs := []debtest.Package{
		{Name: "base-files", Version: "12.4+deb12u15", MD5Sums: "b0b1ab5c28d0e9d0d6b8b12e2b6bfbb8  usr/lib/os-release\n", Data: []debtest.Entry{
			debtest.Dir("./"), debtest.Dir("./etc/"),
			debtest.File("./etc/debian_version", "12.15\n"),
			debtest.Symlink("./etc/os-release", "../usr/lib/os-release"),
			debtest.File("./etc/issue", "Debian GNU/Linux 12\n"),
			debtest.File("./usr/lib/os-release", osRelease),
			debtest.File("./usr/share/doc/base-files/copyright", "base-files copyright"),
		}},
		{Name: "libblas3", Version: "3.11.0-2", Extra: "Source: lapack\n", Data: []debtest.Entry{
			debtest.File("./usr/lib/x86_64-linux-gnu/blas/libblas.so.3", "\x7fELF blas"),
			debtest.File("./usr/share/doc/libblas3/copyright", "Files: *\nLicense: BSD-3-clause\n"),
		}},
		{Name: "tool", Version: "1.0-1", Data: []debtest.Entry{
			debtest.File("./usr/bin/tool", "\x7fELF tool"),
			debtest.Link("./usr/bin/tool-alias", "./usr/bin/tool"),
			debtest.Symlink("./usr/bin/t", "tool"),
			debtest.File("./usr/share/man/man1/tool.1", "manual"),
			debtest.File("./usr/share/doc/tool/copyright", "Files: *\nLicense: MIT\n"),
		}},
	}
	lock := &debian.Lock{
		Version: debian.LockVersion, Distribution: "debian-12", Architectures: []string{"amd64"},
		Requested: []string{"base-files", "tool"},
		Suites:    []debian.LockSuite{{Archive: "debian", Suite: "bookworm", Date: "2026-07-11T10:16:37Z", Snapshot: "20261122T204039Z"}},
	}
	debs := fstest.MapFS{}
	for _, p := range pkgs {
		b := debtest.Deb(t, p)
		sum := sha256.Sum256(b)
		h := hex.EncodeToString(sum[:])
		debs[h] = &fstest.MapFile{Data: b}
		src := p.Name
		if p.Name == "libblas3" {
			src = "lapack"
		}
		lock.Packages = append(lock.Packages, debian.LockedPackage{
			Name: p.Name, Version: p.Version, Architecture: "amd64", ForArch: "amd64",
			Archive: "debian", Suite: "bookworm", Size: int64(len(b)), SHA256: h,
			Filename: fmt.Sprintf("pool/main/%c/%s/%s_%s_amd64.deb", src[0], src, p.Name, p.Version),
			Source:   src, SourceVersion: p.Version,
		})
	}
	if err := lock.Validate(); err != nil {
		t.Fatal(err)
	}
	return Inputs{
		Spec: s, Lock: lock, Arch: "amd64", Debs: debs,
		Files:   os.DirFS(dir),
		Daemon:  []byte("\x7fELF golden daemon"),
		Version: "1.0.0", Revision: "0000000000000000000000000000000000000000",
		Created: time.Date(2026, 7, 11, 10, 16, 37, 0, time.UTC),
	}
}

// TestGoldenImage builds a fixed synthetic tree and spec through the real
// path (the .deb reader, the tree, layer split, tar, gzip, config JSON,
// manifest, SBOM) and compares the manifest digest and the SBOM with the
// files in testdata/golden, as apko's golden image test does. Two builds
// in one process agreeing say nothing about drift across commits or
// dependency updates; this does. When a change is meant to move the image,
// regenerate with `go test ./internal/build -run TestGoldenImage -update`
// and say why in the commit.
func TestGoldenImage(t *testing.T) {
	in := goldenInputs(t)
	r, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(r.Image); err != nil {
		t.Fatalf("the image does not validate: %v", err)
	}
	var got golden
	d, err := r.Image.Digest()
	if err != nil {
		t.Fatal(err)
	}
	got.Manifest = d.String()
	cd, _ := r.Image.ConfigName()
	got.Config = cd.String()
	ls, _ := r.Image.Layers()
	for _, l := range ls {
		ld, _ := l.Digest()
		di, _ := l.DiffID()
		got.Layers = append(got.Layers, ld.String())
		got.DiffIDs = append(got.DiffIDs, di.String())
	}
	doc, err := sbom.Generate(sbom.Input{
		Name: in.Spec.Name, Image: d, Created: in.Created, Distro: in.Lock.Distribution,
		Packages: in.Lock.PackagesFor(in.Arch), Copyright: r.Copyright,
	})
	if err != nil {
		t.Fatal(err)
	}
	gotJSON, _ := json.MarshalIndent(got, "", "  ")
	gotJSON = append(gotJSON, '\n')

	imageFile := filepath.Join("testdata", "golden", "image.json")
	sbomFile := filepath.Join("testdata", "golden", "sbom.spdx.json")
	if *update {
		for file, b := range map[string][]byte{imageFile: gotJSON, sbomFile: doc} {
			if err := os.WriteFile(file, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("rewrote %s (%s) and %s", imageFile, got.Manifest, sbomFile)
		return
	}
	wantJSON, err := os.ReadFile(imageFile)
	if err != nil {
		t.Fatalf("%v (create it with -update)", err)
	}
	var want golden
	if err := json.Unmarshal(wantJSON, &want); err != nil {
		t.Fatalf("%s: %v", imageFile, err)
	}
	if got.Manifest != want.Manifest {
		t.Errorf("manifest digest %s, golden %s", got.Manifest, want.Manifest)
		if got.Config != want.Config {
			t.Errorf("config %s, golden %s", got.Config, want.Config)
		}
		for i := range max(len(got.Layers), len(want.Layers)) {
			g, w := at(got.DiffIDs, i), at(want.DiffIDs, i)
			if g != w || at(got.Layers, i) != at(want.Layers, i) {
				t.Errorf("layer %d: diffID %s digest %s, golden diffID %s digest %s", i, g, at(got.Layers, i), w, at(want.Layers, i))
			}
		}
	}
	wantDoc, err := os.ReadFile(sbomFile)
	if err != nil {
		t.Fatalf("%v (create it with -update)", err)
	}
	if !bytes.Equal(doc, wantDoc) {
		// Compared as JSON too, so the message says whether only the
		// encoding moved or the content did.
		var a, b any
		_ = json.Unmarshal(doc, &a)
		_ = json.Unmarshal(wantDoc, &b)
		ja, _ := json.Marshal(a)
		jb, _ := json.Marshal(b)
		if bytes.Equal(ja, jb) {
			t.Errorf("SBOM: same JSON content as %s, different bytes", sbomFile)
		} else {
			t.Errorf("SBOM differs from %s:\n%s", sbomFile, firstDiff(string(doc), string(wantDoc)))
		}
	}
}

func at(s []string, i int) string {
	if i < len(s) {
		return s[i]
	}
	return "(none)"
}

// firstDiff shows the first differing line with a little context.
func firstDiff(got, want string) string {
	g, w := bytes.Split([]byte(got), []byte("\n")), bytes.Split([]byte(want), []byte("\n"))
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl []byte
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if !bytes.Equal(gl, wl) {
			return fmt.Sprintf("line %d:\n  got  %s\n  want %s", i+1, gl, wl)
		}
	}
	return "(no line differs)"
}
