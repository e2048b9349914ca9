package pulse

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulse-sidecar/pulse-sidecar/internal/atomicfile"
	"github.com/pulse-sidecar/pulse-sidecar/internal/supervise"
)

// Files the Daemon renders into RunDir.
const (
	scriptName = "default.pa"
	confName   = "daemon.conf"
)

// DaemonConfig configures a Daemon. Zero values take the defaults in
// brackets.
type DaemonConfig struct {
	Config
	Binary string // an absolute path [/usr/bin/pulseaudio]
	// Cookie is written to CookieFile before the first start, CookieLen
	// bytes [a random one (RandomCookie), so the sockets never run without
	// authentication]. CookieFile is left in place on exit: other clients
	// of PulseAudio (the encoder) may share it, so its lifetime is the
	// caller's.
	Cookie     []byte
	Reaper     *supervise.Reaper     // required
	Log        *slog.Logger          // [discard]
	Ready      func(bool)            // [ignored]
	Registerer prometheus.Registerer // [no metrics]
	Grace      time.Duration         // stop: TERM, then KILL after Grace [5s]
	// StartTimeout bounds how long a start may take to answer the probe
	// before it is restarted [15s].
	StartTimeout time.Duration
	// Backoff between restarts [100ms doubling up to 5s: PulseAudio starts
	// in well under a second, and audio is down while it is away].
	Backoff supervise.Backoff
	// ProbeInterval is how often a running PulseAudio is asked whether it
	// still answers [1s]; readiness follows every answer.
	ProbeInterval time.Duration
	// Watchdog kills a PulseAudio that has not answered for this long, so
	// its supervisor starts a new one [10s; negative: never].
	Watchdog time.Duration
}

func (c *DaemonConfig) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.Binary == "" {
		c.Binary = "/usr/bin/pulseaudio"
	}
	if c.Cookie == nil {
		c.Cookie = RandomCookie()
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Ready == nil {
		c.Ready = func(bool) {}
	}
	def(&c.Grace, 5*time.Second)
	def(&c.StartTimeout, 15*time.Second)
	def(&c.ProbeInterval, time.Second)
	def(&c.Watchdog, 10*time.Second)
	if c.Backoff == (supervise.Backoff{}) {
		c.Backoff = supervise.Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	}
}

// validate checks what Render does not: the daemon's own settings.
func (c *DaemonConfig) validate() error {
	var errs []error
	if !filepath.IsAbs(c.Binary) {
		// It would be looked up relative to RunDir, the child's directory.
		errs = append(errs, fmt.Errorf("binary %q is not an absolute path", c.Binary))
	}
	if len(c.Cookie) != CookieLen {
		errs = append(errs, fmt.Errorf("cookie: %d bytes, want %d", len(c.Cookie), CookieLen))
	}
	if c.Reaper == nil {
		errs = append(errs, errors.New("no Reaper"))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"grace", c.Grace}, {"start timeout", c.StartTimeout}, {"probe interval", c.ProbeInterval},
		{"backoff minimum", c.Backoff.Min}, {"backoff maximum", c.Backoff.Max},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s %v is negative", d.name, d.v))
		}
	}
	if c.Backoff.Max < c.Backoff.Min {
		errs = append(errs, fmt.Errorf("backoff maximum %v is below its minimum %v", c.Backoff.Max, c.Backoff.Min))
	}
	return errors.Join(errs...)
}

// Daemon keeps PulseAudio running with the rendered configuration. Create
// it with New, run it with Run.
//
// Running as root: PulseAudio 16.1 with -n and --system=no runs as root,
// printing only a warning ("This program is not intended to be run as
// root"), so tests running as root need no credential switch; the production
// container runs it as 102:104 anyway.
type Daemon struct {
	cfg      DaemonConfig
	script   []byte // rendered default.pa
	conf     []byte // rendered daemon.conf
	restarts prometheus.Counter
}

