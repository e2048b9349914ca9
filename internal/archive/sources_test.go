package archive

import (
	"path/filepath"
	"reflect"
	"testing"

	"github.com/pulse-sidecar/pulse-sidecar/internal/debian"
)

func TestMirrorsFromAptSources(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "etc/apt/sources.list.d/debian.sources"), `Types: deb
# http://archive.test/archive/debian/20250520T000000Z
URIs: http://mirror.test/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://src.test/debian-security
Suites: bookworm-security
Components: main

Enabled: no
Types: deb
URIs: http://disabled.test/debian-security
Suites: bookworm-security
Components: main
`)
	writeFile(t, filepath.Join(root, "etc/apt/sources.list"), `# a comment
deb-src http://src.test/debian bookworm main
deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] http://security.test/debian-security/ bookworm-security main contrib
`)
	got, err := Mirrors(root, debian.DefaultSuites(), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"debian": "http://mirror.test/debian", "debian-security": "http://security.test/debian-security"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	snap, err := SnapshotBaseFromAptSources(root)
	if err != nil || snap != "http://archive.test" {
		t.Errorf("snapshot base = %q, %v", snap, err)
	}
}

func TestMirrorsFromAptSourcesOneLineOnly(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "etc/apt/sources.list"),
		"deb http://m.test/debian bookworm main\ndeb [ trusted=yes ] http://m.test/debian-security bookworm-security main\n")
	got, err := Mirrors(root, debian.DefaultSuites(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got["debian"] != "http://m.test/debian" || got["debian-security"] != "http://m.test/debian-security" {
		t.Errorf("got %v", got)
	}
	if snap, err := SnapshotBaseFromAptSources(root); err != nil || snap != "" {
		t.Errorf("snapshot base = %q, %v; want none", snap, err)
	}
}

func TestMirrorsFromAptSourcesErrors(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "etc/apt/sources.list"), "deb [arch=amd64 http://m.test/debian bookworm\n")
	if _, err := Mirrors(root, debian.DefaultSuites(), nil); err == nil {
		t.Error("unterminated options accepted")
	}
	root = t.TempDir()
	writeFile(t, filepath.Join(root, "etc/apt/sources.list.d/x.sources"), "Types: deb\nSuites: bookworm\n")
	if _, err := Mirrors(root, debian.DefaultSuites(), nil); err == nil {
		t.Error("entry without URIs accepted")
	}
	got, err := Mirrors(t.TempDir(), debian.DefaultSuites(), nil)
	if err != nil || len(got) != 0 {
		t.Errorf("no apt config: %v, %v", got, err)
	}
}

// TestMirrorsFromAptSourcesThirdParty: repositories for the same codename
// that are not Debian must not become the "debian" archive, even when apt
// reads them first.
func TestMirrorsFromAptSourcesThirdParty(t *testing.T) {
	root := t.TempDir()
	// Sorts before debian.sources, same suite, not the main component.
	writeFile(t, filepath.Join(root, "etc/apt/sources.list.d/adoptium.sources"),
		"Types: deb\nURIs: https://vendor.test/artifactory/deb\nSuites: bookworm\nComponents: jdk\n")
	// main component, but a path that is not an archive's.
	writeFile(t, filepath.Join(root, "etc/apt/sources.list.d/a-tools.list"),
		"deb https://tools.test/apt bookworm main\n")
	// A path ending in /debian with main: only one of the suites.
	writeFile(t, filepath.Join(root, "etc/apt/sources.list.d/b-vendor.list"),
		"deb https://pkgs.vendor.test/stable/debian bookworm main\n")
	writeFile(t, filepath.Join(root, "etc/apt/sources.list.d/debian.sources"),
		"Types: deb\nURIs: http://mirror.test/debian/\nSuites: bookworm bookworm-updates\nComponents: main contrib\n\n"+
			"Types: deb\nURIs: http://mirror.test/debian-security\nSuites: bookworm-security\nComponents: main\n")
	got, err := Mirrors(root, debian.DefaultSuites(), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"debian": "http://mirror.test/debian", "debian-security": "http://mirror.test/debian-security"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// TestMirrorsFromAptSourcesOrder: sources.list first, then .list and
// .sources files interleaved by name, as apt reads them.
func TestMirrorsFromAptSourcesOrder(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "etc/apt/sources.list.d/10-first.list"), "deb http://first.test/debian bookworm main\n")
	writeFile(t, filepath.Join(root, "etc/apt/sources.list.d/20-second.sources"),
		"Types: deb\nURIs: http://second.test/debian\nSuites: bookworm\nComponents: main\n")
	writeFile(t, filepath.Join(root, "etc/apt/sources.list.d/05 ignored.list"), "deb http://ignored.test/debian bookworm main\n")
	got, err := Mirrors(root, debian.DefaultSuites(), nil)
	if err != nil || got["debian"] != "http://first.test/debian" {
		t.Errorf("got %v, %v; want first.test (a .list sorting before a .sources)", got, err)
	}
	writeFile(t, filepath.Join(root, "etc/apt/sources.list"), "deb http://main.test/debian bookworm main\n")
	if got, err := Mirrors(root, debian.DefaultSuites(), nil); err != nil || got["debian"] != "http://main.test/debian" {
		t.Errorf("got %v, %v; want sources.list to come first", got, err)
	}
}

