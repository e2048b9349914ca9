package build

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/pulse-sidecar/pulse-sidecar/internal/deb/debtest"
	"github.com/pulse-sidecar/pulse-sidecar/internal/debian"
	"github.com/pulse-sidecar/pulse-sidecar/internal/spec"
)

// fixture writes synthetic .debs standing in for the real closure: enough
// for the repository's spec to apply (the alternatives need blas and lapack
// libraries), one hostile setuid file, and documentation to drop.
func fixture(t *testing.T) Inputs {
	t.Helper()
	return fixtureFor(t, "amd64")
}

// fixtureFor is fixture for a Debian architecture: the libraries sit
// under its multiarch triplet, as its packages install them.
func fixtureFor(t *testing.T, arch string) Inputs {
	t.Helper()
	s, err := spec.Load(filepath.Join("..", "..", "image", "spec.json"))
	if err != nil {
		t.Fatal(err)
	}
	triplet, err := spec.Multiarch(arch)
	if err != nil {
		t.Fatal(err)
	}
	pkgs := []debtest.Package{
		{Name: "libblas3", Version: "3.11.0-2", Arch: arch, DataExt: ".xz", Data: []debtest.Entry{
			debtest.Dir("./usr/lib/" + triplet + "/blas/"),
			debtest.File("./usr/lib/"+triplet+"/blas/libblas.so.3", "\x7fELF blas"),
			debtest.File("./usr/share/doc/libblas3/copyright", "BSD"),
			debtest.File("./usr/share/doc/libblas3/changelog.gz", "old news"),
		}},
		{Name: "liblapack3", Version: "3.11.0-2", Arch: arch, DataExt: ".gz", Data: []debtest.Entry{
			debtest.File("./usr/lib/"+triplet+"/lapack/liblapack.so.3", "\x7fELF lapack"),
		}},
		baseFiles,
		{Name: "pulseaudio", Version: "16.1", DataExt: ".zst", MD5Sums: "0123456789abcdef0123456789abcdef  usr/bin/pulseaudio\n", Data: []debtest.Entry{
			{Name: "./usr/bin/pulseaudio", Mode: 0o4755, Body: "\x7fELF pulse"},
			debtest.File("./usr/share/man/man1/pulseaudio.1.gz", "manual"),
		}},
	}
	lock := &debian.Lock{
		Version: debian.LockVersion, Distribution: "debian-12", Architectures: []string{arch},
		Requested: []string{"pulseaudio"},
		Suites:    []debian.LockSuite{{Archive: "debian", Suite: "bookworm", Date: "2025-05-17T09:00:00Z", Snapshot: "20250520T000000Z"}},
	}
	debs := fstest.MapFS{}
	for _, p := range pkgs {
		p.Arch = arch
		b := debtest.Deb(t, p)
		sum := sha256.Sum256(b)
		h := hex.EncodeToString(sum[:])
		debs[h] = &fstest.MapFile{Data: b}
		lock.Packages = append(lock.Packages, debian.LockedPackage{
			Name: p.Name, Version: p.Version, Architecture: arch, ForArch: arch,
			Archive: "debian", Suite: "bookworm", Size: int64(len(b)), SHA256: h,
			Filename: fmt.Sprintf("pool/main/%c/%s/%s_%s_%s.deb", p.Name[0], p.Name, p.Name, p.Version, arch),
		})
	}
	if err := lock.Validate(); err != nil {
		t.Fatal(err)
	}
	return Inputs{
		Spec: s, Lock: lock, Arch: arch, Debs: debs,
		Files:   os.DirFS(filepath.Join("..", "..", "image")),
		Daemon:  []byte("\x7fELF pulse-sidecar daemon"),
		Version: "1.2.3", Revision: "abc123",
		Created: time.Unix(1747472400, 0),
	}
}

// osRelease is bookworm's /usr/lib/os-release, as base-files ships it.
const osRelease = `PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
SUPPORT_URL="https://www.debian.org/support"
BUG_REPORT_URL="https://bugs.debian.org/"
`