// New checks cfg, renders PulseAudio's files and registers the metrics, so
// a bad configuration fails at start-up, before any actor runs. It writes
// nothing: Run does.
func New(cfg DaemonConfig) (*Daemon, error) {
	cfg.setDefaults()
	script, conf, err := Render(cfg.Config)
	if err := errors.Join(err, cfg.validate()); err != nil {
		return nil, err
	}
	restarts := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pulse_sidecar_pulseaudio_restarts_total",
		Help: "Times PulseAudio exited unexpectedly and was restarted.",
	})
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(restarts); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, fmt.Errorf("metrics: %w", err)
			}
			restarts = are.ExistingCollector.(prometheus.Counter)
		}
	}
	return &Daemon{cfg: cfg, script: script, conf: conf, restarts: restarts}, nil
}

// Run is an oklog/run actor body: it writes the configuration, keeps
// PulseAudio running until ctx is cancelled, then stops it and removes the
// FIFO, socket and state it created. Only an unwritable RunDir is an error;
// a crashing PulseAudio is restarted.
func (d *Daemon) Run(ctx context.Context) error {
	c := &d.cfg
	log := c.Log
	if err := os.MkdirAll(c.RunDir, 0o700); err != nil {
		return fmt.Errorf("run dir: %w", err)
	}
	script := filepath.Join(c.RunDir, scriptName)
	confPath := filepath.Join(c.RunDir, confName)
	defer d.cleanup(log)
	if err := atomicfile.WriteBytes(script, d.script, 0o644); err != nil {
		return err
	}
	if err := atomicfile.WriteBytes(confPath, d.conf, 0o644); err != nil {
		return err
	}
	if err := WriteCookie(c.CookieFile, c.Cookie); err != nil {
		return err
	}

	s := &supervise.Supervisor{
		Reaper: c.Reaper,
		Spec: supervise.Spec{
			Name: "pulseaudio",
			Path: c.Binary,
			Args: []string{
				"-n", "--file=" + script,
				"--daemonize=no", "--system=no",
				"--exit-idle-time=-1", "--disallow-exit",
				"--use-pid-file=no", "--realtime=no", "--high-priority=no",
				"--no-cpu-limit", "--log-target=stderr",
			},
			// Only what PulseAudio needs: the daemon's own environment holds
			// PULSEAUDIO_COOKIE. PulseAudio has no --daemon-conf option;
			// PULSE_CONFIG names the daemon.conf to read.
			Env: []string{
				"HOME=" + c.RunDir,
				"XDG_RUNTIME_DIR=" + c.RunDir,
				"XDG_CONFIG_HOME=" + filepath.Join(c.RunDir, ".config"),
				"PULSE_CONFIG=" + confPath,
				"LANG=C.UTF-8",
			},
			Dir: c.RunDir,
		},
		Backoff:     c.Backoff,
		Grace:       c.Grace,
		Log:         log,
		BeforeStart: func(context.Context) error { return d.removeStale() },
		OnStart: func(ctx context.Context, p *supervise.Process) {
			if err := d.awaitReady(ctx); err != nil {
				if ctx.Err() == nil {
					log.Error("pulseaudio did not become ready; restarting it", "pid", p.Pid(), "err", err)
					p.Signal(os.Kill)
				}
				return
			}
			log.Info("pulseaudio ready", "pid", p.Pid(), "socket", c.Socket)
			c.Ready(true)
			// The monitor watch lives and dies with this PulseAudio: ctx ends
			// when it exits, and the supervisor waits for OnStart, so the
			// watch never outlives it (nor the run dir's cleanup).
			var monitorWatch sync.WaitGroup
			if !c.WarmSpeaker {
				monitorWatch.Go(func() { d.keepWatchingMonitor(ctx) })
			}
			d.watch(ctx, p)
			monitorWatch.Wait()
		},
		OnExit: func(p *supervise.Process, err error) {
			c.Ready(false)
			if ctx.Err() == nil {
				d.restarts.Inc()
			}
		},
	}
	return s.Run(ctx)
}

// awaitReady polls Health until it succeeds, then tightens the FIFO's mode.
func (d *Daemon) awaitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.StartTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		err := Health(pctx, d.cfg.Socket, d.cfg.Cookie)
		pcancel()
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last probe: %v)", ctx.Err(), err)
		case <-tick.C:
		}
	}
	// module-pipe-source creates the FIFO 0666; only this daemon (same uid)
	// writes the microphone into it.
	if err := os.Chmod(d.cfg.MicFIFO, 0o600); err != nil {
		return fmt.Errorf("microphone FIFO: %w", err)
	}
	return nil
}

