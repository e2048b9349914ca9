package policy

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/pulse-sidecar/pulse-sidecar/internal/debian"
	"github.com/pulse-sidecar/pulse-sidecar/internal/imgdiff/imgtest"
)

const debSHA = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// spec is an image under construction; good() passes every rule and each
// test breaks exactly one thing.
type spec struct {
	entries     []imgtest.Entry
	cfg         v1.ConfigFile
	annotations map[string]string
}

func good() spec {
	owned := func(e imgtest.Entry) imgtest.Entry { e.UID, e.GID = 102, 104; return e }
	labels := map[string]string{}
	for _, k := range DefaultLabels() {
		labels[k] = "x"
	}
	return spec{
		entries: []imgtest.Entry{
			owned(imgtest.Dir("container", 0o700)),
			imgtest.Dir("tmp", 0o1777),
			imgtest.Dir("usr/bin", 0o755),
			imgtest.File("usr/bin/pulse-sidecar", "\x7fELF", 0o555),
			imgtest.Dir("var/run", 0o755),
			owned(imgtest.Dir("var/run/desktop", 0o750)),
			imgtest.Dir("var/log", 0o755),
			owned(imgtest.Dir("var/log/desktop", 0o700)),
			imgtest.File("var/lib/dpkg/status.d/libfoo1", "Package: libfoo1\nVersion: 1.2-3\nArchitecture: amd64\nSHA256: "+debSHA+"\n", 0o644),
			imgtest.File("var/lib/dpkg/status.d/libfoo1.md5sums", "d41d8cd98f00b204e9800998ecf8427e  usr/lib/libfoo.so.1\n", 0o644),
			{Path: "usr/bin/sidecar", Type: tar.TypeSymlink, Link: "pulse-sidecar", Mode: 0o777},
			{Path: "etc/os-release", Type: tar.TypeSymlink, Link: "../usr/lib/os-release", Mode: 0o777},
			imgtest.File("usr/lib/os-release", "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_ID=\"12\"\nID=debian\n", 0o644),
		},
		cfg: v1.ConfigFile{
			Config: v1.Config{
				User:   "102:104",
				Env:    []string{"PATH=/usr/bin", "PULSE_SERVER=/tmp/.pulse.sock", "PULSEAUDIO_COOKIE="},
				Labels: labels,
			},
		},
		annotations: map[string]string{
			annBaseName:   "scratch@sha256:" + debSHA,
			annBaseDigest: "sha256:" + debSHA,
		},
	}
}

func (s spec) image(t *testing.T) v1.Image {
	t.Helper()
	img := imgtest.Image(t, s.cfg, imgtest.Layer(t, s.entries...))
	if s.annotations != nil {
		img = mutate.Annotations(img, s.annotations).(v1.Image)
	}
	return img
}

func opts() Options {
	return Options{
		WantUser:    "102:104",
		UserDirs:    []string{"/container", "/var/run/desktop", "/var/log/desktop"},
		SecretPaths: []string{"/var/run/desktop/cookie"},
		Now:         imgtest.Epoch().Add(365 * 24 * time.Hour),
		Lock: &debian.Lock{Distribution: "debian-12", Packages: []debian.LockedPackage{
			{Name: "libfoo1", Version: "1.2-3", Architecture: "amd64", ForArch: "amd64", SHA256: debSHA},
		}},
	}
}

