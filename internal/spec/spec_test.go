package spec

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadRepositorySpec(t *testing.T) {
	s, err := Load(filepath.Join("..", "..", "image", "spec.json"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Config.User != "102:104" {
		t.Errorf("user = %q", s.Config.User)
	}
	if got := len(s.Exclude); got != 35 {
		t.Errorf("exclude has %d packages, want 32 script-only (mawk: base-files' postinst) + 3 GL", got)
	}
	if only := s.Paths.Only["base-files"]; len(only) != 4 {
		t.Errorf("paths.only.base-files = %q, want the OS identity files and the licence", only)
	}
	for _, f := range s.Files {
		if _, err := os.Stat(s.Source(f)); err != nil {
			t.Errorf("files: %s: %v", f.Path, err)
		}
	}
	var tmp *Directory
	for i := range s.Directories {
		if s.Directories[i].Path == "/tmp" {
			tmp = &s.Directories[i]
		}
	}
	if tmp == nil || tmp.Mode != 0o1777 {
		t.Errorf("/tmp directory = %+v, want mode 1777", tmp)
	}
}

// mutate decodes the repository spec into a generic map, lets f change it,
// and returns the re-encoded bytes: each case breaks exactly one thing.
func mutate(t *testing.T, f func(m map[string]any)) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "image", "spec.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestParseRejects(t *testing.T) {
	cases := []struct {
		name string
		edit func(m map[string]any)
		want string
	}{
		{"unknown top-level field", func(m map[string]any) { m["pakages"] = []string{"x"} }, `unknown field "pakages"`},
		{"unknown nested field", func(m map[string]any) {
			m["config"].(map[string]any)["usr"] = "0:0"
		}, `unknown field "usr"`},
		{"wrong type", func(m map[string]any) { m["architectures"] = "amd64" }, `"architectures"`},
		{"relative only pattern", func(m map[string]any) {
			m["paths"].(map[string]any)["only"].(map[string]any)["base-files"] = []string{"etc/os-release"}
		}, "paths.only.base-files[0]"},
		{"empty only", func(m map[string]any) {
			m["paths"].(map[string]any)["only"].(map[string]any)["base-files"] = []string{}
		}, "paths.only.base-files"},
		{"symbolic user", func(m map[string]any) { m["config"].(map[string]any)["user"] = "pulse" }, "config.user"},
		{"world-writable dir", func(m map[string]any) {
			m["directories"] = append(m["directories"].([]any), map[string]any{"path": "/var/x", "uid": 0, "gid": 0, "mode": "0777"})
		}, "directories[6].mode"},
		{"decimal mode", func(m map[string]any) {
			m["directories"].([]any)[0].(map[string]any)["mode"] = "1999"
		}, "octal"},
		{"unknown uid", func(m map[string]any) {
			m["directories"].([]any)[2].(map[string]any)["uid"] = 4242
		}, "directories[2].uid"},
		{"setuid file", func(m map[string]any) {
			m["files"].([]any)[0].(map[string]any)["mode"] = "4755"
		}, "files[0].mode"},
		{"relative path", func(m map[string]any) {
			m["files"].([]any)[0].(map[string]any)["path"] = "etc/x"
		}, "files[0].path"},
		{"escaping source", func(m map[string]any) {
			m["files"].([]any)[0].(map[string]any)["source"] = "../../etc/shadow"
		}, "files[0].source"},
		{"bad package", func(m map[string]any) { m["packages"] = []string{"PulseAudio"} }, "packages[0]"},
		{"excluded root", func(m map[string]any) { m["exclude"] = []string{"ffmpeg"} }, "exclude[0]"},
		{"unknown arch", func(m map[string]any) { m["architectures"] = []string{"mips"} }, "architectures[0]"},
		{"bad placeholder", func(m map[string]any) {
			m["alternatives"].([]any)[0].(map[string]any)["link"] = "/usr/lib/${triplet}/x"
		}, "alternatives[0]"},
		{"bad port", func(m map[string]any) { m["config"].(map[string]any)["exposed_ports"] = []string{"4713"} }, "config.exposed_ports[0]"},
		{"bad duration", func(m map[string]any) {
			m["config"].(map[string]any)["healthcheck"].(map[string]any)["interval"] = "soon"
		}, "soon"},
		{"member not a user", func(m map[string]any) {
			m["groups"].([]any)[1].(map[string]any)["members"] = []string{"ghost"}
		}, "groups[1].members[0]"},
		{"duplicate path", func(m map[string]any) {
			m["directories"] = append(m["directories"].([]any), map[string]any{"path": "/etc/nsswitch.conf", "uid": 0, "gid": 0, "mode": "0755"})
		}, "also set by"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(mutate(t, c.edit))
			if err == nil {
				t.Fatalf("accepted, want error containing %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not name %q", err, c.want)
			}
		})
	}
}

func TestParseTrailingData(t *testing.T) {
	b := mutate(t, func(map[string]any) {})
	if _, err := Parse(append(b, []byte(`{}`)...)); err == nil {
		t.Fatal("trailing object accepted")
	}
}

func TestExpand(t *testing.T) {
	got, err := Expand("/usr/lib/${multiarch}/blas/libblas.so.3", "arm64")
	if err != nil || got != "/usr/lib/aarch64-linux-gnu/blas/libblas.so.3" {
		t.Fatalf("Expand = %q, %v", got, err)
	}
	if _, err := Expand("/x/${multiarch}", "s390x"); err == nil {
		t.Fatal("unknown arch accepted")
	}
}

func TestModeRoundTrip(t *testing.T) {
	b, err := json.Marshal(Mode(0o1777))
	if err != nil || string(b) != `"1777"` {
		t.Fatalf("Marshal = %s, %v", b, err)
	}
	var m Mode
	if err := json.Unmarshal([]byte(`"0750"`), &m); err != nil || m != 0o750 {
		t.Fatalf("Unmarshal = %o, %v", m, err)
	}
}
