package main

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/peterbourgon/ff/v3"
	"github.com/peterbourgon/ff/v3/ffcli"
	"golang.org/x/term"

	"github.com/pulse-sidecar/pulse-sidecar/internal/archive"
	"github.com/pulse-sidecar/pulse-sidecar/internal/build"
	"github.com/pulse-sidecar/pulse-sidecar/internal/debian"
	"github.com/pulse-sidecar/pulse-sidecar/internal/fetch"
	"github.com/pulse-sidecar/pulse-sidecar/internal/gobuild"
	"github.com/pulse-sidecar/pulse-sidecar/internal/oci/sink"
	"github.com/pulse-sidecar/pulse-sidecar/internal/sbom"
	"github.com/pulse-sidecar/pulse-sidecar/internal/spec"
)

type buildFlags struct {
	spec, lock, arch                string
	out, ociArchive, dockerArchive  string
	sbom                            string
	tag                             string
	daemonBinary, debs              string
	mirror, securityMirror, snapMir string
	cache                           string
	parallel                        int
	version, revision               string
	sourceDateEpoch                 string

	// Perturbations `imagectl verify` applies to its second build. They
	// must not change the image; they exist so that is tested, not assumed.
	umask        string
	extractOrder string
	spillDir     string
	goCache      string
}

// register binds the flags that say what to build and from what: shared by
// build and verify, which hands them on to its build subprocesses.
func (f *buildFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.spec, "spec", "image/spec.json", "image spec")
	fs.StringVar(&f.lock, "lock", "image/debian.lock.json", "Debian lock")
	fs.StringVar(&f.arch, "arch", "", "Debian architecture to build (default: the spec's first)")
	fs.StringVar(&f.tag, "tag", "", "image name in the outputs (default pulse-sidecar:<version>)")
	fs.StringVar(&f.daemonBinary, "daemon-binary", "", "use this pulse-sidecar binary instead of compiling it")
	fs.StringVar(&f.debs, "debs", "", "take .deb files from this directory (named by sha256 or pool basename); no network")
	fs.StringVar(&f.mirror, "mirror", "", "base URL of the Debian archive (default: from apt sources)")
	fs.StringVar(&f.securityMirror, "security-mirror", "", "base URL of the Debian security archive (default: from apt sources)")
	fs.StringVar(&f.snapMir, "snapshot-mirror", "", "base URL of a snapshot archive service, the fallback for versions gone from the mirror (default: from apt sources comments)")
	fs.StringVar(&f.cache, "cache", "", "download cache (default $IMAGECTL_CACHE, else $XDG_CACHE_HOME/pulse-sidecar/debs)")
	fs.IntVar(&f.parallel, "parallel", 6, "downloads at once")
	fs.StringVar(&f.version, "version", "dev", "version stamped into the daemon and the image annotations")
	fs.StringVar(&f.revision, "revision", "", "source revision for the image annotations (default: the git commit of the spec's checkout, -dirty when it has changes; \""+noRevision+"\" for no revision annotation)")
	fs.StringVar(&f.sourceDateEpoch, "source-date-epoch", "", "timestamp of everything in the image (default $SOURCE_DATE_EPOCH, else the lock's newest suite date)")
}

