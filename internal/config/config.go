// Package config turns the command line, the environment and an optional
// config file into the daemon's settings. The original image's variables
// (PULSEAUDIO_COOKIE, POD_IP, CONTAINER_IP_ADDR, PULSE_SERVER,
// ABCDESKTOP_RUN_DIR, ABCDESKTOP_LOG_DIR) keep working under their own
// names: they only change defaults, so an explicit flag always wins.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/peterbourgon/ff/v3"

	"github.com/pulse-sidecar/pulse-sidecar/internal/auth"
	"github.com/pulse-sidecar/pulse-sidecar/internal/microphone"
	"github.com/pulse-sidecar/pulse-sidecar/internal/origin"
	"github.com/pulse-sidecar/pulse-sidecar/internal/pulse"
	"github.com/pulse-sidecar/pulse-sidecar/internal/speaker"
)

// EnvPrefix is the prefix under which every flag can also be given, e.g.
// PULSE_SIDECAR_SPEAKER_ADDR for --speaker-addr.
const EnvPrefix = "PULSE_SIDECAR"

// Config is everything the daemon's actors need; main fills it and hands out
// the parts each actor needs.
type Config struct {
	SpeakerAddr    string
	MicrophoneAddr string
	OpsAddr        string
	SpeakerFIFO    string
	MicrophoneFIFO string
	PulseSocket    string
	PulseTCPAddr   string
	RunDir         string
	LogDir         string
	PulseAudio     string
	FFmpeg         string
	WarmSpeaker    bool
	EncoderLinger  time.Duration
	MicFormat      string
	MicRate        int
	MicChannels    int
	AllowedOrigins []string
	LogFormat      string
	LogLevel       slog.Level
	StopTimeout    time.Duration
	PingInterval   time.Duration
	SlowClose      time.Duration
	Pprof          bool

	// Websocket limits and deadlines (issue 10, sections 2 and 3).
	MaxListeners   int
	MaxConnections int
	MaxBehind      time.Duration
	EncoderStall   time.Duration

	// MicUndeclared is --mic-undeclared: what a microphone sender that
	// declares none of format, rate, channels gets (detect, passthrough or
	// a rate; see microphone.ParseUndeclared).
	MicUndeclared string
	// The Opus speaker stream and the built-in web client (issue 13).
	OpusBitrate int
	OpusFrame   time.Duration
	ClientPage  bool

	// Cookie is the 32-hex-digit PULSEAUDIO_COOKIE, empty when unset. It is
	// deliberately not a flag: a flag would show up in /proc/PID/cmdline.
	Cookie string

	// Authentication of the websockets (internal/auth). Neither file set:
	// the relays are open.
	AuthKeyFile       string
	AuthSecretFile    string
	AuthLeeway        time.Duration
	AuthAudience      string
	AuthIssuer        string
	AuthRequireClaims map[string]string
	// Live health, fallbacks and the cookie file (issue 10, sections 5-6).
	PulseWatchdog time.Duration
	// CookieFile names a file (a mounted secret) holding the same 32 hex
	// digits as PULSEAUDIO_COOKIE; Parse reads it into Cookie.
	CookieFile string
	// FallbackParent is where a private directory is created for the FIFOs
	// and the run dir when their configured places are not writable.
	FallbackParent string
}

