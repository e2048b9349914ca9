package config

import (
	"bytes"
	"errors"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// clearEnv removes every variable Parse reads, so the machine's environment
// cannot leak into a case.
func clearEnv(t *testing.T) {
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, EnvPrefix+"_"), k == "PULSEAUDIO_COOKIE", k == "POD_IP", k == "CONTAINER_IP_ADDR",
			k == "PULSE_SERVER", k == "ABCDESKTOP_RUN_DIR", k == "ABCDESKTOP_LOG_DIR":
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
}

func TestDefaults(t *testing.T) {
	clearEnv(t)
	c, err := Parse("pulse-sidecar", nil, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		SpeakerAddr: "0.0.0.0:29788", MicrophoneAddr: "0.0.0.0:29789", OpsAddr: ":29780",
		SpeakerFIFO: "/container/speaker", MicrophoneFIFO: "/container/microphone", PulseSocket: "/tmp/.pulse.sock",
		RunDir: "/var/run/desktop", LogDir: "/var/log/desktop", MicFormat: "float32le", MicRate: 44100, MicChannels: 1,
		StopTimeout: 5 * time.Second,
	}
	if c.SpeakerAddr != want.SpeakerAddr || c.MicrophoneAddr != want.MicrophoneAddr || c.OpsAddr != want.OpsAddr ||
		c.SpeakerFIFO != want.SpeakerFIFO || c.MicrophoneFIFO != want.MicrophoneFIFO || c.PulseSocket != want.PulseSocket ||
		c.RunDir != want.RunDir || c.LogDir != want.LogDir || c.MicFormat != want.MicFormat || c.MicRate != want.MicRate ||
		c.MicChannels != want.MicChannels || c.StopTimeout != want.StopTimeout || c.PulseTCPAddr != "" {
		t.Errorf("defaults: got %+v", c)
	}
}