// args renders the flags for a build subprocess. Paths are made absolute
// because verify runs its builds from other working directories.
func (f buildFlags) args() ([]string, error) {
	var out []string
	add := func(name, v string, path bool) error {
		if v == "" {
			return nil
		}
		if path {
			abs, err := filepath.Abs(v)
			if err != nil {
				return fmt.Errorf("--%s %s: %w", name, v, err)
			}
			v = abs
		}
		out = append(out, "--"+name+"="+v)
		return nil
	}
	for _, a := range []struct {
		name, v string
		path    bool
	}{
		{"spec", f.spec, true}, {"lock", f.lock, true}, {"arch", f.arch, false}, {"tag", f.tag, false},
		{"daemon-binary", f.daemonBinary, true}, {"debs", f.debs, true},
		{"mirror", f.mirror, false}, {"security-mirror", f.securityMirror, false}, {"snapshot-mirror", f.snapMir, false},
		{"cache", f.cache, true}, {"parallel", strconv.Itoa(f.parallel), false},
		{"version", f.version, false}, {"revision", f.revision, false}, {"source-date-epoch", f.sourceDateEpoch, false},
	} {
		if err := add(a.name, a.v, a.path); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func buildCommand(stdout, stderr io.Writer) *ffcli.Command {
	var f buildFlags
	fs := flag.NewFlagSet("imagectl build", flag.ContinueOnError)
	f.register(fs)
	fs.StringVar(&f.out, "out", "", "write an OCI image layout to this directory (index.json lists the image alone)")
	fs.StringVar(&f.ociArchive, "oci-archive", "", "write an OCI archive (tar of a layout) to this file")
	fs.StringVar(&f.dockerArchive, "docker-archive", "", "write a docker archive (docker save format) to this file")
	fs.StringVar(&f.sbom, "sbom", "", "also write the SPDX 2.3 JSON SBOM here (it is always written beside each output, <output>.spdx.json)")
	fs.StringVar(&f.umask, "umask", "", "(for verify) set the process umask, octal, before building")
	fs.StringVar(&f.extractOrder, "extract-order", "", "(for verify) extract packages in this order: lock, reverse or shuffle:SEED")
	fs.StringVar(&f.spillDir, "spill-dir", "", "(for verify) keep extracted contents in this directory and leave them there (default: a temp dir, removed)")
	fs.StringVar(&f.goCache, "gocache", "", "(for verify) compile the daemon with this Go build cache (default: the user's)")
	return &ffcli.Command{
		Name:       "build",
		ShortUsage: "imagectl build [flags]",
		ShortHelp:  "build the image from the spec and the lock; prints the manifest digest last",
		LongHelp: "Flags may also be given as IMAGECTL_<FLAG> environment variables\n" +
			"(IMAGECTL_MIRROR, IMAGECTL_CACHE, ...).\n\n" +
			"The SBOM is written beside each output as <output>.spdx.json. The\n" +
			"outputs hold the image alone, so skopeo, podman and crane read them\n" +
			"without naming it; `imagectl push` attaches the SBOM beside its SRC to\n" +
			"the image in the registry as an OCI 1.1 referrer.",
		FlagSet: fs,
		Options: []ff.Option{ff.WithEnvVarPrefix("IMAGECTL")},
		Exec: func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return usagef("build takes no arguments, got %q", args)
			}
			return runBuild(ctx, f, stdout, stderr)
		},
	}
}