// Parse reads args (without the program name) and the process environment
// into a Config. The returned error is one line naming the flag at fault;
// flag.ErrHelp is returned as is after usage was written to out.
func Parse(name string, args []string, out io.Writer) (Config, error) {
	env := os.LookupEnv
	var c Config
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	// The flag package prints a bad value's error and the whole usage; the
	// error is returned as one line instead, and usage only for --help.
	fs.SetOutput(io.Discard)
	d := defaults(env)

	var origins, logLevel string
	fs.StringVar(&c.SpeakerAddr, "speaker-addr", d.speakerAddr, "speaker websocket listen address (default from CONTAINER_IP_ADDR or POD_IP)")
	fs.StringVar(&c.MicrophoneAddr, "microphone-addr", d.micAddr, "microphone websocket listen address (default from CONTAINER_IP_ADDR or POD_IP)")
	fs.StringVar(&c.OpsAddr, "ops-addr", ":29780", "ops HTTP address: /healthz /readyz /metrics")
	fs.StringVar(&c.SpeakerFIFO, "speaker-fifo", "/container/speaker", "FIFO the encoder writes MPEG-TS into and the speaker relay reads")
	fs.StringVar(&c.MicrophoneFIFO, "microphone-fifo", "/container/microphone", "FIFO the microphone relay writes and PulseAudio's pipe source reads")
	fs.StringVar(&c.PulseSocket, "pulse-socket", d.pulseSocket, "PulseAudio native unix socket (default from PULSE_SERVER)")
	fs.StringVar(&c.PulseTCPAddr, "pulse-tcp-addr", d.pulseTCP, "PulseAudio TCP listen address, cookie-authenticated; empty disables (default CONTAINER_IP_ADDR:4713 when PULSEAUDIO_COOKIE is set)")
	fs.StringVar(&c.RunDir, "run-dir", d.runDir, "writable state: PulseAudio's HOME, rendered config, cookie (default from ABCDESKTOP_RUN_DIR)")
	fs.StringVar(&c.LogDir, "log-dir", d.logDir, "directory for pulse-sidecar.log besides stderr; empty: stderr only (default from ABCDESKTOP_LOG_DIR)")
	fs.StringVar(&c.PulseAudio, "pulseaudio", "/usr/bin/pulseaudio", "pulseaudio binary")
	fs.StringVar(&c.FFmpeg, "ffmpeg", "/usr/bin/ffmpeg", "ffmpeg binary")
	fs.BoolVar(&c.WarmSpeaker, "speaker-warm", false, "keep the speaker sink rendering in 30 ms blocks all the time (costs ~1.7% of a core while idle); without it the sink's clock is restarted when the encoder starts recording, ~35 ms later than with it (docs/BENCHMARKS.md)")
	fs.DurationVar(&c.EncoderLinger, "encoder-linger", 10*time.Second, "how long the encoder keeps running after the last speaker listener left")
	fs.StringVar(&c.MicFormat, "mic-format", "float32le", "microphone pipe source sample format: float32le or s16le")
	fs.IntVar(&c.MicRate, "mic-rate", 44100, "microphone pipe source sample rate in Hz")
	fs.IntVar(&c.MicChannels, "mic-channels", 1, "microphone pipe source channels")
	fs.StringVar(&origins, "allowed-origins", "", "comma-separated Origin values accepted on both websockets; empty: any")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.DurationVar(&c.StopTimeout, "stop-timeout", 5*time.Second, "after SIGTERM, exit within this long whatever the children do")
	fs.DurationVar(&c.PingInterval, "ping-interval", 20*time.Second, "websocket ping interval (proxies drop sockets silent for 60 s)")
	fs.DurationVar(&c.SlowClose, "slow-close", 10*time.Second, "close a speaker listener that stays behind this long")
	fs.IntVar(&c.MaxListeners, "max-listeners", 64, "speaker listeners at once; more get 503 with Retry-After before the upgrade")
	fs.IntVar(&c.MaxConnections, "max-connections", 4096, "TCP connections at once on each websocket port; more are accepted and closed at once")
	fs.DurationVar(&c.MaxBehind, "max-behind", 500*time.Millisecond, "how far a speaker listener may lag behind live audio, kernel send buffer included, before it skips to live")
	fs.DurationVar(&c.EncoderStall, "encoder-stall", 5*time.Second, "with listeners connected and no stream from the encoder this long, report not ready and restart it")
	fs.BoolVar(&c.Pprof, "pprof", false, "serve /debug/pprof on the ops address")
	// Issue 13: the Opus speaker stream and the web client.
	fs.IntVar(&c.OpusBitrate, "opus-bitrate", 96000, "bitrate of the speaker's Opus stream (?codec=opus) in bits/s")
	fs.DurationVar(&c.OpusFrame, "opus-frame", 10*time.Millisecond, "Opus frame duration: 2.5ms, 5ms, 10ms or 20ms (one Ogg page per frame)")
	fs.BoolVar(&c.ClientPage, "client-page", true, "serve the built-in web client (GET / and its scripts) on the speaker port; false: plain requests get 404")
	fs.String("config", "", "config file: one 'flag value' per line")
	// Live health, fallbacks and the cookie file.
	fs.DurationVar(&c.PulseWatchdog, "pulse-watchdog", 10*time.Second, "kill and restart a PulseAudio that has not answered the health probe for this long; 0 disables")
	fs.StringVar(&c.CookieFile, "cookie-file", "", "file holding the 32 hex digits of PULSEAUDIO_COOKIE (e.g. a mounted secret), so the cookie need not be in the environment")
	fs.StringVar(&c.FallbackParent, "fallback-parent", "/run", "when a FIFO's directory or the run dir is not writable, a private directory is created under this one instead")

	// Authentication: see README "Authentication".
	claims := claimList{}
	fs.StringVar(&c.AuthKeyFile, "auth-jwt-key", "", "PEM file of the public key(s) verifying the websockets' JWT (RSA >= 2048 bits, ECDSA P-256/P-384, Ed25519; several = rotation); empty: no authentication")
	fs.StringVar(&c.AuthSecretFile, "auth-jwt-secret-file", "", "file holding the HS256/384/512 secret (>= 32 bytes), instead of --auth-jwt-key")
	fs.DurationVar(&c.AuthLeeway, "auth-leeway", auth.DefaultLeeway, "clock skew allowed for the token's exp, nbf and iat")
	fs.StringVar(&c.AuthAudience, "auth-jwt-audience", "", "when set, the token's aud must contain it")
	fs.StringVar(&c.AuthIssuer, "auth-jwt-issuer", "", "when set, the token's iss must equal it")
	fs.Var(claims, "auth-require-claim", "NAME=VALUE: the token's claim NAME must be VALUE (repeatable; commas separate pairs, \\, is a literal comma)")

	// Undeclared microphone streams: see README "Undeclared microphone streams".
	fs.StringVar(&c.MicUndeclared, "mic-undeclared", "detect", "microphone senders declaring no format, rate or channels (abcdesktop's client): detect (float32 mono, rate found from arrivals), passthrough (bytes as the pipe format, the original's behaviour) or a rate (float32 mono at that rate)")

	fs.Usage = func() {}

	err := ff.Parse(fs, args,
		ff.WithEnvVarPrefix(EnvPrefix),
		ff.WithEnvVarSplit(""),
		ff.WithConfigFileFlag("config"),
		ff.WithConfigFileParser(ff.PlainParser),
		ff.WithAllowMissingConfigFile(false),
	)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(fs, out)
			return c, err
		}
		return c, oneLine(err)
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := applyEmptyEnv(fs, args, env); err != nil {
		return c, err
	}
	c.Cookie = d.cookie
	if c.CookieFile != "" {
		if err := c.readCookieFile(); err != nil {
			return c, err
		}
		tcpSet := false
		fs.Visit(func(f *flag.Flag) { tcpSet = tcpSet || f.Name == "pulse-tcp-addr" })
		if !tcpSet && c.PulseTCPAddr == "" {
			c.PulseTCPAddr = d.pulseTCPWithCookie
		}
	}
	c.AllowedOrigins = splitList(origins)
	if len(claims) > 0 {
		c.AuthRequireClaims = claims
	}
	if err := c.LogLevel.UnmarshalText([]byte(logLevel)); err != nil {
		return c, fmt.Errorf("--log-level %q: want debug, info, warn or error", logLevel)
	}
	return c, c.validate()
}

