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
	"strings"
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
	"github.com/pulse-sidecar/pulse-sidecar/internal/oci"
	"github.com/pulse-sidecar/pulse-sidecar/internal/oci/sink"
	"github.com/pulse-sidecar/pulse-sidecar/internal/sbom"
	"github.com/pulse-sidecar/pulse-sidecar/internal/spec"
)

type buildFlags struct {
	spec, lock, arch, platform      string
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
	fs.StringVar(&f.arch, "arch", "", "build this Debian architecture's image alone (amd64, arm64), not the index of all the spec's")
	fs.StringVar(&f.platform, "platform", "", "build this platform's image alone (linux/amd64, linux/arm64), not the index of all the spec's")
	fs.StringVar(&f.tag, "tag", "", "image name in the outputs (default pulse-sidecar:<version>)")
	fs.StringVar(&f.daemonBinary, "daemon-binary", "", "use this pulse-sidecar binary instead of compiling it; for an index of several platforms ARCH=PATH,ARCH=PATH (amd64=...,arm64=...)")
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
	daemons, err := absDaemonBinaries(f.daemonBinary)
	if err != nil {
		return nil, err
	}
	if err := add("daemon-binary", daemons, false); err != nil {
		return nil, err
	}
	for _, a := range []struct {
		name, v string
		path    bool
	}{
		{"spec", f.spec, true}, {"lock", f.lock, true}, {"arch", f.arch, false}, {"tag", f.tag, false},
		{"platform", f.platform, false}, {"debs", f.debs, true},
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
	fs.StringVar(&f.out, "out", "", "write an OCI image layout to this directory (index.json lists the image index, or the one image, alone)")
	fs.StringVar(&f.ociArchive, "oci-archive", "", "write an OCI archive (tar of a layout) to this file")
	fs.StringVar(&f.dockerArchive, "docker-archive", "", "write a docker archive (docker save format: one image) of this machine's platform, or of --platform's, to this file")
	fs.StringVar(&f.sbom, "sbom", "", "also write the SPDX 2.3 JSON SBOM here (it is always written beside each output: <output>.spdx.json, or <output>.<os>-<arch>[-<variant>].spdx.json per platform of an index)")
	fs.StringVar(&f.umask, "umask", "", "(for verify) set the process umask, octal, before building")
	fs.StringVar(&f.extractOrder, "extract-order", "", "(for verify) extract packages in this order: lock, reverse or shuffle:SEED")
	fs.StringVar(&f.spillDir, "spill-dir", "", "(for verify) keep extracted contents in this directory and leave them there (default: a temp dir, removed)")
	fs.StringVar(&f.goCache, "gocache", "", "(for verify) compile the daemon with this Go build cache (default: the user's)")
	return &ffcli.Command{
		Name:       "build",
		ShortUsage: "imagectl build [flags]",
		ShortHelp:  "build the image index (one image per platform) from the spec and the lock; prints its digest last",
		LongHelp: "Flags may also be given as IMAGECTL_<FLAG> environment variables\n" +
			"(IMAGECTL_MIRROR, IMAGECTL_CACHE, ...).\n\n" +
			"Without --platform or --arch every architecture of the spec is built\n" +
			"and the outputs hold an OCI image index with one image per platform;\n" +
			"the last stdout line is the index digest, each platform's manifest\n" +
			"digest is printed before it. With --platform (or --arch) one platform's\n" +
			"image is built alone and its manifest digest is the last line: the same\n" +
			"digest as that platform's entry in the index.\n\n" +
			"Each platform's SBOM is written beside each output as\n" +
			"<output>.<os>-<arch>[-<variant>].spdx.json (<output>.spdx.json for one\n" +
			"image, and for the docker archive, which holds one platform). The\n" +
			"outputs hold the index (or the image) alone, so skopeo, podman and\n" +
			"crane read them without naming it; `imagectl push` attaches each SBOM\n" +
			"beside its SRC to that platform's image in the registry as an OCI 1.1\n" +
			"referrer.",
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
	archs, single, err := buildArchs(f, s.Architectures)
	if err != nil {
		return err
	}
	daemons, err := daemonBinaries(f.daemonBinary, archs)
	if err != nil {
		return err
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
	// needs a valid image name and a platform the build makes, and
	// finding out at the end wastes the build.
	dockerArch := ""
	if f.dockerArchive != "" {
		if _, err := name.NewTag(tag); err != nil {
			return usagef("--tag %q (default <spec name>:<version>) is not a valid image name for --docker-archive: %v", tag, err)
		}
		if dockerArch, err = dockerArchFor(f, archs); err != nil {
			return err
		}
	}
	switch f.revision {
	case "":
		f.revision = defaultRevision(f.spec)
	case noRevision:
		f.revision = ""
	}
	spill := f.spillDir
	if spill == "" {
		if spill, err = os.MkdirTemp("", "imagectl-build-*"); err != nil {
			return err
		}
		defer os.RemoveAll(spill)
	}
	var built []platformBuild
	for _, arch := range archs {
		b, err := buildPlatform(ctx, f, s, lock, arch, daemons[arch], created, filepath.Join(spill, arch), order, stderr)
		if err != nil {
			return fmt.Errorf("%s: %w", oci.PlatformString(debianPlatforms[arch]), err)
		}
		built = append(built, b)
	}
	var out sink.Artifact = built[0].image
	if !single {
		imgs := make([]v1.Image, len(built))
		for i, b := range built {
			imgs[i] = b.image
		}
		idx, err := oci.AssembleIndex(imgs)
		if err != nil {
			return err
		}
		out = idx
		for _, b := range built {
			fmt.Fprintf(stdout, "%s %s\n", oci.PlatformString(b.platform), b.digest)
		}
	}
	if err := writeOutputs(f, out, built, single, dockerArch, tag); err != nil {
		return err
	}
	d, err := out.Digest()
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, d)
	return nil
}

// buildArchs: --arch or --platform names one architecture, built as a
// single image; neither builds every architecture of the spec into an index.
func buildArchs(f buildFlags, specArchs []string) (archs []string, single bool, err error) {
	switch {
	case f.arch != "" && f.platform != "":
		return nil, false, usagef("--arch and --platform both name the platform to build: give one")
	case f.platform != "":
		a, err := debianArch(f.platform)
		if err != nil {
			return nil, false, err
		}
		return []string{a}, true, nil
	case f.arch != "":
		if _, ok := debianPlatforms[f.arch]; !ok {
			return nil, false, usagef("--arch %q: not an architecture imagectl builds (amd64, arm64)", f.arch)
		}
		return []string{f.arch}, true, nil
	}
	for _, a := range specArchs {
		if _, ok := debianPlatforms[a]; !ok {
			return nil, false, fmt.Errorf("%s: architecture %q: not one imagectl builds (amd64, arm64)", f.spec, a)
		}
	}
	return specArchs, false, nil
}

// dockerArchFor is the architecture --docker-archive holds: the one built,
// or of an index the host's (what `docker load` of an index would pick).
func dockerArchFor(f buildFlags, archs []string) (string, error) {
	if len(archs) == 1 {
		return archs[0], nil
	}
	host, err := debianArch(hostPlatform())
	if err == nil {
		for _, a := range archs {
			if a == host {
				return a, nil
			}
		}
	}
	return "", usagef("--docker-archive holds one platform, and this machine's (%s) is not among those built (%s): add --platform", hostPlatform(), strings.Join(archs, ", "))
}

// platformBuild is one platform's image and its SBOM.
type platformBuild struct {
	arch     string
	platform v1.Platform
	image    v1.Image
	digest   v1.Hash
	sbom     []byte
}

// buildPlatform builds one architecture's image from its packages and a
// daemon compiled for it: internal/build knows one architecture at a time.
func buildPlatform(ctx context.Context, f buildFlags, s *spec.Spec, lock *debian.Lock, arch, daemonFile string, created time.Time, spill string, order build.ExtractOrder, stderr io.Writer) (platformBuild, error) {
	if len(lock.PackagesFor(arch)) == 0 {
		return platformBuild{}, fmt.Errorf("%s holds no packages for %s: run `imagectl lock` (the spec's architectures are %s)", f.lock, arch, strings.Join(s.Architectures, ", "))
	}
	debs, err := fetchDebs(ctx, f, lock, arch, stderr)
	if err != nil {
		return platformBuild{}, err
	}
	var daemon []byte
	if daemonFile != "" {
		daemon, err = os.ReadFile(daemonFile)
	} else {
		daemon, err = compileDaemon(ctx, f, s, arch, stderr)
	}
	if err != nil {
		return platformBuild{}, err
	}
	if err := os.MkdirAll(spill, 0o700); err != nil {
		return platformBuild{}, err
	}
	res, err := build.Build(build.Inputs{
		Spec: s, Lock: lock, Arch: arch, Debs: debFiles(debs), Daemon: daemon,
		Files:   os.DirFS(filepath.Dir(f.spec)),
		Version: f.version, Revision: f.revision, Created: created,
		SpillDir: spill, Log: stderr, Order: order,
	})
	if err != nil {
		return platformBuild{}, err
	}
	desc, err := partial.Descriptor(res.Image)
	if err != nil {
		return platformBuild{}, err
	}
	p, err := oci.Platform(res.Image)
	if err != nil {
		return platformBuild{}, err
	}
	doc, err := sbom.Generate(sbom.Input{
		Name: s.Name, Image: desc.Digest, Created: created, Distro: lock.Distribution,
		Packages: lock.PackagesFor(arch), Copyright: res.Copyright,
		Daemon: daemonBuildInfo(daemon, stderr),
	})
	if err != nil {
		return platformBuild{}, err
	}
	return platformBuild{arch: arch, platform: p, image: res.Image, digest: desc.Digest, sbom: doc}, nil
}

// writeOutputs stages every output beside its destination and puts them in
// place only once all were written, so a failure (a full disk at the last
// archive) leaves every previous output as it was instead of a mix of this
// build's and the last one's.
func writeOutputs(f buildFlags, out sink.Artifact, built []platformBuild, single bool, dockerArch, tag string) (err error) {
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
		if err := stage(sink.StageLayout(f.out, out, tag)); err != nil {
			return err
		}
	}
	if f.ociArchive != "" {
		if err := stage(sink.StageOCIArchive(f.ociArchive, out, tag)); err != nil {
			return err
		}
	}
	for _, file := range sbomPaths(f, built, single, dockerArch) {
		doc := file.doc
		if err := stage(sink.StageFile(file.path, 0o644, func(w io.Writer) error {
			_, err := w.Write(doc)
			return err
		})); err != nil {
			return err
		}
	}
	if f.dockerArchive != "" {
		for _, b := range built {
			if b.arch == dockerArch {
				if err := stage(sink.StageDockerArchive(f.dockerArchive, b.image, tag)); err != nil {
					return err
				}
			}
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

type sbomOut struct {
	path string
	doc  []byte
}

// sbomPaths: each platform's SBOM beside each output, where push and the
// reader of an archive look for it, and at --sbom.
func sbomPaths(f buildFlags, built []platformBuild, single bool, dockerArch string) []sbomOut {
	var out []sbomOut
	seen := map[string]bool{}
	add := func(p string, doc []byte) {
		if !seen[p] {
			seen[p] = true
			out = append(out, sbomOut{p, doc})
		}
	}
	for _, o := range []string{f.out, f.ociArchive, f.sbom} {
		if o == "" {
			continue
		}
		for _, b := range built {
			switch {
			case single && o == f.sbom:
				add(filepath.Clean(o), b.sbom) // exactly where --sbom says
			case single:
				add(sbomFile(o, nil), b.sbom)
			default:
				add(sbomFile(o, &b.platform), b.sbom)
			}
		}
	}
	if f.dockerArchive != "" {
		for _, b := range built {
			if b.arch == dockerArch {
				add(sbomFile(f.dockerArchive, nil), b.sbom)
			}
		}
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

func compileDaemon(ctx context.Context, f buildFlags, s *spec.Spec, arch string, stderr io.Writer) ([]byte, error) {
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