func runBuild(ctx context.Context, f buildFlags, stdout, stderr io.Writer) error {
	if f.umask != "" {
		m, err := strconv.ParseUint(f.umask, 8, 32)
		if err != nil || m > 0o777 {
			return usagef("--umask %q is not an octal umask", f.umask)
		}
		syscall.Umask(int(m))
	}
	order, err := build.ParseExtractOrder(f.extractOrder)
	if err != nil {
		return usagef("--extract-order: %v", err)
	}
	s, err := spec.Load(f.spec)
	if err != nil {
		return err
	}
	lock, err := debian.ReadLock(f.lock)
	if err != nil {
		return err
	}
	if err := lock.CheckSpec(s); err != nil {
		return fmt.Errorf("%s: %w", f.lock, err)
	}
	arch := f.arch
	if arch == "" {
		arch = s.Architectures[0]
	}
	created, err := sourceDateEpoch(f.sourceDateEpoch, lock)
	if err != nil {
		return err
	}
	tag := f.tag
	if tag == "" {
		tag = s.Name + ":" + f.version
	}
	// Checked before the build, which takes minutes: a docker archive
	// needs a valid image name, and finding out at the end wastes the build.
	if f.dockerArchive != "" {
		if _, err := name.NewTag(tag); err != nil {
			return usagef("--tag %q (default <spec name>:<version>) is not a valid image name for --docker-archive: %v", tag, err)
		}
	}
	switch f.revision {
	case "":
		f.revision = defaultRevision(f.spec)
	case noRevision:
		f.revision = ""
	}
	debs, err := fetchDebs(ctx, f, lock, arch, stderr)
	if err != nil {
		return err
	}
	daemon, err := daemonBinary(ctx, f, s, arch, stderr)
	if err != nil {
		return err
	}
	spill := f.spillDir
	if spill == "" {
		if spill, err = os.MkdirTemp("", "imagectl-build-*"); err != nil {
			return err
		}
		defer os.RemoveAll(spill)
	} else if err := os.MkdirAll(spill, 0o700); err != nil {
		return err
	}
	res, err := build.Build(build.Inputs{
		Spec: s, Lock: lock, Arch: arch, Debs: debFiles(debs), Daemon: daemon,
		Files:   os.DirFS(filepath.Dir(f.spec)),
		Version: f.version, Revision: f.revision, Created: created,
		SpillDir: spill, Log: stderr, Order: order,
	})
	if err != nil {
		return err
	}
	img := res.Image
	desc, err := partial.Descriptor(img)
	if err != nil {
		return err
	}
	doc, err := sbom.Generate(sbom.Input{
		Name: s.Name, Image: desc.Digest, Created: created, Distro: lock.Distribution,
		Packages: lock.PackagesFor(arch), Copyright: res.Copyright,
		Daemon: daemonBuildInfo(daemon, stderr),
	})
	if err != nil {
		return err
	}
	if err := writeOutputs(f, img, tag, doc); err != nil {
		return err
	}
	fmt.Fprintln(stdout, desc.Digest)
	return nil
}

// writeOutputs stages every output beside its destination and puts them in
// place only once all were written, so a failure (a full disk at the last
// archive) leaves every previous output as it was instead of a mix of this
// build's and the last one's.
func writeOutputs(f buildFlags, img v1.Image, tag string, doc []byte) (err error) {
	var staged []*sink.Staged
	defer func() {
		if err != nil {
			for _, s := range staged {
				s.Discard()
			}
		}
	}()
	stage := func(s *sink.Staged, err error) error {
		if err == nil {
			staged = append(staged, s)
		}
		return err
	}
	if f.out != "" {
		if err := stage(sink.StageLayout(f.out, img, tag)); err != nil {
			return err
		}
	}
	if f.ociArchive != "" {
		if err := stage(sink.StageOCIArchive(f.ociArchive, img, tag)); err != nil {
			return err
		}
	}
	if f.dockerArchive != "" {
		if err := stage(sink.StageDockerArchive(f.dockerArchive, img, tag)); err != nil {
			return err
		}
	}
	write := func(w io.Writer) error {
		_, err := w.Write(doc)
		return err
	}
	for _, file := range sbomPaths(f) {
		if err := stage(sink.StageFile(file, 0o644, write)); err != nil {
			return err
		}
	}
	for len(staged) > 0 {
		if err := staged[0].Commit(); err != nil {
			staged = staged[1:] // Commit cleaned up after itself
			return err
		}
		staged = staged[1:]
	}
	return nil
}