// applyEmptyEnv gives PULSE_SIDECAR_X= (set, empty) its meaning for string
// flags: ff ignores empty variables, but for --pulse-tcp-addr and --log-dir
// empty is how a deployment turns a feature off. The command line still
// wins.
func applyEmptyEnv(fs *flag.FlagSet, args []string, env func(string) (string, bool)) error {
	onCommandLine := map[string]bool{}
	for _, a := range args {
		if a == "--" {
			break
		}
		if strings.HasPrefix(a, "-") {
			name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
			onCommandLine[name] = true
		}
	}
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		g, ok := f.Value.(flag.Getter)
		if _, isString := g.Get().(string); !ok || !isString || onCommandLine[f.Name] || err != nil {
			return
		}
		if v, set := env(EnvPrefix + "_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))); set && v == "" {
			err = fs.Set(f.Name, "")
		}
	})
	return err
}

type defaultValues struct {
	speakerAddr, micAddr, pulseSocket, pulseTCP, runDir, logDir, cookie string
	pulseTCPWithCookie                                                  string
}

func defaults(env func(string) (string, bool)) defaultValues {
	get := func(k string) string { v, _ := env(k); return strings.TrimSpace(v) }
	host := get("CONTAINER_IP_ADDR")
	if host == "" {
		host = get("POD_IP")
	}
	bind := host
	if bind == "" {
		bind = "0.0.0.0"
	}
	d := defaultValues{
		speakerAddr: net.JoinHostPort(bind, "29788"),
		micAddr:     net.JoinHostPort(bind, "29789"),
		pulseSocket: "/tmp/.pulse.sock",
		runDir:      "/var/run/desktop",
		logDir:      "/var/log/desktop",
		cookie:      get("PULSEAUDIO_COOKIE"),
	}
	if p, ok := unixServer(get("PULSE_SERVER")); ok {
		d.pulseSocket = p
	}
	if v, ok := env("ABCDESKTOP_RUN_DIR"); ok && v != "" {
		d.runDir = v
	}
	if v, ok := env("ABCDESKTOP_LOG_DIR"); ok {
		d.logDir = v
	}
	d.pulseTCPWithCookie = net.JoinHostPort(bind, "4713")
	if d.cookie != "" {
		d.pulseTCP = d.pulseTCPWithCookie
	}
	return d
}