// baseFiles stands in for Debian's base-files: the OS identity files the
// image takes from it, beside the skeleton of a whole system it does not.
var baseFiles = debtest.Package{
	Name: "base-files", Version: "12.4+deb12u15", DataExt: ".xz",
	MD5Sums: "4ef3d1ab0d5f4ce6fc4bd5ad1bd4bd02  etc/debian_version\n" +
		"3d1ab0d5f4ce6fc4bd5ad1bd4bd02f4e  etc/issue\n" +
		"f4ce6fc4bd5ad1bd4bd024ef3d1ab0d5  usr/lib/os-release\n" +
		"d1bd4bd024ef3d1ab0d5f4ce6fc4bd5a  usr/share/common-licenses/GPL-2\n" +
		"5ad1bd4bd024ef3d1ab0d5f4ce6fc4bd  usr/share/doc/base-files/copyright\n",
	Data: []debtest.Entry{
		debtest.Dir("./"),
		debtest.Dir("./etc/"),
		debtest.File("./etc/debian_version", "12.15\n"),
		debtest.File("./etc/issue", "Debian GNU/Linux 12 \\n \\l\n"),
		debtest.Symlink("./etc/os-release", "../usr/lib/os-release"),
		{Name: "./tmp/", Type: tar.TypeDir, Mode: 0o1777},
		{Name: "./var/local/", Type: tar.TypeDir, Mode: 0o2775, Gid: 50},
		debtest.File("./usr/lib/os-release", osRelease),
		debtest.File("./usr/share/common-licenses/GPL-2", "GNU GENERAL PUBLIC LICENSE"),
		debtest.File("./usr/share/doc/base-files/copyright", "This is the Debian prepackaged version of the FSSTND."),
	},
}

type entry struct {
	hdr  tar.Header
	body string
}

