package build

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	s, err := spec.Load(filepath.Join("..", "..", "image", "spec.json"))
	if err != nil {
		t.Fatal(err)
	}
	pkgs := []debtest.Package{
		{Name: "libblas3", Version: "3.11.0-2", DataExt: ".xz", Data: []debtest.Entry{
			debtest.Dir("./usr/lib/x86_64-linux-gnu/blas/"),
			debtest.File("./usr/lib/x86_64-linux-gnu/blas/libblas.so.3", "\x7fELF blas"),
			debtest.File("./usr/share/doc/libblas3/copyright", "BSD"),
			debtest.File("./usr/share/doc/libblas3/changelog.gz", "old news"),
		}},
		{Name: "liblapack3", Version: "3.11.0-2", DataExt: ".gz", Data: []debtest.Entry{
			debtest.File("./usr/lib/x86_64-linux-gnu/lapack/liblapack.so.3", "\x7fELF lapack"),
		}},
		{Name: "pulseaudio", Version: "16.1", DataExt: ".zst", MD5Sums: "0123456789abcdef0123456789abcdef  usr/bin/pulseaudio\n", Data: []debtest.Entry{
			{Name: "./usr/bin/pulseaudio", Mode: 0o4755, Body: "\x7fELF pulse"},
			debtest.File("./usr/share/man/man1/pulseaudio.1.gz", "manual"),
		}},
	}
	dir := t.TempDir()
	lock := &debian.Lock{
		Version: debian.LockVersion, Distribution: "debian-12", Architectures: []string{"amd64"},
		Requested: []string{"pulseaudio"},
		Suites:    []debian.LockSuite{{Archive: "debian", Suite: "bookworm", Date: "2025-05-17T09:00:00Z", Snapshot: "20250520T000000Z"}},
	}
	debs := map[string]string{}
	for _, p := range pkgs {
		b := debtest.Deb(t, p)
		sum := sha256.Sum256(b)
		h := hex.EncodeToString(sum[:])
		file := filepath.Join(dir, h)
		if err := os.WriteFile(file, b, 0o644); err != nil {
			t.Fatal(err)
		}
		debs[h] = file
		lock.Packages = append(lock.Packages, debian.LockedPackage{
			Name: p.Name, Version: p.Version, Architecture: "amd64", ForArch: "amd64",
			Archive: "debian", Suite: "bookworm", Size: int64(len(b)), SHA256: h,
			Filename: fmt.Sprintf("pool/main/%c/%s/%s_%s_amd64.deb", p.Name[0], p.Name, p.Name, p.Version),
		})
	}
	if err := lock.Validate(); err != nil {
		t.Fatal(err)
	}
	return Inputs{
		Spec: s, Lock: lock, Arch: "amd64", Debs: debs,
		Daemon:  []byte("\x7fELF pulse-sidecar daemon"),
		Version: "1.2.3", Revision: "abc123",
		Created: time.Unix(1747472400, 0),
	}
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
	img, err := Image(in)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Image(fixture(t))
	if err != nil {
		t.Fatal(err)
	}
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
	if len(m.Layers) != 3 || len(cf.History) != 3 {
		t.Fatalf("%d layers, %d history entries, want 3", len(m.Layers), len(cf.History))
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
	names := layerNames(t, ls[2])
	if strings.Join(names, ",") != "usr/,usr/bin/,usr/bin/pulse-sidecar" {
		t.Errorf("daemon layer: %v", names)
	}
	for _, n := range layerNames(t, ls[0]) {
		if strings.HasPrefix(n, "etc/passwd") || strings.HasPrefix(n, "var/lib/dpkg") {
			t.Errorf("package layer holds generated %s", n)
		}
	}
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
	base, err := Image(fixture(t))
	if err != nil {
		t.Fatal(err)
	}
	in := fixture(t)
	in.Daemon = []byte("\x7fELF another daemon")
	other, err := Image(in)
	if err != nil {
		t.Fatal(err)
	}
	bl, _ := base.Layers()
	ol, _ := other.Layers()
	for i := range 2 {
		a, _ := bl[i].Digest()
		b, _ := ol[i].Digest()
		if a != b {
			t.Errorf("layer %d changed with only the daemon changed", i)
		}
	}
	a, _ := bl[2].Digest()
	b, _ := ol[2].Digest()
	if a == b {
		t.Error("daemon layer did not change")
	}
}

func TestImageErrorsNameThePackage(t *testing.T) {
	in := fixture(t)
	for h, p := range in.Debs {
		if strings.Contains(string(mustRead(t, p)), "lapack") {
			delete(in.Debs, h)
		}
	}
	if _, err := Image(in); err == nil || !strings.Contains(err.Error(), "liblapack3") {
		t.Fatalf("error %v does not name liblapack3", err)
	}

	in = fixture(t)
	in.Created = time.Time{}
	if _, err := Image(in); err == nil {
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
	var lapack debian.LockedPackage
	for _, p := range in.Lock.Packages {
		if p.Name == "liblapack3" {
			lapack = p
		}
	}
	file := in.Debs[lapack.SHA256]
	// Same layout, one byte of content changed: it parses, only the hash tells.
	other := debtest.Deb(t, debtest.Package{Name: "liblapack3", Version: "3.11.0-2", DataExt: ".gz", Data: []debtest.Entry{
		debtest.File("./usr/lib/x86_64-linux-gnu/lapack/liblapack.so.3", "\x7fELF LAPACK"),
	}})
	if err := os.WriteFile(file, other, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Build(in)
	if err == nil {
		t.Fatal("built from a .deb whose sha256 is not the lock's")
	}
	for _, want := range []string{"liblapack3", file, lapack.SHA256} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}