// unixServer picks the unix socket out of a PULSE_SERVER value: a list of
// servers separated by spaces, each "unix:PATH", a bare "/PATH", or
// something this daemon does not listen on (tcp:HOST, a host name), which
// is skipped. The desktop's PULSE_SERVER may well name a TCP server; that
// must not break the daemon or its healthcheck.
func unixServer(v string) (string, bool) {
	for _, s := range strings.Fields(v) {
		if p, ok := strings.CutPrefix(s, "unix:"); ok {
			return p, true
		}
		if strings.HasPrefix(s, "/") {
			return s, true
		}
	}
	return "", false
}

// readCookieFile reads --cookie-file into Cookie: 32 hex digits, surrounding
// whitespace (a trailing newline from a Secret) ignored.
func (c *Config) readCookieFile() error {
	if c.Cookie != "" {
		return errors.New("--cookie-file and PULSEAUDIO_COOKIE are both set: use one")
	}
	b, err := os.ReadFile(c.CookieFile)
	if err != nil {
		return fmt.Errorf("--cookie-file: %w", err)
	}
	v := strings.TrimSpace(string(b))
	if !isHex32(v) {
		// The content is a secret: name the file, never echo it.
		return fmt.Errorf("--cookie-file %q: want exactly 32 hexadecimal digits", c.CookieFile)
	}
	c.Cookie = v
	return nil
}