// keepWatchingMonitor runs watchSpeakerMonitor for as long as this
// PulseAudio runs (ctx). Its connection also ends when PulseAudio dies, a
// moment before ctx does; only a watch that ends while PulseAudio still runs
// is worth a warning, and it is started again.
func (d *Daemon) keepWatchingMonitor(ctx context.Context) {
	log := d.cfg.Log
	for {
		err := watchSpeakerMonitor(ctx, d.cfg.Socket, d.cfg.Cookie, log)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
		log.Warn("speaker wake-up watch ended; watching again", "err", err)
	}
}

// watch probes a running PulseAudio every ProbeInterval until ctx ends:
// readiness follows each answer, and a PulseAudio that has not answered for
// Watchdog (stopped, deadlocked) is killed so that its supervisor starts a
// new one.
func (d *Daemon) watch(ctx context.Context, p *supervise.Process) {
	log, ready := d.cfg.Log, d.cfg.Ready
	interval, watchdog := d.cfg.ProbeInterval, d.cfg.Watchdog
	// A probe may take up to two intervals: a busy machine is not a hung
	// PulseAudio, and the watchdog decides about hangs anyway.
	timeout := 2 * interval
	tick := time.NewTicker(interval)
	defer tick.Stop()
	lastOK := time.Now()
	healthy := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		pctx, cancel := context.WithTimeout(ctx, timeout)
		err := Health(pctx, d.cfg.Socket, d.cfg.Cookie)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			lastOK = time.Now()
			if !healthy {
				log.Info("pulseaudio answers again", "pid", p.Pid())
				healthy = true
			}
			ready(true)
			continue
		}
		ready(false)
		silent := time.Since(lastOK)
		if healthy {
			log.Warn("pulseaudio does not answer; not ready", "pid", p.Pid(), "err", err)
			healthy = false
		}
		if watchdog > 0 && silent >= watchdog {
			log.Error("pulseaudio has not answered for longer than the watchdog; killing it", "pid", p.Pid(),
				"silent", silent.Round(time.Millisecond), "watchdog", watchdog, "err", err)
			p.Signal(os.Kill)
			return
		}
	}
}

// removeStale removes what a previous PulseAudio left behind:
// module-pipe-source aborts startup when the FIFO exists, and a stale socket
// would make the probe talk to nothing. Anything that is not a FIFO or a
// socket at those paths is left alone and reported.
func (d *Daemon) removeStale() error {
	for _, p := range []struct {
		path string
		typ  fs.FileMode
	}{{d.cfg.MicFIFO, fs.ModeNamedPipe}, {d.cfg.Socket, fs.ModeSocket}} {
		fi, err := os.Lstat(p.path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if fi.Mode().Type() != p.typ {
			return fmt.Errorf("%s exists and is a %v, not a %v; refusing to remove it", p.path, fi.Mode().Type(), p.typ)
		}
		if err := os.Remove(p.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing stale %s: %w", p.path, err)
		}
	}
	return nil
}

// cleanup removes what Run and PulseAudio created, so a restarted container
// (or the next test) starts clean. RunDir itself may be shared and stays.
func (d *Daemon) cleanup(log *slog.Logger) {
	if err := d.removeStale(); err != nil {
		log.Warn("cleanup", "err", err)
	}
	for _, p := range []string{
		filepath.Join(d.cfg.RunDir, scriptName),
		filepath.Join(d.cfg.RunDir, confName),
		filepath.Join(d.cfg.RunDir, ".config", "pulse"), // PulseAudio's state (HOME)
		filepath.Join(d.cfg.RunDir, "pulse"),            // its runtime dir (XDG_RUNTIME_DIR)
	} {
		if err := os.RemoveAll(p); err != nil {
			log.Warn("cleanup", "path", p, "err", err)
		}
	}
	// Only if empty: something else may keep its config there.
	_ = os.Remove(filepath.Join(d.cfg.RunDir, ".config"))
}
