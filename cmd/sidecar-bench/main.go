// Command sidecar-bench measures a speaker relay through its public
// interfaces only (speaker FIFO, PulseAudio, websocket, ops port), so it can
// be pointed at any relay that keeps the same contract.
//
//	sidecar-bench fanout  --fifo F --ws URL --pid PID [--listeners 1,10,100,1000,2000] [--slow K]
//	sidecar-bench latency --ws URL --pulse-server unix:SOCK [--pulse-cookie FILE] [--bursts 20]
//	                      [--breakdown --pid PID] [--proof-delay 100ms]
//	                      [--codec mp2|opus|both] [--browser internal/e2e/browser]
//	sidecar-bench churn   --ws URL --pid PID [--cycles 10000 --cycle-rate 200]
//	sidecar-bench footprint --pid PID --ws URL [--duration 20s] [--listeners 1] [--after 15s]
//	sidecar-bench idle    --pid PID [--duration 20s]
//	sidecar-bench soak    --ws URL --pid PID --ready URL [--duration 5m --kill-every 20s]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/peterbourgon/ff/v3"
	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/pulse-sidecar/pulse-sidecar/internal/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "sidecar-bench: %v\n", err)
		os.Exit(1)
	}
}

// options are the flags every mode shares: they name the target.
type options struct {
	fifo, ws, metrics   string
	pid                 int
	pulseServer, cookie string
	listeners           string
	duration            time.Duration
	jsonOut             bool
}

func (o *options) register(fs *flag.FlagSet) {
	fs.StringVar(&o.fifo, "fifo", "/container/speaker", "speaker FIFO to write the synthetic stream into")
	fs.StringVar(&o.ws, "ws", "ws://127.0.0.1:29788/", "speaker websocket URL")
	fs.IntVar(&o.pid, "pid", 0, "relay process id whose CPU, RSS and FDs are read from /proc (0: use /metrics only)")
	fs.StringVar(&o.metrics, "metrics", "http://127.0.0.1:29780/metrics", "relay's Prometheus /metrics URL (empty: none)")
	fs.StringVar(&o.pulseServer, "pulse-server", "unix:/tmp/.pulse.sock", "PulseAudio server for paplay (PULSE_SERVER syntax)")
	fs.StringVar(&o.cookie, "pulse-cookie", "", "PulseAudio cookie file for paplay (PULSE_COOKIE)")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured time per fan-out step")
	fs.BoolVar(&o.jsonOut, "json", false, "print the result as JSON instead of a table")
}

