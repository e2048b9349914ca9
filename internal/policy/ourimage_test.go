package policy

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"
	"time"

	"github.com/pulse-sidecar/pulse-sidecar/internal/build"
	"github.com/pulse-sidecar/pulse-sidecar/internal/deb/debtest"
	"github.com/pulse-sidecar/pulse-sidecar/internal/debian"
	imagespec "github.com/pulse-sidecar/pulse-sidecar/internal/spec"
)

// ourOptions are the rules as our image must meet them, the way CI runs
// `imagectl policy` on it.
func ourOptions(lock *debian.Lock, created time.Time) Options {
	return Options{
		WantUser:        "102:104",
		UserDirs:        []string{"/container", "/var/run/desktop", "/var/log/desktop"},
		SecretPaths:     []string{"/var/run/desktop/cookie"},
		Lock:            lock,
		SourceDateEpoch: created,
	}
}

// TestOurImagePasses builds the repository's spec with the real build
// pipeline over small synthetic .debs (the real closure needs the network)
// and checks it passes every rule, including a setuid file in a package,
// which the build must neutralise.
func TestOurImagePasses(t *testing.T) {
	s, err := imagespec.Load(filepath.Join("..", "..", "image", "spec.json"))
	if err != nil {
		t.Fatal(err)
	}
	lock := &debian.Lock{
		Version: debian.LockVersion, Distribution: "debian-12", Architectures: []string{"amd64"},
		Requested: []string{"pulseaudio"},
		Suites:    []debian.LockSuite{{Archive: "debian", Suite: "bookworm", Date: "2025-05-17T09:00:00Z", Snapshot: "20250520T000000Z"}},
	}
	debs := fstest.MapFS{}
	for _, p := range []debtest.Package{
		{Name: "libblas3", Version: "3.11.0-2", Data: []debtest.Entry{
			debtest.File("./usr/lib/x86_64-linux-gnu/blas/libblas.so.3", "\x7fELF blas"),
		}},
		{Name: "liblapack3", Version: "3.11.0-2", Data: []debtest.Entry{
			debtest.File("./usr/lib/x86_64-linux-gnu/lapack/liblapack.so.3", "\x7fELF lapack"),
		}},
		{Name: "base-files", Version: "12.4+deb12u15", Data: []debtest.Entry{
			debtest.File("./etc/debian_version", "12.15\n"),
			debtest.Symlink("./etc/os-release", "../usr/lib/os-release"),
			debtest.File("./usr/lib/os-release", "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_ID=\"12\"\nID=debian\n"),
			{Name: "./tmp/", Type: tar.TypeDir, Mode: 0o1777},
		}},
		{Name: "pulseaudio", Version: "16.1+dfsg1-2+b1", Data: []debtest.Entry{
			{Name: "./usr/bin/pulseaudio", Mode: 0o4755, Body: "\x7fELF pulse"},
			debtest.File("./usr/share/doc/pulseaudio/copyright", "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles: *\nLicense: LGPL-2.1+\n"),
		}},
	} {
		b := debtest.Deb(t, p)
		sum := sha256.Sum256(b)
		h := hex.EncodeToString(sum[:])
		debs[h] = &fstest.MapFile{Data: b}
		lock.Packages = append(lock.Packages, debian.LockedPackage{
			Name: p.Name, Version: p.Version, Architecture: "amd64", ForArch: "amd64",
			Archive: "debian", Suite: "bookworm", Size: int64(len(b)), SHA256: h,
			Filename: fmt.Sprintf("pool/main/%c/%s/%s_%s_amd64.deb", p.Name[0], p.Name, p.Name, p.Version),
		})
	}
	created := time.Unix(1747472400, 0).UTC()
	res, err := build.Build(build.Inputs{
		Spec: s, Lock: lock, Arch: "amd64", Debs: debs,
		Files:   os.DirFS(filepath.Join("..", "..", "image")),
		Daemon:  []byte("\x7fELF pulse-sidecar daemon"),
		Version: "1.2.3", Revision: "0123abc",
		Created: created,
	})
	if err != nil {
		t.Fatalf("building our image: %v", err)
	}
	img := res.Image
	vs, err := Check(img, ourOptions(lock, created))
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 0 {
		t.Fatalf("our image violates the policy:\n%s", lines(vs))
	}

	// And the same image against a lock that pins another version fails,
	// naming the package.
	other := *lock
	other.Packages = append([]debian.LockedPackage(nil), lock.Packages...)
	other.Packages[3].Version = "16.1+dfsg1-2+b2"
	vs, err = Check(img, ourOptions(&other, created))
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 1 || vs[0].Rule != "dpkg-lock" || vs[0].Path != "/var/lib/dpkg/status.d/pulseaudio" {
		t.Fatalf("want one dpkg-lock violation for pulseaudio, got:\n%s", lines(vs))
	}
}