func check(t *testing.T, s spec, o Options) []Violation {
	t.Helper()
	vs, err := Check(s.image(t), o)
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

func TestGoodImagePasses(t *testing.T) {
	if vs := check(t, good(), opts()); len(vs) != 0 {
		t.Fatalf("good image has violations:\n%s", lines(vs))
	}
}

func TestEachRuleFires(t *testing.T) {
	wallClock := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
	cases := []struct {
		name    string
		breakIt func(*spec, *Options)
		rule    string
		where   string // path or field named by the violation
		also    []string
	}{
		{"0666 file", func(s *spec, _ *Options) { s.entries = append(s.entries, imgtest.File("etc/conf", "x", 0o666)) }, "world-writable", "/etc/conf", nil},
		{"0777 dir", func(s *spec, _ *Options) { s.entries = append(s.entries, imgtest.Dir("srv", 0o777)) }, "world-writable", "/srv", nil},
		{"root user", func(s *spec, _ *Options) { s.cfg.Config.User = "0:0" }, "user", "config.User", []string{"user-dirs"}},
		{"empty user", func(s *spec, o *Options) { s.cfg.Config.User = ""; o.UserDirs = nil }, "user", "config.User", nil},
		{"named user", func(s *spec, o *Options) { s.cfg.Config.User = "pulse"; o.UserDirs = nil }, "user", "config.User", nil},
		{"other user", func(s *spec, o *Options) { s.cfg.Config.User = "1000"; o.UserDirs = nil }, "user", "config.User", nil},
		{"setuid binary", func(s *spec, _ *Options) { s.entries = append(s.entries, imgtest.File("usr/bin/su", "x", 0o4755)) }, "setuid", "/usr/bin/su", nil},
		{"setgid binary", func(s *spec, _ *Options) { s.entries = append(s.entries, imgtest.File("usr/bin/wall", "x", 0o2755)) }, "setuid", "/usr/bin/wall", nil},
		{"device node", func(s *spec, _ *Options) {
			s.entries = append(s.entries, imgtest.Entry{Path: "dev/null", Type: tar.TypeChar, Mode: 0o600, Major: 1, Minor: 3})
		}, "device", "/dev/null", nil},
		{"user dir world accessible", func(s *spec, _ *Options) {
			s.entries = append(s.entries, imgtest.Entry{Path: "var/log/desktop", Type: tar.TypeDir, Mode: 0o755, UID: 102, GID: 104})
		}, "user-dirs", "/var/log/desktop", nil},
		{"user dir owned by root", func(s *spec, _ *Options) { s.entries = append(s.entries, imgtest.Dir("container", 0o700)) }, "user-dirs", "/container", nil},
		{"user dir missing", func(_ *spec, o *Options) { o.UserDirs = append(o.UserDirs, "/home/pulse") }, "user-dirs", "/home/pulse", nil},
		{"readable cookie", func(s *spec, _ *Options) {
			s.entries = append(s.entries, imgtest.Entry{Path: "var/run/desktop/cookie", Mode: 0o644, UID: 102, GID: 104, Content: "c"})
		}, "secret-paths", "/var/run/desktop/cookie", nil},
		{"mtime differs", func(s *spec, _ *Options) {
			s.entries = append(s.entries, imgtest.Entry{Path: "etc/late", Mode: 0o644, ModTime: imgtest.Epoch().Add(time.Second)})
		}, "timestamps", "/etc/late", nil},
		{"wall-clock timestamps", func(s *spec, o *Options) {
			o.Now = time.Time{}
			s.cfg.Created = v1.Time{Time: wallClock}
			for i := range s.entries {
				s.entries[i].ModTime = wallClock
			}
		}, "created", "created", nil},
		{"created is not SOURCE_DATE_EPOCH", func(s *spec, o *Options) { o.SourceDateEpoch = imgtest.Epoch().Add(time.Hour) }, "created", "created", nil},
		{"created in the future", func(s *spec, o *Options) { o.Now = imgtest.Epoch().Add(-time.Hour) }, "created", "created", nil},
		{"tag-only base", func(s *spec, _ *Options) { s.annotations = map[string]string{annBaseName: "ubuntu:24.04"} }, "base", "manifest.annotations[" + annBaseName + "]", nil},
		{"bad base digest", func(s *spec, _ *Options) { s.annotations[annBaseDigest] = "sha256:nothex" }, "base", "manifest.annotations[" + annBaseDigest + "]", nil},
		{"package not in lock", func(_ *spec, o *Options) { o.Lock.Packages[0].Name = "libbar1" }, "dpkg-lock", "/var/lib/dpkg/status.d/libfoo1", nil},
		{"package version differs", func(_ *spec, o *Options) { o.Lock.Packages[0].Version = "1.2-4" }, "dpkg-lock", "/var/lib/dpkg/status.d/libfoo1", nil},
		{"package sha256 differs", func(_ *spec, o *Options) { o.Lock.Packages[0].SHA256 = strings.Repeat("f", 64) }, "dpkg-lock", "/var/lib/dpkg/status.d/libfoo1", nil},
		{"no dpkg entries", func(s *spec, _ *Options) { s.entries = s.entries[:8] }, "dpkg-lock", dpkgStatusDir, nil},
		{"no os-release", func(s *spec, _ *Options) { s.entries = s.entries[:len(s.entries)-2] }, "os-release", "/etc/os-release", nil},
		{"os-release link dangles", func(s *spec, _ *Options) { s.entries = s.entries[:len(s.entries)-1] }, "os-release", "/etc/os-release", nil},
		{"os-release of another release", func(s *spec, _ *Options) {
			s.entries[len(s.entries)-1] = imgtest.File("usr/lib/os-release", "ID=debian\nVERSION_ID=\"11\"\n", 0o644)
		}, "os-release", "/usr/lib/os-release", nil},
		{"missing label", func(s *spec, _ *Options) { delete(s.cfg.Config.Labels, "org.opencontainers.image.revision") }, "labels", "org.opencontainers.image.revision", nil},
		{"cookie in env", func(s *spec, _ *Options) {
			s.cfg.Config.Env = append(s.cfg.Config.Env, "PULSEAUDIO_COOKIE=0123456789abcdef0123456789abcdef")
		}, "env-secrets", "config.Env[PULSEAUDIO_COOKIE]", nil},
		{"hex in env", func(s *spec, _ *Options) {
			s.cfg.Config.Env = append(s.cfg.Config.Env, "X=0123456789abcdef0123456789abcdef")
		}, "env-secrets", "config.Env[X]", nil},
		{"token in history", func(s *spec, _ *Options) {
			s.cfg.History = []v1.History{{Created: v1.Time{Time: imgtest.Epoch()}, CreatedBy: "RUN GITHUB_TOKEN=ghp_abc make"}}
		}, "history-secrets", "history[0].created_by", nil},
		{"base64 in history", func(s *spec, _ *Options) {
			s.cfg.History = []v1.History{{Created: v1.Time{Time: imgtest.Epoch()}, Comment: "key aGVsbG8gd29ybGQgdGhpcyBpcyBhIHNlY3JldCBrZXk1"}}
		}, "history-secrets", "history[0].comment", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, o := good(), opts()
			c.breakIt(&s, &o)
			vs := check(t, s, o)
			allowed := map[string]bool{c.rule: true}
			for _, a := range c.also {
				allowed[a] = true
			}
			found := false
			for _, v := range vs {
				if !allowed[v.Rule] {
					t.Errorf("unexpected rule fired: %s", v)
				}
				if v.Rule == c.rule && (v.Path == c.where || v.Field == c.where) {
					found = true
				}
			}
			if !found {
				t.Fatalf("rule %s did not name %s; got:\n%s", c.rule, c.where, lines(vs))
			}
		})
	}
}

