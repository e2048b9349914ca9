// Package pulse runs PulseAudio for the sidecar: it renders PulseAudio's
// startup script and daemon.conf from a Config, writes the auth cookie,
// probes the native socket for readiness and keeps the daemon running.
package pulse

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
)

// Config is what PulseAudio needs to know from the sidecar's configuration.
type Config struct {
	Socket      string // native unix socket, e.g. /tmp/.pulse.sock
	TCPAddr     string // host:port of the native TCP module; empty: no TCP module, empty host: all addresses
	CookieFile  string // auth cookie for both native modules
	MicFIFO     string // FIFO that module-pipe-source creates and reads
	MicFormat   string // "float32le" or "s16le"
	MicRate     int
	MicChannels int
	// RunDir holds HOME, the runtime dir and the rendered files: the root
	// file system is read-only, so PulseAudio's state must live here.
	RunDir string
	// WarmSpeaker keeps the speaker sink rendering in small blocks all the
	// time (see warmLines). Without it the Daemon restarts the sink's clock
	// when the encoder starts recording (watchSpeakerMonitor), which costs
	// nothing while idle.
	WarmSpeaker bool
}

// The speaker sink is fixed: the encoder reads speaker.monitor at exactly
// this spec, and desktop clients are mono.
const (
	sinkName   = "speaker"
	sourceName = "microphone"
	sinkSpec   = "format=s16le rate=44100 channels=1"
)

// warmLines keep the speaker warm. An idle module-null-sink renders in
// blocks of its maximum latency (2 s), and a recording stream that connects
// (the encoder, started on the first listener) waits for the current block
// to end: measured here, ffmpeg's first byte came after 2.07 s. A loopback
// from speaker.monitor into a second, internal null sink asks for 30 ms, so
// the speaker renders in 30 ms blocks; suspending and resuming the speaker
// once restarts its clock so that this holds from the first moment, not
// only after the first 2 s block. Then ffmpeg's first byte comes after
// ~0.19 s, for ~1 % of a core while idle, inside PulseAudio (no extra
// process). The internal sink is pinned (dont_move) and never the default.
const warmLines = `load-module module-null-sink sink_name=speaker_warmer format=s16le rate=44100 channels=1 sink_properties=device.description=pulse-sidecar-internal
load-module module-loopback source=speaker.monitor sink=speaker_warmer latency_msec=30 source_dont_move=true sink_dont_move=true
suspend-sink speaker 1
suspend-sink speaker 0
`

// maxSocketPath is sun_path's 108 bytes minus the terminating NUL.
const maxSocketPath = 107

// Render returns PulseAudio's startup script (for --file) and its daemon.conf
// (read through PULSE_CONFIG). Every load-module is fatal on failure (no
// .nofail), so a broken config stops PulseAudio instead of running it
// half-configured.
func Render(c Config) (defaultPA []byte, daemonConf []byte, err error) {
	if err := c.validate(); err != nil {
		return nil, nil, err
	}
	var pa bytes.Buffer
	pa.WriteString("# Rendered by pulse-sidecar; changes are overwritten on every start.\n")
	fmt.Fprintf(&pa, "load-module module-null-sink sink_name=%s %s sink_properties=device.description=Speaker\n",
		sinkName, sinkSpec)
	if c.WarmSpeaker {
		pa.WriteString(warmLines)
	}
	fmt.Fprintf(&pa, "load-module module-pipe-source source_name=%s file=%s format=%s rate=%d channels=%d source_properties=device.description=Microphone\n",
		sourceName, c.MicFIFO, c.MicFormat, c.MicRate, c.MicChannels)
	fmt.Fprintf(&pa, "load-module module-native-protocol-unix socket=%s auth-cookie=%s auth-cookie-enabled=1\n",
		c.Socket, c.CookieFile)
	if c.TCPAddr != "" {
		host, port, _ := splitTCP(c.TCPAddr) // validated above
		pa.WriteString("load-module module-native-protocol-tcp")
		if host.IsValid() {
			// The module takes IPv6 literals without brackets.
			fmt.Fprintf(&pa, " listen=%s", host)
		}
		fmt.Fprintf(&pa, " port=%d auth-cookie=%s auth-cookie-enabled=1 auth-anonymous=0\n", port, c.CookieFile)
	}
	pa.WriteString("load-module module-always-sink\n")
	fmt.Fprintf(&pa, "set-default-sink %s\n", sinkName)
	fmt.Fprintf(&pa, "set-default-source %s\n", sourceName)

	conf := []byte(`# Rendered by pulse-sidecar; changes are overwritten on every start.
daemonize = no
system-instance = no
allow-exit = no
exit-idle-time = -1
use-pid-file = no
high-priority = no
realtime-scheduling = no
no-cpu-limit = yes
log-target = stderr
flat-volumes = no
default-sample-format = s16le
default-sample-rate = 44100
default-sample-channels = 1
default-channel-map = mono
`)
	return pa.Bytes(), conf, nil
}