func (c *Config) validate() error {
	for _, a := range []struct{ flag, v string }{
		{"speaker-addr", c.SpeakerAddr}, {"microphone-addr", c.MicrophoneAddr}, {"ops-addr", c.OpsAddr},
	} {
		if err := checkAddr(a.v); err != nil {
			return fmt.Errorf("--%s %q: %v", a.flag, a.v, err)
		}
	}
	if c.PulseTCPAddr != "" {
		if err := pulse.CheckTCPAddr(c.PulseTCPAddr); err != nil {
			return fmt.Errorf("--pulse-tcp-addr %q: %v", c.PulseTCPAddr, err)
		}
		if c.Cookie == "" {
			return errors.New("--pulse-tcp-addr needs PULSEAUDIO_COOKIE: PulseAudio over TCP without a cookie would accept anyone")
		}
	}
	for _, p := range []struct{ flag, v string }{
		{"speaker-fifo", c.SpeakerFIFO}, {"microphone-fifo", c.MicrophoneFIFO}, {"pulse-socket", c.PulseSocket},
		{"run-dir", c.RunDir}, {"pulseaudio", c.PulseAudio}, {"ffmpeg", c.FFmpeg},
	} {
		if err := checkPath(p.v); err != nil {
			return fmt.Errorf("--%s %q: %v", p.flag, p.v, err)
		}
	}
	if c.LogDir != "" {
		if err := checkPath(c.LogDir); err != nil {
			return fmt.Errorf("--log-dir %q: %v", c.LogDir, err)
		}
	}
	// sun_path holds 108 bytes including the terminating NUL.
	if len(c.PulseSocket) > 107 {
		return fmt.Errorf("--pulse-socket %q: longer than the 107 bytes a unix socket path can have", c.PulseSocket)
	}
	if _, err := microphone.ParsePipeEncoding(c.MicFormat); err != nil {
		return fmt.Errorf("--mic-format %q: want float32le or s16le", c.MicFormat)
	}
	if _, err := microphone.PipeFormat(c.MicFormat, c.MicRate, c.MicChannels); err != nil {
		flag := "--mic-rate"
		if c.MicChannels < 1 || c.MicChannels > microphone.MaxChannels {
			flag = "--mic-channels"
		}
		return fmt.Errorf("%s: %v", flag, err)
	}
	if _, err := microphone.ParseUndeclared(c.MicUndeclared); err != nil {
		return fmt.Errorf("--mic-undeclared %v", err)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return fmt.Errorf("--log-format %q: want text or json", c.LogFormat)
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
		min  time.Duration
	}{
		{"encoder-linger", c.EncoderLinger, 0}, {"stop-timeout", c.StopTimeout, 100 * time.Millisecond},
		{"ping-interval", c.PingInterval, 100 * time.Millisecond}, {"slow-close", c.SlowClose, 100 * time.Millisecond},
		{"max-behind", c.MaxBehind, 100 * time.Millisecond}, {"encoder-stall", c.EncoderStall, time.Second},
	} {
		if d.v < d.min {
			return fmt.Errorf("--%s %s: must be at least %s", d.flag, d.v, d.min)
		}
	}
	if c.PulseWatchdog < 0 {
		return fmt.Errorf("--pulse-watchdog %s: must not be negative (0 disables it)", c.PulseWatchdog)
	}
	if c.PulseWatchdog > 0 && c.PulseWatchdog < 2*time.Second {
		return fmt.Errorf("--pulse-watchdog %s: must be at least 2s (PulseAudio is probed every second) or 0", c.PulseWatchdog)
	}
	if err := checkPath(c.FallbackParent); err != nil {
		return fmt.Errorf("--fallback-parent %q: %v", c.FallbackParent, err)
	}
	switch c.FallbackParent {
	case "/tmp", "/var/tmp", "/dev/shm":
		// The desktop shares /tmp with the sidecar and could plant links
		// there; private files belong in /run.
		return fmt.Errorf("--fallback-parent %q: a shared directory; use /run", c.FallbackParent)
	}
	for _, l := range []struct {
		flag string
		v    int
	}{{"max-listeners", c.MaxListeners}, {"max-connections", c.MaxConnections}} {
		if l.v < 1 {
			return fmt.Errorf("--%s %d: must be at least 1", l.flag, l.v)
		}
	}
	if c.OpusBitrate < 6000 || c.OpusBitrate > 510000 {
		return fmt.Errorf("--opus-bitrate %d: want 6000..510000", c.OpusBitrate)
	}
	if !slices.Contains(speaker.OpusFrames, c.OpusFrame) {
		return fmt.Errorf("--opus-frame %s: want 2.5ms, 5ms, 10ms or 20ms", c.OpusFrame)
	}
	if err := origin.Validate(c.AllowedOrigins); err != nil {
		return fmt.Errorf("--allowed-origins: %v", err)
	}
	if err := c.validateAuth(); err != nil {
		return err
	}
	if c.Cookie != "" && !isHex32(c.Cookie) {
		// The value is a secret: name the variable, never echo it.
		return errors.New("PULSEAUDIO_COOKIE: want exactly 32 hexadecimal digits")
	}
	return nil
}

func (c *Config) validateAuth() error {
	if c.AuthKeyFile != "" && c.AuthSecretFile != "" {
		return errors.New("--auth-jwt-key and --auth-jwt-secret-file: give one, not both")
	}
	for _, p := range []struct{ flag, v string }{{"auth-jwt-key", c.AuthKeyFile}, {"auth-jwt-secret-file", c.AuthSecretFile}} {
		if p.v != "" && !strings.HasPrefix(p.v, "/") {
			return fmt.Errorf("--%s %q: want an absolute path", p.flag, p.v)
		}
	}
	if c.AuthLeeway < 0 {
		return fmt.Errorf("--auth-leeway %s: must not be negative", c.AuthLeeway)
	}
	// Binding settings without a key would look like protection and be
	// none: the relays would be open.
	if c.AuthKeyFile == "" && c.AuthSecretFile == "" {
		for _, f := range []struct {
			flag string
			set  bool
		}{{"auth-jwt-audience", c.AuthAudience != ""}, {"auth-jwt-issuer", c.AuthIssuer != ""}, {"auth-require-claim", len(c.AuthRequireClaims) > 0}} {
			if f.set {
				return fmt.Errorf("--%s needs --auth-jwt-key or --auth-jwt-secret-file: without a key nothing is checked", f.flag)
			}
		}
	}
	return nil
}

// claimList is --auth-require-claim. Set is called once per flag on the
// command line and once per line of the config file, but ff hands an
// environment variable over whole, once: so a comma separates pairs in
// every source, and "\," stands for a comma inside a value. As for every
// flag, the sources do not merge: pairs on the command line replace those
// of the environment, which replace those of the config file.
type claimList map[string]string

func (l claimList) String() string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(l)) {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k + "=" + strings.ReplaceAll(l[k], ",", `\,`))
	}
	return b.String()
}