// flatten applies the layers in order, as a container runtime would.
func flatten(t *testing.T, img v1.Image) map[string]entry {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	out := map[string]entry{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out["/"+strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")] = entry{*h, string(b)}
	}
}

func TestImageIsReproducibleAndShaped(t *testing.T) {
	in := fixture(t)
	img := image(t, in)
	again := image(t, fixture(t))
	d1, _ := img.Digest()
	d2, _ := again.Digest()
	if d1 != d2 {
		t.Fatalf("two builds of the same inputs: %s and %s", d1, d2)
	}

	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "102:104" || cf.Config.Entrypoint[0] != "/usr/bin/pulse-sidecar" {
		t.Fatalf("config %+v", cf.Config)
	}
	if !cf.Created.Time.Equal(in.Created) || cf.Architecture != "amd64" || cf.OS != "linux" {
		t.Fatalf("created %s, platform %s/%s", cf.Created, cf.OS, cf.Architecture)
	}
	if _, ok := cf.Config.ExposedPorts["4713/tcp"]; !ok || cf.Config.Healthcheck == nil || cf.Config.StopSignal != "SIGTERM" {
		t.Fatalf("ports %v healthcheck %v stop %q", cf.Config.ExposedPorts, cf.Config.Healthcheck, cf.Config.StopSignal)
	}
	if cf.Config.Labels["org.opencontainers.image.revision"] != "abc123" {
		t.Fatalf("labels %v", cf.Config.Labels)
	}
	m, _ := img.Manifest()
	if m.Annotations["org.opencontainers.image.version"] != "1.2.3" || m.Annotations["org.opencontainers.image.created"] != "2025-05-17T09:00:00Z" {
		t.Fatalf("annotations %v", m.Annotations)
	}
	want := len(planLayers(in.Lock.Packages)) + 2
	if len(m.Layers) != want || len(cf.History) != want {
		t.Fatalf("%d layers, %d history entries, want %d", len(m.Layers), len(cf.History), want)
	}

	fs := flatten(t, img)
	check := func(p string, typ byte, mode int64, uid, gid int) {
		t.Helper()
		e, ok := fs[p]
		if !ok {
			t.Errorf("%s missing", p)
			return
		}
		if e.hdr.Typeflag != typ || e.hdr.Mode&0o7777 != mode || e.hdr.Uid != uid || e.hdr.Gid != gid {
			t.Errorf("%s: type %q mode %o owner %d:%d, want %q %o %d:%d", p, e.hdr.Typeflag, e.hdr.Mode, e.hdr.Uid, e.hdr.Gid, typ, mode, uid, gid)
		}
		if !e.hdr.ModTime.Equal(in.Created) {
			t.Errorf("%s: mtime %s", p, e.hdr.ModTime)
		}
	}
	check("/tmp", tar.TypeDir, 0o1777, 0, 0)
	check("/container", tar.TypeDir, 0o750, 102, 104)
	check("/var/run/desktop", tar.TypeDir, 0o750, 102, 104)
	check("/usr/bin/pulse-sidecar", tar.TypeReg, 0o755, 0, 0)
	check("/usr/bin/pulseaudio", tar.TypeReg, 0o755, 0, 0) // setuid dropped
	check("/etc/passwd", tar.TypeReg, 0o644, 0, 0)
	check("/etc/nsswitch.conf", tar.TypeReg, 0o644, 0, 0)
	check("/usr/lib/x86_64-linux-gnu/libblas.so.3", tar.TypeSymlink, 0o777, 0, 0)
	check("/usr/share/doc/libblas3/copyright", tar.TypeReg, 0o644, 0, 0)
	check("/var/lib/dpkg/status.d/pulseaudio", tar.TypeReg, 0o644, 0, 0)
	// OS identity from base-files, and nothing else of it.
	check("/etc/os-release", tar.TypeSymlink, 0o777, 0, 0)
	if fs["/etc/os-release"].hdr.Linkname != "../usr/lib/os-release" || fs["/usr/lib/os-release"].body != osRelease || fs["/etc/debian_version"].body != "12.15\n" {
		t.Errorf("OS identity: /etc/os-release -> %q, /usr/lib/os-release %q, /etc/debian_version %q",
			fs["/etc/os-release"].hdr.Linkname, fs["/usr/lib/os-release"].body, fs["/etc/debian_version"].body)
	}
	for _, gone := range []string{"/etc/issue", "/var/local", "/usr/share/common-licenses"} {
		if _, ok := fs[gone]; ok {
			t.Errorf("%s shipped: base-files is limited to the OS identity", gone)
		}
	}
	// md5sums beside each status.d entry, as syft and trivy read them in
	// the distroless layout, listing only what the image holds.
	if got, want := fs["/var/lib/dpkg/status.d/base-files.md5sums"].body, "4ef3d1ab0d5f4ce6fc4bd5ad1bd4bd02  etc/debian_version\n"+
		"f4ce6fc4bd5ad1bd4bd024ef3d1ab0d5  usr/lib/os-release\n"+
		"5ad1bd4bd024ef3d1ab0d5f4ce6fc4bd  usr/share/doc/base-files/copyright\n"; got != want {
		t.Errorf("base-files.md5sums:\n%s\nwant\n%s", got, want)
	}
	if !strings.Contains(fs["/var/lib/dpkg/status.d/base-files"].body, "Package: base-files\nStatus: install ok installed\n") {
		t.Errorf("status.d/base-files:\n%s", fs["/var/lib/dpkg/status.d/base-files"].body)
	}
	check("/var/lib/dpkg/status.d/pulseaudio.md5sums", tar.TypeReg, 0o644, 0, 0)
	if !strings.Contains(fs["/etc/passwd"].body, "pulse:x:102:104:") {
		t.Errorf("/etc/passwd:\n%s", fs["/etc/passwd"].body)
	}
	if !strings.Contains(fs["/etc/nsswitch.conf"].body, "files extrausers") {
		t.Errorf("nsswitch.conf lacks extrausers")
	}
	if fs["/etc/alternatives/libblas.so.3-x86_64-linux-gnu"].hdr.Linkname != "/usr/lib/x86_64-linux-gnu/blas/libblas.so.3" {
		t.Errorf("alternative: %+v", fs["/etc/alternatives/libblas.so.3-x86_64-linux-gnu"].hdr)
	}
	for _, gone := range []string{"/usr/share/doc/libblas3/changelog.gz", "/usr/share/man/man1/pulseaudio.1.gz"} {
		if _, ok := fs[gone]; ok {
			t.Errorf("%s shipped", gone)
		}
	}
	for p, e := range fs {
		if e.hdr.Typeflag != tar.TypeSymlink && e.hdr.Mode&0o002 != 0 && p != "/tmp" {
			t.Errorf("%s is writable by others (%o)", p, e.hdr.Mode)
		}
	}

	// The daemon layer holds only the daemon and its parents, so a new
	// daemon changes one small layer.
	ls, _ := img.Layers()
	names := layerNames(t, ls[len(ls)-1])
	if strings.Join(names, ",") != "usr/,usr/bin/,usr/bin/pulse-sidecar" {
		t.Errorf("daemon layer: %v", names)
	}
	// A package layer holds its packages' files and dpkg entries, nothing
	// generated from the spec; the configuration layer no dpkg entry.
	for _, l := range ls[:len(ls)-2] {
		names := strings.Join(layerNames(t, l), ",")
		if strings.Contains(names, "etc/passwd") || strings.Contains(names, "etc/alternatives") {
			t.Errorf("package layer holds generated files: %s", names)
		}
		if strings.Contains(names, "usr/bin/pulseaudio,") != strings.Contains(names, "var/lib/dpkg/status.d/pulseaudio,") {
			t.Errorf("pulseaudio and its status.d entry are in different layers: %s", names)
		}
	}
	if cfg := strings.Join(layerNames(t, ls[len(ls)-2]), ","); strings.Contains(cfg, "status.d/") {
		t.Errorf("configuration layer holds dpkg entries: %s", cfg)
	}
}

func image(t *testing.T, in Inputs) v1.Image {
	t.Helper()
	r, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	return r.Image
}

func layerNames(t *testing.T, l v1.Layer) []string {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var names []string
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
}

func TestImageChangesWithInputs(t *testing.T) {
	base := image(t, fixture(t))
	in := fixture(t)
	in.Daemon = []byte("\x7fELF another daemon")
	other := image(t, in)
	bl, _ := base.Layers()
	ol, _ := other.Layers()
	last := len(bl) - 1
	for i := range last {
		a, _ := bl[i].Digest()
		b, _ := ol[i].Digest()
		if a != b {
			t.Errorf("layer %d changed with only the daemon changed", i)
		}
	}
	a, _ := bl[last].Digest()
	b, _ := ol[last].Digest()
	if a == b {
		t.Error("daemon layer did not change")
	}
}

func TestImageErrorsNameThePackage(t *testing.T) {
	in := fixture(t)
	debs := in.Debs.(fstest.MapFS)
	for h, f := range debs {
		if strings.Contains(string(f.Data), "lapack") {
			delete(debs, h)
		}
	}
	if _, err := Build(in); err == nil || !strings.Contains(err.Error(), "liblapack3") {
		t.Fatalf("error %v does not name liblapack3", err)
	}

	in = fixture(t)
	in.Created = time.Time{}
	if _, err := Build(in); err == nil {
		t.Fatal("built without a creation time")
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDebNotMatchingTheLockFails stands in for a cache or --debs file that
// was swapped or edited after it was checked: a valid .deb of another
// content under the pinned name must not be built into the image.
func TestDebNotMatchingTheLockFails(t *testing.T) {
	in := fixture(t)
	lapack := locked(t, in, "liblapack3")
	// Same layout, one byte of content changed: it parses, only the hash tells.
	other := debtest.Deb(t, debtest.Package{Name: "liblapack3", Version: "3.11.0-2", DataExt: ".gz", Data: []debtest.Entry{
		debtest.File("./usr/lib/x86_64-linux-gnu/lapack/liblapack.so.3", "\x7fELF LAPACK"),
	}})
	in.Debs.(fstest.MapFS)[lapack.SHA256] = &fstest.MapFile{Data: other}
	_, err := Build(in)
	if err == nil {
		t.Fatal("built from a .deb whose sha256 is not the lock's")
	}
	for _, want := range []string{"liblapack3", lapack.SHA256, "not the pinned file"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

func locked(t *testing.T, in Inputs, name string) *debian.LockedPackage {
	t.Helper()
	for i, p := range in.Lock.Packages {
		if p.Name == name {
			return &in.Lock.Packages[i]
		}
	}
	t.Fatalf("%s not in the fixture's lock", name)
	return nil
}

// TestPoisonedDebIsRefusedUnparsed stands in for a poisoned cache: a file
// of exactly the pinned size under the pinned name, whose payload is a
// decompression bomb (a tar header claiming a 1 GiB file, a few hundred
// bytes of xz). Hashing it while extracting, as the build once did, meant
// decompressing it and allocating the claimed gigabyte before the digest
// at the end could refuse it. Now the digest comes first and nothing of
// the file is parsed: the build allocates a small fraction of what the
// bomb asks for, and says the file is not the pinned one.
func TestPoisonedDebIsRefusedUnparsed(t *testing.T) {
	const claimed = 1 << 30
	var payload bytes.Buffer
	tw := tar.NewWriter(&payload)
	if err := tw.WriteHeader(&tar.Header{Name: "./usr/lib/bomb", Typeflag: tar.TypeReg, Mode: 0o644, Size: claimed}); err != nil {
		t.Fatal(err)
	}
	payload.WriteString("only a few bytes of the gigabyte")
	bomb := debtest.Ar(
		debtest.Member{Name: "debian-binary", Data: []byte("2.0\n")},
		debtest.Member{Name: "control.tar", Data: debtest.Tar(t, debtest.File("./control", "Package: liblapack3\nVersion: 3.11.0-2\nArchitecture: amd64\n"))},
		debtest.Member{Name: "data.tar.xz", Data: debtest.Compress(t, ".xz", payload.Bytes())},
	)

	in := fixture(t)
	lapack := locked(t, in, "liblapack3")
	lapack.Size = int64(len(bomb)) // the cache matched name and size
	in.Debs.(fstest.MapFS)[lapack.SHA256] = &fstest.MapFile{Data: bomb}

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := Build(in)
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "sha256") || !strings.Contains(err.Error(), "not the pinned file") {
		t.Fatalf("poisoned .deb: error %v, want a sha256 mismatch", err)
	}
	if strings.Contains(err.Error(), "bomb") || strings.Contains(err.Error(), "reading content") {
		t.Fatalf("poisoned .deb was parsed: %v", err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > claimed/8 {
		t.Fatalf("build allocated %d MiB refusing a %d-byte file: its payload was decompressed", got>>20, len(bomb))
	}
}

// TestDebOfAnotherSizeIsRefused: a truncated or extended file is refused
// on its size, before its hash.
func TestDebOfAnotherSizeIsRefused(t *testing.T) {
	in := fixture(t)
	lapack := locked(t, in, "liblapack3")
	f := in.Debs.(fstest.MapFS)[lapack.SHA256]
	f.Data = append(append([]byte(nil), f.Data...), 0)
	_, err := Build(in)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("or more, lock pins %d", lapack.Size)) {
		t.Fatalf("extended .deb: %v", err)
	}
}

// TestArm64PathsFollowTheArchitecture: every path naming the multiarch
// triplet comes from the architecture built, not from amd64. An arm64
// image whose alternatives pointed into x86_64-linux-gnu had an ffmpeg that
// could not find libblas.so.3.
func TestArm64PathsFollowTheArchitecture(t *testing.T) {
	in := fixtureFor(t, "arm64")
	img := image(t, in)
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Architecture != "arm64" || cf.Variant != "v8" {
		t.Errorf("platform %s/%s, want arm64/v8", cf.Architecture, cf.Variant)
	}
	fs := flatten(t, img)
	for link, want := range map[string]string{
		"/usr/lib/aarch64-linux-gnu/libblas.so.3":            "/etc/alternatives/libblas.so.3-aarch64-linux-gnu",
		"/etc/alternatives/libblas.so.3-aarch64-linux-gnu":   "/usr/lib/aarch64-linux-gnu/blas/libblas.so.3",
		"/usr/lib/aarch64-linux-gnu/liblapack.so.3":          "/etc/alternatives/liblapack.so.3-aarch64-linux-gnu",
		"/etc/alternatives/liblapack.so.3-aarch64-linux-gnu": "/usr/lib/aarch64-linux-gnu/lapack/liblapack.so.3",
	} {
		if e, ok := fs[link]; !ok || e.hdr.Typeflag != tar.TypeSymlink || e.hdr.Linkname != want {
			t.Errorf("%s: %+v, want a symlink to %s", link, e.hdr, want)
		}
	}
	for p := range fs {
		if strings.Contains(p, "x86_64") {
			t.Errorf("arm64 image has %s", p)
		}
	}
	if !strings.Contains(fs["/var/lib/dpkg/status.d/libblas3"].body, "Architecture: arm64\n") {
		t.Errorf("status.d/libblas3:\n%s", fs["/var/lib/dpkg/status.d/libblas3"].body)
	}
}