func (c Config) validate() error {
	for _, p := range []struct{ name, path string }{
		{"socket", c.Socket},
		{"cookie file", c.CookieFile},
		{"microphone FIFO", c.MicFIFO},
		{"run dir", c.RunDir},
	} {
		if err := checkPath(p.path); err != nil {
			return fmt.Errorf("pulse config: %s: %w", p.name, err)
		}
	}
	if len(c.Socket) > maxSocketPath {
		return fmt.Errorf("pulse config: socket: %d bytes, unix socket paths are limited to %d", len(c.Socket), maxSocketPath)
	}
	switch c.MicFormat {
	case "float32le", "s16le":
	default:
		return fmt.Errorf("pulse config: microphone format %q: want float32le or s16le", c.MicFormat)
	}
	if c.MicRate < 8000 || c.MicRate > 192000 {
		return fmt.Errorf("pulse config: microphone rate %d: want 8000..192000", c.MicRate)
	}
	if c.MicChannels < 1 || c.MicChannels > 2 {
		return fmt.Errorf("pulse config: microphone channels %d: want 1 or 2", c.MicChannels)
	}
	if c.TCPAddr != "" {
		if _, _, err := splitTCP(c.TCPAddr); err != nil {
			return fmt.Errorf("pulse config: TCP address %q: %w", c.TCPAddr, err)
		}
	}
	return nil
}

// CheckPath reports whether p can be passed to PulseAudio as a module
// argument; the daemon's flag parsing uses it so a bad path fails at start,
// naming the flag, not later inside the PulseAudio actor.
func CheckPath(p string) error { return checkPath(p) }

// CheckTCPAddr reports whether s can be the TCP module's listen address.
func CheckTCPAddr(s string) error {
	_, _, err := splitTCP(s)
	return err
}

// checkPath accepts clean absolute paths made of characters that cannot end
// or quote a module argument: PulseAudio splits arguments at whitespace and
// honours quotes and backslashes, so any of them would let a value inject
// arguments of its own.
func checkPath(p string) error {
	if p == "" {
		return fmt.Errorf("empty path")
	}
	if !filepath.IsAbs(p) || filepath.Clean(p) != p {
		return fmt.Errorf("%q is not a clean absolute path", p)
	}
	for _, r := range p {
		if r <= ' ' || r == 0x7f || strings.ContainsRune(`'"\#;$`, r) {
			return fmt.Errorf("%q: character %q is not allowed in a module argument", p, r)
		}
	}
	return nil
}

// splitTCP parses host:port; an empty host is returned as the zero Addr
// (listen on all addresses). Hosts must be IP literals: the module binds to
// an address, it does not resolve names.
func splitTCP(s string) (netip.Addr, uint16, error) {
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return netip.Addr{}, 0, err
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil || port == 0 {
		return netip.Addr{}, 0, fmt.Errorf("port %q: want 1..65535", p)
	}
	if h == "" {
		return netip.Addr{}, uint16(port), nil
	}
	a, err := netip.ParseAddr(h)
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("host %q: want an IP address", h)
	}
	if a.Zone() != "" {
		return netip.Addr{}, 0, fmt.Errorf("host %q: zones are not supported", h)
	}
	return a.Unmap(), uint16(port), nil
}