// TestMirrorsFromAptSourcesUnusable: entries with no fetchable base URL,
// disabled ones and other suites never count.
func TestMirrorsFromAptSourcesUnusable(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "etc/apt/sources.list"), `deb cdrom:[Debian GNU/Linux 12]/ bookworm main
deb file:/srv/debian bookworm main
deb mirror+file:/etc/apt/mirrors/debian.list bookworm main
deb http://old.test/debian bullseye main
deb http://m.test/debian-security bookworm-security contrib
`)
	writeFile(t, filepath.Join(root, "etc/apt/sources.list.d/off.sources"),
		"Enabled: no\nTypes: deb\nURIs: http://off.test/debian\nSuites: bookworm\nComponents: main\n")
	got, err := Mirrors(root, debian.DefaultSuites(), nil)
	if err != nil || len(got) != 0 {
		t.Errorf("got %v, %v; want nothing", got, err)
	}
	// Snapshot URLs name the archive before the timestamp.
	writeFile(t, filepath.Join(root, "etc/apt/sources.list.d/snap.list"),
		"deb http://other.test/repo bookworm main\ndeb http://snap.test/archive/debian/20250520T000000Z bookworm main\n")
	if got, err := Mirrors(root, debian.DefaultSuites(), nil); err != nil || got["debian"] != "http://snap.test/archive/debian/20250520T000000Z" {
		t.Errorf("snapshot: got %v, %v", got, err)
	}
}

// TestAptMirrorsForSuites: the wanted suites decide which
// entries count.
func TestAptMirrorsForSuites(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "etc/apt/sources.list"),
		"deb http://m.test/debian bookworm main\ndeb http://t.test/debian trixie main\n")
	got, err := aptMirrors(root, []debian.SuiteRef{{Archive: "debian", Suite: "trixie"}})
	if err != nil || !reflect.DeepEqual(got, map[string]string{"debian": "http://t.test/debian"}) {
		t.Errorf("got %v, %v", got, err)
	}
}

// TestMirrorsMerge: explicit URLs win; apt sources fill only what is
// missing, and are not read at all when nothing is.
func TestMirrorsMerge(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "etc/apt/sources.list"),
		"deb http://apt.test/debian bookworm main\ndeb http://apt.test/debian-security bookworm-security main\n")
	got, err := Mirrors(root, debian.DefaultSuites(), map[string]string{"debian": "http://flag.test/debian/"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"debian": "http://flag.test/debian", "debian-security": "http://apt.test/debian-security"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	// A root whose sources cannot be read is not consulted when flags say everything.
	writeFile(t, filepath.Join(root, "etc/apt/sources.list"), "deb [broken\n")
	all := map[string]string{"debian": "http://a.test/debian", "debian-security": "http://b.test/ds"}
	if got, err := Mirrors(root, debian.DefaultSuites(), all); err != nil || !reflect.DeepEqual(got, all) {
		t.Errorf("all explicit: %v, %v", got, err)
	}
	if _, err := Mirrors(root, debian.DefaultSuites(), nil); err == nil {
		t.Error("broken apt sources: no error")
	}
}
