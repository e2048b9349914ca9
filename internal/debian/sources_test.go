package debian

import (
	"path/filepath"
	"reflect"
	"testing"
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
	got, err := MirrorsFromAptSources(root)
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
	got, err := MirrorsFromAptSources(root)
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
	if _, err := MirrorsFromAptSources(root); err == nil {
		t.Error("unterminated options accepted")
	}
	root = t.TempDir()
	writeFile(t, filepath.Join(root, "etc/apt/sources.list.d/x.sources"), "Types: deb\nSuites: bookworm\n")
	if _, err := MirrorsFromAptSources(root); err == nil {
		t.Error("entry without URIs accepted")
	}
	got, err := MirrorsFromAptSources(t.TempDir())
	if err != nil || len(got) != 0 {
		t.Errorf("no apt config: %v, %v", got, err)
	}
}