func TestSourceDateEpochReplacesWindow(t *testing.T) {
	// A build minutes after its commit: created is recent but exactly the epoch.
	recent := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
	s, o := good(), opts()
	s.cfg.Created = v1.Time{Time: recent}
	for i := range s.entries {
		s.entries[i].ModTime = recent
	}
	o.Now, o.SourceDateEpoch = time.Time{}, recent
	if vs := check(t, s, o); len(vs) != 0 {
		t.Fatalf("created equal to SOURCE_DATE_EPOCH flagged:\n%s", lines(vs))
	}
}

func TestHistoryDigestIsNotASecret(t *testing.T) {
	s := good()
	s.cfg.History = []v1.History{{Created: v1.Time{Time: imgtest.Epoch()}, CreatedBy: "layer sha256:" + debSHA, Comment: "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"}}
	if vs := check(t, s, opts()); len(vs) != 0 {
		t.Fatalf("digest or PATH flagged as secret:\n%s", lines(vs))
	}
}

func TestMaxPerRuleSummarises(t *testing.T) {
	s := good()
	for i := 0; i < 10; i++ {
		s.entries = append(s.entries, imgtest.File("etc/f"+string(rune('a'+i)), "x", 0o666))
	}
	o := opts()
	o.MaxPerRule = 3
	vs := check(t, s, o)
	if len(vs) != 4 || !strings.Contains(vs[3].Message, "7 more") {
		t.Fatalf("want 3 violations and a summary, got:\n%s", lines(vs))
	}
}

func TestSkipAndUnknownRule(t *testing.T) {
	s := good()
	s.cfg.Config.User = "0"
	o := opts()
	o.UserDirs = nil
	o.Skip = []string{"user"}
	if vs := check(t, s, o); len(vs) != 0 {
		t.Fatalf("skipped rule fired:\n%s", lines(vs))
	}
	o.Skip = []string{"no-such-rule"}
	if _, err := Check(s.image(t), o); err == nil || !strings.Contains(err.Error(), "no-such-rule") {
		t.Fatalf("want an error naming the unknown rule, got %v", err)
	}
}

func TestRunFormats(t *testing.T) {
	s := good()
	s.entries = append(s.entries, imgtest.File("etc/conf", "x", 0o666))
	var out bytes.Buffer
	code, err := Run(s.image(t), opts(), "json", &out)
	if err != nil || code != 1 {
		t.Fatalf("code %d err %v", code, err)
	}
	var got struct {
		Pass       bool
		Violations []Violation
	}
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Pass || len(got.Violations) != 1 || got.Violations[0].Path != "/etc/conf" {
		t.Fatalf("json: %s", out.String())
	}
	out.Reset()
	code, err = Run(good().image(t), opts(), "text", &out)
	if err != nil || code != 0 || !strings.Contains(out.String(), "pass") {
		t.Fatalf("good image: code %d err %v out %q", code, err, out.String())
	}
	if _, err := Run(good().image(t), opts(), "yaml", &out); err == nil {
		t.Fatal("unknown format accepted")
	}
}

func lines(vs []Violation) string {
	var b strings.Builder
	for _, v := range vs {
		b.WriteString(v.String() + "\n")
	}
	return b.String()
}