// Get makes it a flag.Getter, which applyEmptyEnv relies on.
func (l claimList) Get() any { return map[string]string(l) }

func (l claimList) Set(s string) error {
	for _, pair := range splitUnescaped(s) {
		name, value, ok := strings.Cut(strings.TrimSpace(pair), "=")
		name = strings.TrimSpace(name)
		switch {
		case strings.TrimSpace(pair) == "":
			continue
		case !ok || name == "":
			return fmt.Errorf("%q: want NAME=VALUE", pair)
		case value == "":
			// An empty value is nearly always an unset variable in the
			// deployment, and would match a token with an empty claim.
			return fmt.Errorf("%s: empty value (is the variable meant to fill it set?)", name)
		case strings.HasPrefix(value, "$(") && strings.HasSuffix(value, ")"):
			// Kubernetes leaves $(VAR) as is when VAR is not defined.
			return fmt.Errorf("%s=%s: the variable was not expanded", name, value)
		}
		if old, dup := l[name]; dup && old != value {
			return fmt.Errorf("%s: required twice with different values", name)
		}
		l[name] = value
	}
	return nil
}

// splitUnescaped splits s at commas not preceded by a backslash and turns
// "\," into ",".
func splitUnescaped(s string) []string {
	var out []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s) && s[i+1] == ',':
			cur.WriteByte(',')
			i++
		case s[i] == ',':
			out = append(out, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(s[i])
		}
	}
	return append(out, cur.String())
}

func checkAddr(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return errors.New("want host:port")
	}
	if host != "" && net.ParseIP(host) == nil && host != "localhost" {
		return errors.New("host must be an IP address, localhost or empty")
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return errors.New("port must be 0..65535")
	}
	return nil
}

// checkPath holds every path to what PulseAudio accepts as a module
// argument: the FIFOs and the socket end up in its script, and one rule for
// all paths is easier to explain than two.
func checkPath(p string) error {
	if p == "" {
		return errors.New("must not be empty")
	}
	return pulse.CheckPath(p)
}

func isHex32(s string) bool {
	if len(s) != 32 {
		return false
	}
	for _, r := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
			return false
		}
	}
	return true
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// oneLine turns ff's and flag's errors into one line naming the flag.
func oneLine(err error) error {
	return errors.New(strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; "))
}

func usage(fs *flag.FlagSet, out io.Writer) {
	fmt.Fprintf(out, "Usage: %s [run|healthcheck|version] [flags]\n\n", fs.Name())
	fmt.Fprintf(out, "Every flag can also be set in the environment as %s_<FLAG> (dashes become\n", EnvPrefix)
	fmt.Fprintf(out, "underscores, upper case) or in a --config file; flags win over the environment.\n\nFlags:\n")
	fs.VisitAll(func(f *flag.Flag) {
		env := EnvPrefix + "_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		def := ""
		if f.DefValue != "" {
			def = fmt.Sprintf(" (default %q)", f.DefValue)
		}
		fmt.Fprintf(out, "  --%s\n      %s%s\n      env %s\n", f.Name, f.Usage, def, env)
	})
	fmt.Fprint(out, `
Variables of the original image, read under their own names:
  PULSEAUDIO_COOKIE   32 hex digits; PulseAudio's cookie (never logged), enables TCP
  CONTAINER_IP_ADDR   address the websockets and PulseAudio TCP listen on (else POD_IP)
  POD_IP              see CONTAINER_IP_ADDR
  PULSE_SERVER        default for --pulse-socket: its first unix:PATH or /PATH entry
                      (tcp: entries are the desktop's business and ignored)
  ABCDESKTOP_RUN_DIR  default for --run-dir
  ABCDESKTOP_LOG_DIR  default for --log-dir
`)
}

// CheckBinaries makes a wrong --pulseaudio or --ffmpeg a
// start-up error naming the flag, instead of a child that fails and is
// restarted forever. Only the daemon calls it: healthcheck and version run
// without those programs.
func (c *Config) CheckBinaries() error {
	for _, b := range []struct{ flag, path string }{
		{"pulseaudio", c.PulseAudio}, {"ffmpeg", c.FFmpeg},
	} {
		if b.path == "" {
			continue
		}
		fi, err := os.Stat(b.path)
		if err != nil {
			return fmt.Errorf("--%s %q: %v", b.flag, b.path, err)
		}
		if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return fmt.Errorf("--%s %q: not an executable file", b.flag, b.path)
		}
	}
	return nil
}
