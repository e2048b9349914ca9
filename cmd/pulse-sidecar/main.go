// Command pulse-sidecar is the sidecar's PID 1: it supervises PulseAudio,
// runs the speaker relay (which owns the ffmpeg encoder), the microphone relay
// and the ops server as one oklog/run group.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/pulse-sidecar/pulse-sidecar/internal/auth"
	"github.com/pulse-sidecar/pulse-sidecar/internal/config"
	"github.com/pulse-sidecar/pulse-sidecar/internal/fifo"
	"github.com/pulse-sidecar/pulse-sidecar/internal/logging"
	"github.com/pulse-sidecar/pulse-sidecar/internal/microphone"
	"github.com/pulse-sidecar/pulse-sidecar/internal/ops"
	"github.com/pulse-sidecar/pulse-sidecar/internal/privdir"
	"github.com/pulse-sidecar/pulse-sidecar/internal/pulse"
	"github.com/pulse-sidecar/pulse-sidecar/internal/speaker"
	"github.com/pulse-sidecar/pulse-sidecar/internal/supervise"
	"github.com/pulse-sidecar/pulse-sidecar/internal/webclient"
	"github.com/pulse-sidecar/pulse-sidecar/internal/wsserver"
)

// version is set at link time (-X main.version=...) by imagectl and the Nix
// and Bazel front ends.
var version = "dev"

func main() {
	os.Exit(mainErr(os.Args[1:], os.Stdout, os.Stderr))
}

func mainErr(args []string, stdout, stderr io.Writer) int {
	sub := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		sub, args = args[0], args[1:]
	}
	name := "pulse-sidecar"
	if sub != "run" {
		name += " " + sub
	}
	switch sub {
	case "version":
		printVersion(stdout)
		return 0
	case "run", "healthcheck":
	default:
		fmt.Fprintf(stderr, "pulse-sidecar: unknown command %q (want run, healthcheck or version)\n", sub)
		return 2
	}
	cfg, err := config.Parse(name, args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "pulse-sidecar: %v\n", err)
		return 2
	}
	if sub == "healthcheck" {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := ops.Healthcheck(ctx, cfg.OpsAddr); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		return 0
	}
	if err := daemon(cfg, stderr); err != nil {
		fmt.Fprintf(stderr, "pulse-sidecar: %v\n", err)
		return 1
	}
	return 0
}

// placeWritable moves the FIFOs and the run dir into one private directory
// when their configured places are not writable (a read-only container with
// nothing mounted but /tmp), and says so once.
func placeWritable(cfg *config.Config, fb *privdir.Fallback, log *slog.Logger) error {
	var moved []string
	var why error
	for _, p := range []struct {
		name string
		path *string
		dir  bool
	}{{"speaker-fifo", &cfg.SpeakerFIFO, false}, {"microphone-fifo", &cfg.MicrophoneFIFO, false}, {"run-dir", &cfg.RunDir, true}} {
		place := fb.File
		if p.dir {
			place = fb.Directory
		}
		to, m, err := place(*p.path)
		if err != nil {
			return fmt.Errorf("--%s: %w", p.name, err)
		}
		if m != nil {
			moved = append(moved, fmt.Sprintf("%s=%s", p.name, to))
			why = m.Why
		}
		*p.path = to
	}
	if len(moved) > 0 {
		log.Warn("configured places not writable; using a private directory instead",
			"dir", fb.Created(), "moved", strings.Join(moved, " "), "why", why)
	}
	return nil
}

// watchdog maps --pulse-watchdog (0: off) onto pulse.Daemon's (negative: off).
func watchdog(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

func printVersion(w io.Writer) {
	fmt.Fprintf(w, "pulse-sidecar %s\n", version)
	fmt.Fprintf(w, "go %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Replace != nil {
				m = m.Replace
			}
			fmt.Fprintf(w, "%s %s\n", m.Path, m.Version)
		}
	}
}

