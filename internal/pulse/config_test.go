package pulse

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func baseConfig() Config {
	return Config{
		Socket:      "/tmp/.pulse.sock",
		CookieFile:  "/var/run/desktop/pulse/cookie",
		MicFIFO:     "/container/microphone",
		MicFormat:   "float32le",
		MicRate:     44100,
		MicChannels: 1,
		RunDir:      "/var/run/desktop/pulse",
		WarmSpeaker: true,
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs from %s (run with -update to accept):\n%s", name, path, got)
	}
}

func TestRenderGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
	}{
		{"unix-only", func(*Config) {}},
		{"tcp-ipv4", func(c *Config) { c.TCPAddr = "10.1.2.3:4713" }},
		{"tcp-ipv6", func(c *Config) { c.TCPAddr = "[fd00::1]:4713"; c.MicFormat = "s16le"; c.MicRate = 48000 }},
		{"tcp-any", func(c *Config) { c.TCPAddr = ":4713" }},
		{"cold", func(c *Config) { c.WarmSpeaker = false }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := baseConfig()
			tc.edit(&c)
			pa, conf, err := Render(c)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name+".pa", pa)
			golden(t, "daemon.conf", conf)
			if strings.Contains(string(pa), ".nofail") {
				t.Error("a module load is optional; every load must be fatal")
			}
		})
	}
}

func TestRenderRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"space injects an argument", func(c *Config) { c.MicFIFO = "/container/mic auth-anonymous=1" }, "microphone FIFO"},
		{"quote", func(c *Config) { c.Socket = `/tmp/"x` }, "socket"},
		{"newline injects a command", func(c *Config) { c.CookieFile = "/c\nload-module module-cli" }, "cookie file"},
		{"relative", func(c *Config) { c.RunDir = "run" }, "run dir"},
		{"unclean", func(c *Config) { c.MicFIFO = "/a/../b" }, "microphone FIFO"},
		{"empty", func(c *Config) { c.CookieFile = "" }, "cookie file"},
		{"long socket", func(c *Config) { c.Socket = "/" + strings.Repeat("s", 107) }, "limited to 107"},
		{"format", func(c *Config) { c.MicFormat = "s24le" }, "microphone format"},
		{"rate", func(c *Config) { c.MicRate = 0 }, "microphone rate"},
		{"channels", func(c *Config) { c.MicChannels = 3 }, "microphone channels"},
		{"hostname", func(c *Config) { c.TCPAddr = "pod.local:4713" }, "want an IP address"},
		{"no port", func(c *Config) { c.TCPAddr = "10.0.0.1" }, "TCP address"},
		{"port 0", func(c *Config) { c.TCPAddr = "10.0.0.1:0" }, "1..65535"},
		{"zone", func(c *Config) { c.TCPAddr = "[fe80::1%eth0]:4713" }, "zones"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := baseConfig()
			tc.edit(&c)
			_, _, err := Render(c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}