// sbomPaths: beside each output, where push and the reader of an archive
// look for it, and --sbom.
func sbomPaths(f buildFlags) []string {
	var out []string
	seen := map[string]bool{}
	add := func(p string) {
		if p = filepath.Clean(p); !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, o := range []string{f.out, f.ociArchive, f.dockerArchive} {
		if o != "" {
			add(o + ".spdx.json")
		}
	}
	if f.sbom != "" {
		add(f.sbom)
	}
	return out
}

// daemonBuildInfo reads the Go module list linked into the daemon. A binary
// without one (not Go, or stripped of it) still builds an image; the SBOM
// then lists no Go modules, and the log says so.
func daemonBuildInfo(daemon []byte, stderr io.Writer) *debug.BuildInfo {
	bi, err := buildinfo.Read(bytes.NewReader(daemon))
	if err != nil {
		fmt.Fprintf(stderr, "build: warning: daemon has no Go build info (%v); the SBOM lists no Go modules\n", err)
		return nil
	}
	return bi
}

// sourceDateEpoch: the flag, else $SOURCE_DATE_EPOCH, else the lock's newest
// suite date. Never the wall clock: that would make every build unique.
func sourceDateEpoch(flagValue string, lock *debian.Lock) (time.Time, error) {
	v, what := flagValue, "--source-date-epoch"
	if v == "" {
		v, what = os.Getenv("SOURCE_DATE_EPOCH"), "SOURCE_DATE_EPOCH"
	}
	if v == "" {
		sec, err := debian.SourceDateEpoch(lock)
		if err != nil {
			return time.Time{}, err
		}
		return time.Unix(sec, 0).UTC(), nil
	}
	// 0 is valid (tools that want "no meaningful date" use it); a sign or
	// anything but decimal digits is not.
	sec, err := strconv.ParseInt(v, 10, 64)
	if err != nil || sec < 0 || v[0] == '+' {
		return time.Time{}, usagef("%s=%q is not a Unix time in seconds (a non-negative integer)", what, v)
	}
	return time.Unix(sec, 0).UTC(), nil
}

func fetchDebs(ctx context.Context, f buildFlags, lock *debian.Lock, arch string, stderr io.Writer) (map[string]string, error) {
	if f.debs != "" {
		items, err := fetch.Mirrors{}.Items(lock, arch)
		if err != nil {
			return nil, err
		}
		return fetch.FromDir(f.debs, items)
	}
	mirrors, err := mirrorsFor(f)
	if err != nil {
		return nil, err
	}
	items, err := mirrors.Items(lock, arch)
	if err != nil {
		return nil, err
	}
	cache := f.cache
	if cache == "" {
		if cache, err = fetch.DefaultCacheDir(); err != nil {
			return nil, err
		}
	}
	fetcher := &fetch.Fetcher{
		Cache:    fetch.Cache{Dir: cache},
		Parallel: f.parallel,
		Progress: fetch.NewProgress(stderr, isTerminal(stderr)),
	}
	return fetcher.Fetch(ctx, items)
}

// mirrorsFor takes base URLs from flags (or IMAGECTL_* variables) and fills
// the rest from the machine's apt sources, which is how a fresh Debian
// machine builds without any configuration.
func mirrorsFor(f buildFlags) (fetch.Mirrors, error) {
	m := fetch.Mirrors{Snapshot: f.snapMir}
	archives, err := archive.Mirrors("/", debian.DefaultSuites(), map[string]string{"debian": f.mirror, "debian-security": f.securityMirror})
	if err != nil {
		return m, err
	}
	m.Archives = archives
	if m.Snapshot == "" {
		snap, err := archive.SnapshotBaseFromAptSources("/")
		if err != nil {
			return m, err
		}
		m.Snapshot = snap
	}
	return m, nil
}

func daemonBinary(ctx context.Context, f buildFlags, s *spec.Spec, arch string, stderr io.Writer) ([]byte, error) {
	if f.daemonBinary != "" {
		return os.ReadFile(f.daemonBinary)
	}
	root, err := gobuild.ModuleRoot(filepath.Dir(f.spec))
	if err != nil {
		return nil, err
	}
	return gobuild.Daemon{
		ModuleRoot: root, Package: s.Daemon.Package, Arch: arch,
		VersionVar: s.Daemon.VersionVar, Version: f.version, GoCache: f.goCache, Stderr: stderr,
	}.Compile(ctx)
}

// debFiles hands build the fetched .debs by sha256, from wherever the cache
// or --debs found them; build checks each against the lock before use.
type debFiles map[string]string

func (d debFiles) Open(name string) (fs.File, error) {
	file, ok := d[name]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return os.Open(file)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