func daemon(cfg config.Config, stderr io.Writer) error {
	log, logFile := logging.New(logging.Options{
		Format: cfg.LogFormat, Level: cfg.LogLevel, Stderr: stderr, Dir: cfg.LogDir,
	})
	defer logFile.Close()
	// Listen for signals before anything else: as PID 1 a SIGTERM that comes
	// while the ports are being bound would otherwise be dropped, and podman
	// would wait its whole timeout.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	// SIGHUP reloads the auth keys. Caught from the start, whether auth is
	// on or not: its default action would end the daemon (PID 1 is spared
	// only inside a PID namespace).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	// Children get an explicit environment without it (supervise never passes
	// the daemon's on); dropping it here as well is defence in depth.
	os.Unsetenv("PULSEAUDIO_COOKIE")
	if err := cfg.CheckBinaries(); err != nil {
		return err
	}

	fallback := &privdir.Fallback{Parent: cfg.FallbackParent}
	if err := placeWritable(&cfg, fallback, log); err != nil {
		return err
	}
	cookie := pulse.RandomCookie()
	if cfg.Cookie != "" {
		var err error
		if cookie, err = pulse.CookieBytes(cfg.Cookie); err != nil {
			return err
		}
	}
	cookieFile := filepath.Join(cfg.RunDir, "cookie")
	// What the daemon leaves behind when it stops, however it stops: the
	// cookie (a secret), the FIFOs and the socket. The actors remove them on
	// a normal stop; this also covers the --stop-timeout exit.
	cleanup := sync.OnceFunc(func() {
		os.Remove(cookieFile)
		for _, f := range []string{cfg.SpeakerFIFO, cfg.MicrophoneFIFO} {
			if err := fifo.Remove(f); err != nil {
				log.Warn("cleanup", "err", err)
			}
		}
		if fi, err := os.Lstat(cfg.PulseSocket); err == nil && fi.Mode()&os.ModeSocket != 0 {
			os.Remove(cfg.PulseSocket)
		}
		// Made fresh by this process and writable by nobody else.
		if dir := fallback.Created(); dir != "" {
			os.RemoveAll(dir)
		}
	})
	defer cleanup()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ready := ops.NewReadiness("pulseaudio", "speaker", "microphone")

	reapAll, err := supervise.ReapAllWanted()
	if err != nil {
		return err
	}
	// authVerifier checks the websockets' JWT; nil when neither
	// --auth-jwt-key nor --auth-jwt-secret-file is set, and then the relays
	// are open. The shared websocket layer hands it to both relays.
	var authVerifier *auth.Verifier
	if cfg.AuthKeyFile != "" || cfg.AuthSecretFile != "" {
		authVerifier, err = auth.New(auth.Config{
			KeyFile: cfg.AuthKeyFile, SecretFile: cfg.AuthSecretFile, Leeway: cfg.AuthLeeway,
			Audience: cfg.AuthAudience, Issuer: cfg.AuthIssuer, RequireClaims: cfg.AuthRequireClaims,
			Log: log.With("actor", "auth"), Registerer: reg,
		})
		if err != nil {
			return err
		}
	} else {
		log.Warn("authentication is off: anyone who reaches the speaker and microphone ports can listen and talk; set --auth-jwt-key or --auth-jwt-secret-file")
	}

	reaper := supervise.NewReaper(log.With("actor", "reaper"), reapAll)
	// The reaper outlives the group on purpose: actors stopping their
	// children during shutdown still need their exit statuses.
	reaperCtx, stopReaper := context.WithCancel(context.Background())
	reaperDone := make(chan error, 1)
	go func() { reaperDone <- reaper.Run(reaperCtx) }()
	defer func() { stopReaper(); <-reaperDone }()

	grace := cfg.StopTimeout * 6 / 10

	pa, err := pulse.New(pulse.DaemonConfig{
		Config: pulse.Config{
			Socket: cfg.PulseSocket, TCPAddr: cfg.PulseTCPAddr, CookieFile: cookieFile,
			MicFIFO: cfg.MicrophoneFIFO, MicFormat: cfg.MicFormat, MicRate: cfg.MicRate,
			MicChannels: cfg.MicChannels, RunDir: cfg.RunDir, WarmSpeaker: cfg.WarmSpeaker,
		},
		Binary: cfg.PulseAudio, Cookie: cookie, Reaper: reaper, Grace: grace,
		Log: log.With("actor", "pulseaudio"), Ready: ready.Setter("pulseaudio"), Registerer: reg,
		Watchdog: watchdog(cfg.PulseWatchdog),
	})
	if err != nil {
		return fmt.Errorf("pulseaudio: %w", err)
	}
	// The websocket ports' common settings: one limit, one origin policy,
	// one ping policy for both relays.
	wsBase := wsserver.Config{
		AllowedOrigins: cfg.AllowedOrigins, MaxConnections: cfg.MaxConnections,
		PingInterval: cfg.PingInterval, Unauthorized: auth.Refuse,
	}
	if authVerifier != nil { // a nil *Verifier in the interface would not be nil
		wsBase.Auth = authVerifier
	}
	spkServer := wsBase
	spkServer.Addr = cfg.SpeakerAddr
	// Issue 13: the web client on plain GETs of the speaker port (a secure
	// origin behind the router or through port-forward); off, plain
	// requests get 404.
	spkServer.Plain = http.NotFoundHandler()
	if cfg.ClientPage {
		spkServer.Plain = webclient.Handler()
	}
	spk, err := speaker.New(speaker.Config{
		Server: spkServer, FIFO: cfg.SpeakerFIFO, FFmpeg: cfg.FFmpeg,
		PulseServer: "unix:" + cfg.PulseSocket, CookieFile: cookieFile,
		Linger: cfg.EncoderLinger, StallAfter: cfg.EncoderStall,
		MaxListeners: cfg.MaxListeners, MaxBehind: cfg.MaxBehind, SlowCloseAfter: cfg.SlowClose,
		OpusBitrate: cfg.OpusBitrate, OpusFrame: cfg.OpusFrame,
		Grace: min(grace, speaker.MaxEncoderGrace), Reaper: reaper, Log: log.With("actor", "speaker"),
		Ready: ready.Setter("speaker"), Registerer: reg,
	})
	if err != nil {
		return fmt.Errorf("speaker: %w", err)
	}
	micServer := wsBase
	micServer.Addr = cfg.MicrophoneAddr
	// Validated in config.Parse.
	undeclared, _ := microphone.ParseUndeclared(cfg.MicUndeclared)
	mic, err := microphone.New(microphone.Config{
		Undeclared: undeclared,
		Server:     micServer, FIFO: cfg.MicrophoneFIFO, Format: cfg.MicFormat,
		Rate: cfg.MicRate, Channels: cfg.MicChannels, Log: log.With("actor", "microphone"),
		FFmpeg: cfg.FFmpeg, Reaper: reaper, // ?format=opus decoders
		Ready: ready.Setter("microphone"), Registerer: reg,
	})
	if err != nil {
		return fmt.Errorf("microphone: %w", err)
	}
	opsSrv, err := ops.New(ops.Config{
		Addr: cfg.OpsAddr, Readiness: ready, Gatherer: reg, Pprof: cfg.Pprof, Log: log.With("actor", "ops"),
	})
	if err != nil {
		return fmt.Errorf("ops: %w", err)
	}

	var g run.Group
	sigCtx, stopSignals := context.WithCancel(context.Background())
	g.Add(func() error {
		select {
		case sig := <-sigs:
			return run.SignalError{Signal: sig}
		case <-sigCtx.Done():
			return sigCtx.Err()
		}
	}, func(error) {
		stopSignals()
		// A hard deadline for the whole shutdown: whatever a child does, the
		// container stops within --stop-timeout, and leaves no secret behind.
		time.AfterFunc(cfg.StopTimeout, func() {
			log.Error("shutdown exceeded --stop-timeout, exiting", "stop_timeout", cfg.StopTimeout)
			cleanup()
			os.Exit(1)
		})
	})
	for _, a := range []struct {
		name string
		run  func(context.Context) error
	}{
		{"pulseaudio", pa.Run}, {"speaker", spk.Run}, {"microphone", mic.Run}, {"ops", opsSrv.Run},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		g.Add(func() error {
			if err := a.run(ctx); err != nil {
				return fmt.Errorf("%s: %w", a.name, err)
			}
			return nil
		}, func(error) { cancel() })
	}
	// The auth actor: watches the key file and reloads it on SIGHUP.
	if authVerifier != nil {
		ctx, cancel := context.WithCancel(context.Background())
		g.Add(func() error { return runAuth(ctx, authVerifier, hup) }, func(error) { cancel() })
	}
	log.Info("pulse-sidecar starting", "version", version, "speaker", spk.Addr().String(),
		"microphone", mic.Addr().String(), "ops", opsSrv.Addr().String(), "pulse_socket", cfg.PulseSocket,
		"pulse_tcp", cfg.PulseTCPAddr, "pid1", reapAll)
	err = g.Run()
	var sig run.SignalError
	if errors.As(err, &sig) || err == nil {
		log.Info("pulse-sidecar stopped", "reason", fmt.Sprint(err))
		return nil
	}
	return err
}

// runAuth runs the key file watcher and reloads on every SIGHUP until ctx
// ends. A failed reload keeps the keys in use (Reload logs why), so it never
// ends the daemon.
func runAuth(ctx context.Context, v *auth.Verifier, hup <-chan os.Signal) error {
	watched := make(chan error, 1)
	go func() { watched <- v.Run(ctx) }()
	for {
		select {
		case <-hup:
			_ = v.Reload()
		case err := <-watched:
			if err != nil {
				return fmt.Errorf("auth: %w", err)
			}
			return nil
		}
	}
}