func (o *options) target() bench.Target {
	return bench.Target{FIFO: o.fifo, WS: o.ws, PID: o.pid, MetricsURL: o.metrics}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	newFlags := func(name string) (*flag.FlagSet, *options) {
		fs := flag.NewFlagSet("sidecar-bench "+name, flag.ContinueOnError)
		fs.SetOutput(stderr)
		o := &options{}
		o.register(fs)
		return fs, o
	}
	opts := []ff.Option{ff.WithEnvVarPrefix("SIDECAR_BENCH")}

	fanFS, fanO := newFlags("fanout")
	fanFS.StringVar(&fanO.listeners, "listeners", "1,10,100,1000,2000", "reading listeners at each step, increasing")
	slow := fanFS.Int("slow", 0, "listeners that connect and never read")
	rate := fanFS.String("rate", strconv.Itoa(bench.DefaultBitRate), "synthetic stream rate in bit/s, or max")
	warmup := fanFS.Duration("warmup", 2*time.Second, "wait after connecting a step's listeners before measuring")
	settle := fanFS.Duration("settle", 15*time.Second, "wait after everyone left before the last RSS reading")

	latFS, latO := newFlags("latency")
	background := latFS.Int("listeners", 0, "background listeners connected during the bursts")
	bursts := latFS.Int("bursts", 20, "tone bursts to time")
	interval := latFS.Duration("interval", time.Second, "time between burst starts")
	paplay := latFS.String("paplay", "paplay", "paplay binary")
	ffmpeg := latFS.String("ffmpeg", "ffmpeg", "ffmpeg binary (the listener's decoder)")
	player := latFS.String("player", "paplay", "paplay: one paplay per burst (its start counts); pacat: one real-time pacat stream")
	pacat := latFS.String("pacat", "pacat", "pacat binary, with --player pacat and as --breakdown's PCM recorder")
	breakdown := latFS.Bool("breakdown", false, "also time the bursts at a PCM recorder and at a copy of the relay's encoder (needs --pid and --fifo)")
	browserDir := latFS.String("browser", "", "also time the bursts at the audio output of a page in headless Chromium, driven by run.mjs in this directory (internal/e2e/browser, after npm ci): MP2 with JSMpeg, Opus with the daemon's own client.js from its speaker port")
	node := latFS.String("node", "node", "node binary, with --browser")
	chromium := latFS.String("chromium", "/usr/bin/chromium", "Chromium binary, with --browser")
	proofDelay := latFS.Duration("proof-delay", 0, "add a listener behind a TCP proxy delaying the stream this long (MP2), and with --browser a tap behind a DelayNode of this length on each page's output; the run must report it back")
	// Issue 13: the Opus stream, alone or beside MP2 in one run.
	codec := latFS.String("codec", "mp2", "mp2; opus (?codec=opus, timed at the page carrying the onset and at the decoder); both: MP2 then Opus in one run, with bytes per second")

	footFS, footO := newFlags("footprint")
	footListeners := footFS.Int("listeners", 1, "listeners reading during the second phase (0: idle only)")
	footAfter := footFS.Duration("after", 0, "then measure idle again this long after the listeners left, past the encoder's linger (0: no third phase)")

	churnFS, churnO := newFlags("churn")
	cycles := churnFS.Int("cycles", 10000, "connect/disconnect cycles")
	cycleRate := churnFS.Float64("cycle-rate", 200, "cycles started per second")
	churnSettle := churnFS.Duration("settle", 15*time.Second, "wait after the last cycle before the last reading")

	idleFS, idleO := newFlags("idle")
	idleFS.Lookup("duration").Value.Set("20s")
	idleFS.Lookup("duration").DefValue = "20s"

	soakFS, soakO := newFlags("soak")
	soakFS.Lookup("duration").Value.Set("5m")
	soakFS.Lookup("duration").DefValue = "5m"
	soakReady := soakFS.String("ready", "http://127.0.0.1:29780/readyz", "daemon's /readyz URL (empty: not polled)")
	soakChurn := soakFS.Float64("churn-rate", 20, "listeners connected and closed per second")
	soakStalled := soakFS.Int("stalled", 20, "listeners that connect and never read")
	soakHalf := soakFS.Int("half-open", 50, "TCP connections that send half a request and wait")
	soakKill := soakFS.Duration("kill-every", 20*time.Second, "SIGKILL the daemon's PulseAudio and encoder in turn this often (0: never)")
	soakSettle := soakFS.Duration("settle", 15*time.Second, "wait after everyone left before the last reading")

	var result interface{ WriteTable(io.Writer) error }
	var jsonOut bool
	prepare := func(o *options) error {
		jsonOut = o.jsonOut
		n, err := bench.RaiseNoFile()
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "open file limit %d\n", n)
		return nil
	}
	fanout := &ffcli.Command{
		Name: "fanout", ShortUsage: "sidecar-bench fanout [flags]", ShortHelp: "ramp listeners on a synthetic stream",
		FlagSet: fanFS, Options: opts,
		Exec: func(ctx context.Context, _ []string) error {
			steps, err := bench.ParseSteps(fanO.listeners)
			if err != nil {
				return fmt.Errorf("--listeners: %w", err)
			}
			bitRate := 0
			if *rate != "max" {
				if bitRate, err = strconv.Atoi(*rate); err != nil || bitRate < 1 {
					return fmt.Errorf("--rate %q: want bits per second or max", *rate)
				}
			}
			if *slow < 0 {
				return fmt.Errorf("--slow %d: must not be negative", *slow)
			}
			if err := prepare(fanO); err != nil {
				return err
			}
			f := &bench.Fanout{
				Target: fanO.target(), Steps: steps, Slow: *slow, Duration: fanO.duration,
				Warmup: *warmup, Settle: *settle, Progress: stderr,
				Writer: bench.Writer{PID: bench.DefaultPID, BitRate: bitRate},
			}
			r, err := f.Run(ctx)
			result = r
			return err
		},
	}
	latency := &ffcli.Command{
		Name: "latency", ShortUsage: "sidecar-bench latency [flags]", ShortHelp: "time tone bursts from PulseAudio to a listener",
		FlagSet: latFS, Options: opts,
		Exec: func(ctx context.Context, _ []string) error {
			if *bursts < 1 {
				return fmt.Errorf("--bursts %d: want at least 1", *bursts)
			}
			if *player != "paplay" && *player != "pacat" {
				return fmt.Errorf("--player %q: want paplay or pacat", *player)
			}
			if err := prepare(latO); err != nil {
				return err
			}
			l := &bench.Latency{
				Target: latO.target(), PulseServer: latO.pulseServer, CookieFile: latO.cookie,
				Paplay: *paplay, Pacat: *pacat, Stream: *player == "pacat", FFmpeg: *ffmpeg, Bursts: *bursts, Interval: *interval,
				Background: *background, Breakdown: *breakdown, ProofDelay: *proofDelay, Progress: stderr,
			}
			if *browserDir != "" {
				l.Browser = &bench.Browser{Dir: *browserDir, Node: *node, Chromium: *chromium}
			}
			switch *codec {
			case "mp2":
			case "opus":
				r, err := (&bench.OpusLatency{Latency: *l}).Run(ctx)
				result = r
				return err
			case "both":
				r, err := bench.CompareCodecs(ctx, l)
				result = r
				return err
			default:
				return fmt.Errorf("--codec %q: want mp2, opus or both", *codec)
			}
			r, err := l.Run(ctx)
			result = r
			return err
		},
	}
	churn := &ffcli.Command{
		Name: "churn", ShortUsage: "sidecar-bench churn [flags]", ShortHelp: "connect and disconnect listeners, compare footprint",
		FlagSet: churnFS, Options: opts,
		Exec: func(ctx context.Context, _ []string) error {
			if *cycles < 1 || *cycleRate <= 0 {
				return fmt.Errorf("--cycles %d --cycle-rate %g: both must be positive", *cycles, *cycleRate)
			}
			if err := prepare(churnO); err != nil {
				return err
			}
			c := &bench.Churn{Target: churnO.target(), Cycles: *cycles, Rate: *cycleRate, Settle: *churnSettle, Progress: stderr}
			r, err := c.Run(ctx)
			result = r
			return err
		},
	}
	footprint := &ffcli.Command{
		Name: "footprint", ShortUsage: "sidecar-bench footprint --pid PID [flags]", ShortHelp: "CPU and RSS/PSS of the whole sidecar, idle and streaming",
		FlagSet: footFS, Options: opts,
		Exec: func(ctx context.Context, _ []string) error {
			if footO.pid == 0 || *footListeners < 0 || *footAfter < 0 {
				return fmt.Errorf("--pid %d --listeners %d --after %s: want the daemon's pid, listeners >= 0, after >= 0", footO.pid, *footListeners, *footAfter)
			}
			jsonOut = footO.jsonOut
			f := &bench.Footprint{Target: footO.target(), Duration: footO.duration, Listeners: *footListeners, After: *footAfter, Progress: stderr}
			r, err := f.Run(ctx)
			result = r
			return err
		},
	}
	idle := &ffcli.Command{
		Name: "idle", ShortUsage: "sidecar-bench idle --pid PID [flags]", ShortHelp: "CPU of the daemon and its children while nobody listens",
		FlagSet: idleFS, Options: opts,
		Exec: func(ctx context.Context, _ []string) error {
			if idleO.pid <= 0 || idleO.duration <= 0 {
				return fmt.Errorf("--pid %d --duration %s: both must be positive", idleO.pid, idleO.duration)
			}
			jsonOut = idleO.jsonOut
			i := &bench.Idle{PID: idleO.pid, Duration: idleO.duration}
			r, err := i.Run(ctx)
			result = r
			return err
		},
	}
	soak := &ffcli.Command{
		Name: "soak", ShortUsage: "sidecar-bench soak --pid PID [flags]",
		ShortHelp: "listener churn, stalled clients, PulseAudio and encoder kills at once; report what survived",
		FlagSet:   soakFS, Options: opts,
		Exec: func(ctx context.Context, _ []string) error {
			if soakO.duration <= 0 || *soakChurn < 0 || *soakStalled < 0 || *soakHalf < 0 || *soakKill < 0 {
				return errors.New("--duration must be positive; --churn-rate, --stalled, --half-open and --kill-every must not be negative")
			}
			if err := prepare(soakO); err != nil {
				return err
			}
			s := &bench.Soak{
				Target: soakO.target(), ReadyURL: *soakReady, Duration: soakO.duration, ChurnRate: *soakChurn,
				Stalled: *soakStalled, HalfOpen: *soakHalf, KillEvery: *soakKill, Settle: *soakSettle, Progress: stderr,
			}
			r, err := s.Run(ctx)
			result = r
			return err
		},
	}
	root := &ffcli.Command{
		ShortUsage:  "sidecar-bench fanout|latency|churn|footprint|idle|soak [flags]",
		Subcommands: []*ffcli.Command{fanout, latency, churn, footprint, idle, soak},
		FlagSet:     flag.NewFlagSet("sidecar-bench", flag.ContinueOnError),
		Exec: func(context.Context, []string) error {
			return errors.New("want a mode: fanout, latency, churn, footprint, idle or soak")
		},
	}
	root.FlagSet.SetOutput(stderr)
	err := root.ParseAndRun(ctx, args)
	// A partial result is still worth printing: the steps before a failure
	// are real measurements.
	if result != nil {
		if jsonOut {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			if jerr := enc.Encode(result); jerr != nil {
				return errors.Join(err, jerr)
			}
		} else if terr := result.WriteTable(stdout); terr != nil {
			return errors.Join(err, terr)
		}
	}
	return err
}