func TestOriginalVariables(t *testing.T) {
	clearEnv(t)
	t.Setenv("POD_IP", "10.1.2.3")
	t.Setenv("CONTAINER_IP_ADDR", "10.9.9.9")
	t.Setenv("PULSEAUDIO_COOKIE", "0123456789abcdef0123456789ABCDEF")
	t.Setenv("PULSE_SERVER", "unix:/tmp/x.sock")
	t.Setenv("ABCDESKTOP_RUN_DIR", "/run/d")
	t.Setenv("ABCDESKTOP_LOG_DIR", "/log/d")
	c, err := Parse("pulse-sidecar", nil, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct{ name, got, want string }{
		{"speaker", c.SpeakerAddr, "10.9.9.9:29788"}, {"microphone", c.MicrophoneAddr, "10.9.9.9:29789"},
		{"pulse tcp", c.PulseTCPAddr, "10.9.9.9:4713"}, {"socket", c.PulseSocket, "/tmp/x.sock"},
		{"run dir", c.RunDir, "/run/d"}, {"log dir", c.LogDir, "/log/d"}, {"cookie", c.Cookie, "0123456789abcdef0123456789ABCDEF"},
	} {
		if f.got != f.want {
			t.Errorf("%s: got %q, want %q", f.name, f.got, f.want)
		}
	}
	t.Setenv("CONTAINER_IP_ADDR", "")
	t.Setenv("PULSE_SERVER", "/tmp/y.sock")
	c, err = Parse("pulse-sidecar", nil, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.SpeakerAddr != "10.1.2.3:29788" || c.PulseSocket != "/tmp/y.sock" {
		t.Errorf("POD_IP fallback / bare PULSE_SERVER: %q %q", c.SpeakerAddr, c.PulseSocket)
	}
}

func TestPrecedence(t *testing.T) {
	clearEnv(t)
	cfgFile := filepath.Join(t.TempDir(), "conf")
	os.WriteFile(cfgFile, []byte("mic-rate 48000\nencoder-linger 3s\nlog-format json\n"), 0o600)
	t.Setenv("PULSE_SIDECAR_MIC_RATE", "22050")
	t.Setenv("CONTAINER_IP_ADDR", "10.0.0.1")
	c, err := Parse("pulse-sidecar", []string{"--config", cfgFile, "--speaker-addr", "127.0.0.1:1"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.MicRate != 22050 {
		t.Errorf("env must beat config file: mic rate %d", c.MicRate)
	}
	if c.EncoderLinger != 3*time.Second || c.LogFormat != "json" {
		t.Errorf("config file ignored: %v %q", c.EncoderLinger, c.LogFormat)
	}
	if c.SpeakerAddr != "127.0.0.1:1" {
		t.Errorf("flag must beat CONTAINER_IP_ADDR: %q", c.SpeakerAddr)
	}
}

func TestInvalidValuesNameTheFlag(t *testing.T) {
	clearEnv(t)
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--mic-format", "u8"}, nil, "--mic-format"},
		{[]string{"--mic-rate", "5"}, nil, "--mic-rate"},
		{[]string{"--mic-channels", "0"}, nil, "--mic-channels"},
		{[]string{"--mic-channels", "3"}, nil, "--mic-channels"},
		{[]string{"--microphone-fifo", "/container/mic#1"}, nil, "--microphone-fifo"},
		{[]string{"--run-dir", "/var/run/../run"}, nil, "--run-dir"},
		{[]string{"--pulse-tcp-addr", "localhost:4713"}, map[string]string{"PULSEAUDIO_COOKIE": "0123456789abcdef0123456789abcdef"}, "--pulse-tcp-addr"},
		{[]string{"--pulse-tcp-addr", "127.0.0.1:0"}, map[string]string{"PULSEAUDIO_COOKIE": "0123456789abcdef0123456789abcdef"}, "--pulse-tcp-addr"},
		{[]string{"--speaker-addr", "nonsense"}, nil, "--speaker-addr"},
		{[]string{"--ops-addr", "host.example:80"}, nil, "--ops-addr"},
		{[]string{"--speaker-fifo", "relative"}, nil, "--speaker-fifo"},
		{[]string{"--pulse-socket", "/tmp/with space"}, nil, "--pulse-socket"},
		{[]string{"--log-format", "xml"}, nil, "--log-format"},
		{[]string{"--log-level", "loud"}, nil, "--log-level"},
		{[]string{"--allowed-origins", "nope"}, nil, "--allowed-origins"},
		{[]string{"--allowed-origins", "https://desktop.example/sound"}, nil, "--allowed-origins"},
		{[]string{"--allowed-origins", "https://desktop.example:443"}, nil, "--allowed-origins"},
		{[]string{"--mic-rate", "44101"}, nil, "--mic-rate"},
		{[]string{"--max-listeners", "0"}, nil, "--max-listeners"},
		{[]string{"--max-connections", "0"}, nil, "--max-connections"},
		{[]string{"--max-behind", "1ms"}, nil, "--max-behind"},
		{[]string{"--pulse-tcp-addr", "127.0.0.1:4713"}, nil, "PULSEAUDIO_COOKIE"},
		{[]string{"--encoder-linger", "soon"}, nil, "encoder-linger"},
		{nil, map[string]string{"PULSEAUDIO_COOKIE": "secret-not-hex"}, "PULSEAUDIO_COOKIE"},
		{nil, map[string]string{"PULSE_SIDECAR_MIC_CHANNELS": "many"}, "mic-channels"},
		{[]string{"extra"}, nil, "unexpected argument"},
	} {
		for k, v := range tc.env {
			t.Setenv(k, v)
		}
		_, err := Parse("pulse-sidecar", tc.args, &bytes.Buffer{})
		for k := range tc.env {
			os.Unsetenv(k)
		}
		if err == nil {
			t.Errorf("%v %v: no error", tc.args, tc.env)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v %v: error %q should be one line naming %s", tc.args, tc.env, err, tc.want)
		}
		if strings.Contains(err.Error(), "secret-not-hex") {
			t.Errorf("error echoes the cookie: %q", err)
		}
	}
}

func TestHelpListsEveryFlagAndVariable(t *testing.T) {
	clearEnv(t)
	var out bytes.Buffer
	_, err := Parse("pulse-sidecar", []string{"--help"}, &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	for _, f := range []string{"speaker-addr", "microphone-addr", "ops-addr", "speaker-fifo", "microphone-fifo",
		"pulse-socket", "pulse-tcp-addr", "run-dir", "log-dir", "pulseaudio", "ffmpeg", "encoder-linger",
		"mic-format", "mic-rate", "mic-channels", "allowed-origins", "log-format", "log-level", "stop-timeout",
		"auth-jwt-key", "auth-jwt-secret-file", "auth-leeway", "auth-jwt-audience", "auth-jwt-issuer", "auth-require-claim"} {
		env := "PULSE_SIDECAR_" + strings.ToUpper(strings.ReplaceAll(f, "-", "_"))
		if !strings.Contains(out.String(), "--"+f+"\n") || !strings.Contains(out.String(), env) {
			t.Errorf("--help lacks --%s or %s", f, env)
		}
	}
	for _, v := range []string{"PULSEAUDIO_COOKIE", "POD_IP", "CONTAINER_IP_ADDR", "PULSE_SERVER", "ABCDESKTOP_RUN_DIR", "ABCDESKTOP_LOG_DIR"} {
		if !strings.Contains(out.String(), v) {
			t.Errorf("--help lacks %s", v)
		}
	}
}

func TestEmptyEnvironmentValueDisables(t *testing.T) {
	clearEnv(t)
	t.Setenv("PULSEAUDIO_COOKIE", "0123456789abcdef0123456789abcdef")
	t.Setenv("PULSE_SIDECAR_PULSE_TCP_ADDR", "")
	t.Setenv("PULSE_SIDECAR_LOG_DIR", "")
	c, err := Parse("pulse-sidecar", nil, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.PulseTCPAddr != "" || c.LogDir != "" {
		t.Errorf("empty variables ignored: tcp %q log dir %q", c.PulseTCPAddr, c.LogDir)
	}
	c, err = Parse("pulse-sidecar", []string{"--pulse-tcp-addr=127.0.0.1:4713", "--log-dir", "/var/log/x"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.PulseTCPAddr != "127.0.0.1:4713" || c.LogDir != "/var/log/x" {
		t.Errorf("the command line must beat an empty variable: %q %q", c.PulseTCPAddr, c.LogDir)
	}
}

func TestCheckBinaries(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "exe")
	os.WriteFile(exe, []byte("#!/bin/true\n"), 0o755)
	plain := filepath.Join(dir, "plain")
	os.WriteFile(plain, nil, 0o644)
	ok := Config{PulseAudio: exe, FFmpeg: exe}
	if err := ok.CheckBinaries(); err != nil {
		t.Errorf("executables: %v", err)
	}
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{PulseAudio: filepath.Join(dir, "missing"), FFmpeg: exe}, "--pulseaudio"},
		{Config{PulseAudio: exe, FFmpeg: plain}, "--ffmpeg"},
		{Config{PulseAudio: exe, FFmpeg: dir}, "--ffmpeg"},
	} {
		if err := c.cfg.CheckBinaries(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error naming %s", c.cfg, err, c.want)
		}
	}
}

func TestAuthFlags(t *testing.T) {
	clearEnv(t)
	c, err := Parse("pulse-sidecar", nil, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.AuthKeyFile != "" || c.AuthSecretFile != "" || c.AuthLeeway != 30*time.Second || c.AuthRequireClaims != nil {
		t.Errorf("auth defaults: key %q secret %q leeway %s claims %v", c.AuthKeyFile, c.AuthSecretFile, c.AuthLeeway, c.AuthRequireClaims)
	}

	// Repeated on the command line: each flag adds pairs; a comma separates
	// pairs and \, is a comma inside a value.
	c, err = Parse("pulse-sidecar", []string{
		"--auth-jwt-key", "/secrets/jwt.pem", "--auth-leeway", "5s", "--auth-jwt-audience", "pulse", "--auth-jwt-issuer", "abc",
		"--auth-require-claim", "userid=alice", "--auth-require-claim", "uid=1000,dn=cn=alice\\,ou=people",
	}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"userid": "alice", "uid": "1000", "dn": "cn=alice,ou=people"}
	if c.AuthKeyFile != "/secrets/jwt.pem" || c.AuthLeeway != 5*time.Second || c.AuthAudience != "pulse" || c.AuthIssuer != "abc" || !maps.Equal(c.AuthRequireClaims, want) {
		t.Errorf("command line: %+v", c)
	}

	// The environment holds several pairs in one variable.
	t.Setenv("PULSE_SIDECAR_AUTH_JWT_SECRET_FILE", "/secrets/hs")
	t.Setenv("PULSE_SIDECAR_AUTH_REQUIRE_CLAIM", "userid=bob, uid=1001")
	c, err = Parse("pulse-sidecar", nil, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.AuthSecretFile != "/secrets/hs" || !maps.Equal(c.AuthRequireClaims, map[string]string{"userid": "bob", "uid": "1001"}) {
		t.Errorf("environment: secret %q claims %v", c.AuthSecretFile, c.AuthRequireClaims)
	}
	// The command line replaces the environment's pairs; it does not merge.
	c, err = Parse("pulse-sidecar", []string{"--auth-require-claim", "userid=carol"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(c.AuthRequireClaims, map[string]string{"userid": "carol"}) {
		t.Errorf("command line over environment: %v", c.AuthRequireClaims)
	}

	// A config file may repeat the flag, one pair per line.
	clearEnv(t)
	cfgFile := filepath.Join(t.TempDir(), "conf")
	os.WriteFile(cfgFile, []byte("auth-jwt-key /k.pem\nauth-require-claim userid=dave\nauth-require-claim uid=7\n"), 0o600)
	c, err = Parse("pulse-sidecar", []string{"--config", cfgFile}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(c.AuthRequireClaims, map[string]string{"userid": "dave", "uid": "7"}) {
		t.Errorf("config file: %v", c.AuthRequireClaims)
	}
}

func TestAuthFlagErrors(t *testing.T) {
	clearEnv(t)
	key := []string{"--auth-jwt-key", "/k.pem"}
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--auth-jwt-key", "/k.pem", "--auth-jwt-secret-file", "/s"}, nil, "give one, not both"},
		{nil, map[string]string{"PULSE_SIDECAR_AUTH_JWT_KEY": "/k.pem", "PULSE_SIDECAR_AUTH_JWT_SECRET_FILE": "/s"}, "give one, not both"},
		{[]string{"--auth-jwt-key", "k.pem"}, nil, "--auth-jwt-key"},
		{append(key, "--auth-require-claim", "userid"), nil, "NAME=VALUE"},
		{append(key, "--auth-require-claim", "=alice"), nil, "NAME=VALUE"},
		{append(key, "--auth-require-claim", "userid="), nil, "empty value"},
		{append(key, "--auth-require-claim", "userid=$(ABCDESKTOP_USERID)"), nil, "not expanded"},
		{append(key, "--auth-require-claim", "userid=a", "--auth-require-claim", "userid=b"), nil, "twice"},
		{key, map[string]string{"PULSE_SIDECAR_AUTH_REQUIRE_CLAIM": "userid=a,uid"}, "NAME=VALUE"},
		{append(key, "--auth-leeway", "-1s"), nil, "--auth-leeway"},
		{[]string{"--auth-require-claim", "userid=alice"}, nil, "needs --auth-jwt-key"},
		{[]string{"--auth-jwt-audience", "pulse"}, nil, "needs --auth-jwt-key"},
		{[]string{"--auth-jwt-issuer", "abc"}, nil, "needs --auth-jwt-key"},
	} {
		for k, v := range tc.env {
			t.Setenv(k, v)
		}
		_, err := Parse("pulse-sidecar", tc.args, &bytes.Buffer{})
		for k := range tc.env {
			os.Unsetenv(k)
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v %v: error %v, want one line with %q", tc.args, tc.env, err, tc.want)
		}
	}
}
