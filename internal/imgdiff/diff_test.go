package imgdiff

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/pulse-sidecar/pulse-sidecar/internal/imgdiff/imgtest"
)

func baseEntries() []imgtest.Entry {
	return []imgtest.Entry{
		imgtest.Dir("etc", 0o755),
		imgtest.File("etc/hello", "hello world\n", 0o644),
		imgtest.File("etc/other", "other\n", 0o644),
		{Path: "etc/link", Type: tar.TypeSymlink, Link: "hello"},
	}
}

func cfg() v1.ConfigFile {
	return v1.ConfigFile{Config: v1.Config{User: "102:104", Env: []string{"PATH=/usr/bin", "HOME=/tmp"}}}
}

func build(t *testing.T, c v1.ConfigFile, entries ...imgtest.Entry) v1.Image {
	t.Helper()
	return imgtest.Image(t, c, imgtest.Layer(t, entries...))
}

func mustDiff(t *testing.T, a, b v1.Image, opts Options) *Result {
	t.Helper()
	r, err := Diff(a, b, opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestIdenticalImages(t *testing.T) {
	a := build(t, cfg(), baseEntries()...)
	b := build(t, cfg(), baseEntries()...)
	r := mustDiff(t, a, b, Options{})
	if !r.Identical() || r.ExitCode() != 0 {
		t.Fatalf("identical images reported different: %+v", r)
	}
}

func TestOneByteDiffers(t *testing.T) {
	a := build(t, cfg(), baseEntries()...)
	e := baseEntries()
	e[1].Content = "hello world!"
	b := build(t, cfg(), e...)
	r := mustDiff(t, a, b, Options{})
	if r.ExitCode() != 1 {
		t.Fatal("want exit 1")
	}
	f := onlyFile(t, r, "/etc/hello")
	if f.Kind != "changed" || !hasChange(f, "sha256") {
		t.Fatalf("want sha256 change on /etc/hello, got %+v", f)
	}
	// The layer digest moved too, and that is reported as a config field.
	if !hasField(r, "rootfs.diff_ids[0]") {
		t.Errorf("diff_ids change not reported: %+v", r.Config)
	}
}

func TestModeDiffers(t *testing.T) {
	a := build(t, cfg(), baseEntries()...)
	e := baseEntries()
	e[2].Mode = 0o600
	b := build(t, cfg(), e...)
	f := onlyFile(t, mustDiff(t, a, b, Options{}), "/etc/other")
	if len(f.Changes) != 1 || f.Changes[0].Attr != "mode" || f.Changes[0].A != "0644" || f.Changes[0].B != "0600" {
		t.Fatalf("want a mode change only, got %+v", f.Changes)
	}
}

func TestConfigEnvDiffers(t *testing.T) {
	a := build(t, cfg(), baseEntries()...)
	c := cfg()
	c.Config.Env = []string{"PATH=/usr/bin", "HOME=/root"}
	b := build(t, c, baseEntries()...)
	r := mustDiff(t, a, b, Options{})
	if len(r.Files) != 0 {
		t.Errorf("no file differs, got %+v", r.Files)
	}
	if !hasField(r, "config.Env[HOME]") || r.Identical() {
		t.Fatalf("want config.Env[HOME], got %+v", r.Config)
	}
}

func TestAddedAndRemoved(t *testing.T) {
	a := build(t, cfg(), baseEntries()...)
	e := append(baseEntries()[:2], imgtest.File("etc/new", "n", 0o644))
	b := build(t, cfg(), e...)
	r := mustDiff(t, a, b, Options{})
	kinds := map[string]string{}
	for _, f := range r.Files {
		kinds[f.Path] = f.Kind
	}
	want := map[string]string{"/etc/new": "added", "/etc/other": "removed", "/etc/link": "removed"}
	for p, k := range want {
		if kinds[p] != k {
			t.Errorf("%s: got %q, want %q (all: %v)", p, kinds[p], k, kinds)
		}
	}
}

func TestMtimeOnlyIgnorable(t *testing.T) {
	a := build(t, cfg(), baseEntries()...)
	e := baseEntries()
	e[1].ModTime = imgtest.Epoch().Add(time.Hour)
	b := build(t, cfg(), e...)

	r := mustDiff(t, a, b, Options{})
	f := onlyFile(t, r, "/etc/hello")
	if !hasChange(f, "mtime") || r.Identical() {
		t.Fatalf("mtime must count without IgnoreTimestamps: %+v", r)
	}

	r = mustDiff(t, a, b, Options{IgnoreTimestamps: true})
	f = onlyFile(t, r, "/etc/hello")
	if !f.Ignored || !r.Identical() || r.ExitCode() != 0 {
		t.Fatalf("mtime must be reported but ignored: %+v", r)
	}
	var text bytes.Buffer
	if err := WriteText(&text, r); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "mtime") || !strings.Contains(text.String(), "(ignored)") {
		t.Errorf("text rendering hides the ignored mtime:\n%s", text.String())
	}
}

func TestWhiteoutsAndPerLayer(t *testing.T) {
	lower := imgtest.Layer(t, baseEntries()...)
	a := imgtest.Image(t, cfg(), lower, imgtest.Layer(t, imgtest.File("etc/.wh.other", "", 0o644)))
	b := imgtest.Image(t, cfg(), lower, imgtest.Layer(t, imgtest.File("etc/added", "x", 0o644)))

	sa, err := ScanImage(a, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range sa.Files {
		if f.Path == "/etc/other" {
			t.Fatal("whited-out /etc/other is still visible")
		}
	}

	r := mustDiff(t, a, b, Options{PerLayer: true})
	if len(r.Layers) != 1 || r.Layers[0].Index != 1 {
		t.Fatalf("want one differing layer (index 1), got %+v", r.Layers)
	}
	if len(r.Files) != 2 || r.Files[0].Path != "/etc/added" || r.Files[1].Path != "/etc/other" || r.Files[1].Kind != "added" {
		t.Errorf("want /etc/added and /etc/other (hidden in A) added, got %+v", r.Files)
	}
}

func TestOpaqueDirectory(t *testing.T) {
	img := imgtest.Image(t, cfg(),
		imgtest.Layer(t, baseEntries()...),
		imgtest.Layer(t, imgtest.Dir("etc", 0o755), imgtest.File("etc/.wh..wh..opq", "", 0), imgtest.File("etc/fresh", "f", 0o644)))
	s, err := ScanImage(img, func(p string) bool { return p == "/etc/fresh" })
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, f := range s.Files {
		paths = append(paths, f.Path)
	}
	if got := strings.Join(paths, " "); got != "/etc /etc/fresh" {
		t.Fatalf("opaque /etc: got %s", got)
	}
	if string(s.Content["/etc/fresh"]) != "f" {
		t.Errorf("kept content: %q", s.Content["/etc/fresh"])
	}
}

func TestJSONAndRun(t *testing.T) {
	a := build(t, cfg(), baseEntries()...)
	e := baseEntries()
	e[1].Content = "changed"
	b := build(t, cfg(), e...)
	var out bytes.Buffer
	code, err := Run(a, b, Options{}, "json", &out)
	if err != nil || code != 1 {
		t.Fatalf("Run: code %d err %v", code, err)
	}
	var got struct {
		Identical bool
		Files     []FileDiff
	}
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if got.Identical || len(got.Files) != 1 || got.Files[0].Path != "/etc/hello" {
		t.Errorf("json: %s", out.String())
	}
	if code, err := Run(a, a, Options{}, "text", &out); err != nil || code != 0 {
		t.Fatalf("same image: code %d err %v", code, err)
	}
}

func onlyFile(t *testing.T, r *Result, path string) FileDiff {
	t.Helper()
	if len(r.Files) != 1 || r.Files[0].Path != path {
		t.Fatalf("want exactly one differing file %s, got %+v", path, r.Files)
	}
	return r.Files[0]
}

func hasChange(f FileDiff, attr string) bool {
	for _, c := range f.Changes {
		if c.Attr == attr {
			return true
		}
	}
	return false
}

func hasField(r *Result, field string) bool {
	for _, f := range r.Config {
		if f.Field == field {
			return true
		}
	}
	return false
}
