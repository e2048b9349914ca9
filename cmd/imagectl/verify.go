package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/peterbourgon/ff/v3"
	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/pulse-sidecar/pulse-sidecar/internal/build"
	"github.com/pulse-sidecar/pulse-sidecar/internal/fetch"
	"github.com/pulse-sidecar/pulse-sidecar/internal/imgdiff"
	"github.com/pulse-sidecar/pulse-sidecar/internal/oci/source"
)

type verifyFlags struct {
	build   buildFlags
	against string
	out     string
	seed    uint64
	timeout time.Duration
}

func verifyCommand(stdout, stderr io.Writer) *ffcli.Command {
	var f verifyFlags
	fs := flag.NewFlagSet("imagectl verify", flag.ContinueOnError)
	f.build.register(fs)
	fs.StringVar(&f.against, "against", "", "compare one fresh build with this image (layout, OCI or docker archive, registry reference) instead of building twice")
	fs.StringVar(&f.out, "out", "", "keep the first build's OCI layout here (and its SBOMs at <out>.<os>-<arch>[-<variant>].spdx.json, or <out>.spdx.json for one platform)")
	registerTimeout(fs, &f.timeout, "registry (--against)")
	fs.Uint64Var(&f.seed, "seed", 0, "seed of the perturbed build's package extraction order (default: random, printed)")
	return &ffcli.Command{
		Name:       "verify",
		ShortUsage: "imagectl verify [build flags] [--against REF|PATH]",
		ShortHelp:  "build twice in different environments and compare; prints the (index) digest, exit 0 same, 1 different",
		LongHelp: "Runs `imagectl build` twice as subprocesses into fresh temp dirs. The second\n" +
			"build changes what must not matter: umask (022 vs 077), TZ, LANG/LC_ALL\n" +
			"(tr_TR.UTF-8), working directory, TMPDIR, GOMAXPROCS (all of which reach\n" +
			"the daemon's go build too), a fresh Go build cache for the daemon, the\n" +
			"order packages are extracted in (shuffled) and the extraction state\n" +
			"(empty vs warm spill dir). The sha256-verified download cache is shared;\n" +
			"both compiles use go.mod's toolchain. The index digest and, for every\n" +
			"platform, the manifest, config and layer digests and the SBOM bytes must\n" +
			"agree; otherwise each differing platform's semantic diff is printed.\n\n" +
			"--against builds once and compares with an image made elsewhere: another\n" +
			"machine, a registry, a Nix or Bazel result.",
		FlagSet: fs,
		Options: []ff.Option{ff.WithEnvVarPrefix("IMAGECTL")},
		Exec: func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return usagef("verify takes no arguments, got %q", args)
			}
			if f.seed == 0 {
				f.seed = rand.Uint64() | 1
			}
			return runVerify(ctx, f, stdout, stderr)
		},
	}
}

// environment is one way of running a build. Everything in it must be
// irrelevant to the result.
type environment struct {
	name  string
	umask string
	order build.ExtractOrder
	vars  []string // KEY=VALUE over the inherited environment
	dir   string   // working directory, relative to the build's own dir
	// freshGoCache compiles the daemon with an empty Go build cache: a
	// cache entry that does not match its inputs cannot serve both builds.
	freshGoCache bool
}

func (e environment) String() string {
	cache := "user's Go build cache"
	if e.freshGoCache {
		cache = "fresh Go build cache"
	}
	return fmt.Sprintf("umask %s, extraction order %s, cwd ./%s, %s, %s", e.umask, e.order, e.dir, cache, strings.Join(e.vars, " "))
}

// environments: a plain reference build and one that differs in every
// ambient input a build could accidentally read.
func environments(seed uint64) [2]environment {
	procs := 1
	if runtime.NumCPU() == 1 {
		procs = 4
	}
	return [2]environment{{
		name:  "reference",
		umask: "022",
		vars:  []string{"TZ=UTC", "LANG=C.UTF-8", "LC_ALL=C.UTF-8"},
		dir:   ".",
	}, {
		name:  "perturbed",
		umask: "077",
		order: build.ExtractOrder{Shuffle: true, Seed: seed},
		// +12:45 and a dotless-i locale: odd enough to show up if read.
		vars:         []string{"TZ=Pacific/Chatham", "LANG=tr_TR.UTF-8", "LC_ALL=tr_TR.UTF-8", "GOMAXPROCS=" + strconv.Itoa(procs)},
		dir:          filepath.Join("elsewhere", "deeper"),
		freshGoCache: true,
	}}
}

// controlled reports the variables verify sets, or must keep from leaking
// into its builds (an inherited IMAGECTL_OCI_ARCHIVE would make both builds
// write the same file).
func controlled(key string) bool {
	switch key {
	case "TZ", "LANG", "LANGUAGE", "GOMAXPROCS", "TMPDIR",
		"IMAGECTL_UMASK", "IMAGECTL_EXTRACT_ORDER", "IMAGECTL_SPILL_DIR", "IMAGECTL_GOCACHE", "IMAGECTL_OUT",
		"IMAGECTL_SBOM", "IMAGECTL_OCI_ARCHIVE", "IMAGECTL_DOCKER_ARCHIVE":
		return true
	}
	return strings.HasPrefix(key, "LC_")
}

func childEnv(base []string, e environment, tmp string) []string {
	out := make([]string, 0, len(base)+len(e.vars)+2)
	for _, kv := range base {
		if k, _, _ := strings.Cut(kv, "="); !controlled(k) {
			out = append(out, kv)
		}
	}
	// The umask travels as IMAGECTL_UMASK, which build reads as --umask:
	// a Go parent cannot set a child's umask itself.
	return append(append(out, e.vars...), "TMPDIR="+tmp, "IMAGECTL_UMASK="+e.umask)
}

// built is one build's output as verify compares it: an image index, or
// one image, with each platform's SBOM.
type built struct {
	name     string
	artifact *source.Artifact
	sboms    map[string][]byte // by platform; nil when the image came from elsewhere
}

func runVerify(ctx context.Context, f verifyFlags, stdout, stderr io.Writer) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("verify: finding imagectl itself to re-run: %w", err)
	}
	if f.build.debs == "" && f.build.cache == "" {
		// Resolved here so both builds share it whatever HOME they see.
		if f.build.cache, err = fetch.DefaultCacheDir(); err != nil {
			return err
		}
	}
	args, err := f.build.args()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "imagectl-verify-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	spill := filepath.Join(work, "spill") // empty for the first build, warm for the second

	envs := environments(f.seed)
	runs := envs[:]
	if f.against != "" {
		runs = envs[:1]
	}
	var results []built
	for i, e := range runs {
		dir := filepath.Join(work, e.name)
		layout := filepath.Join(dir, "layout")
		if i == 0 && f.out != "" {
			layout = f.out
		}
		fmt.Fprintf(stderr, "verify: build %d of %d (%s): %s\n", i+1, len(runs), e.name, e)
		r, err := buildChild(ctx, exe, args, e, dir, layout, spill, stderr)
		if err != nil {
			return err
		}
		results = append(results, r)
	}
	if f.against != "" {
		a, err := source.OpenAny(ctx, f.against, registryOptions(f.timeout)...)
		if err != nil {
			return err
		}
		defer a.Close()
		results = append(results, built{name: f.against, artifact: a})
	}
	same, err := compareBuilds(results[0], results[1], stdout)
	if err != nil {
		return err
	}
	if !same {
		return exitStatus(exitError)
	}
	d, err := results[0].artifact.Digest()
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "verify: %s and %s agree\n", results[0].name, results[1].name)
	fmt.Fprintln(stdout, d)
	return nil
}

// buildChild runs `imagectl build` in environment e and loads its output.
func buildChild(ctx context.Context, exe string, args []string, e environment, dir, layout, spill string, stderr io.Writer) (built, error) {
	cwd, tmp := filepath.Join(dir, e.dir), filepath.Join(dir, "tmp")
	for _, d := range []string{cwd, tmp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return built{}, err
		}
	}
	sbomFile := layout + ".spdx.json"
	args = append(append([]string{"build"}, args...),
		"--out="+layout, "--sbom="+sbomFile, "--extract-order="+e.order.String(), "--spill-dir="+spill)
	if e.freshGoCache {
		args = append(args, "--gocache="+filepath.Join(dir, "gocache"))
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Dir = cwd
	cmd.Env = childEnv(os.Environ(), e, tmp)
	var out bytes.Buffer
	cmd.Stdout = &out
	log := &prefixWriter{w: stderr, prefix: e.name + ": "}
	cmd.Stderr = log
	err := cmd.Run()
	log.flush()
	if err != nil {
		return built{}, fmt.Errorf("verify: %s build (%s): %w", e.name, e, err)
	}
	a, err := source.LoadAny(layout)
	if err != nil {
		return built{}, fmt.Errorf("verify: %s build: %w", e.name, err)
	}
	printed := lastLine(out.String())
	if d, err := a.Digest(); err != nil || d.String() != printed {
		return built{}, fmt.Errorf("verify: %s build printed %q but its layout holds %v (%v)", e.name, printed, d, err)
	}
	sboms := map[string][]byte{}
	for _, p := range a.Platforms {
		file := sbomFile
		if a.Index != nil {
			file = sbomFileFor(sbomFile, p)
		}
		doc, err := os.ReadFile(file)
		if err != nil {
			return built{}, fmt.Errorf("verify: %s build wrote no SBOM for %s: %w", e.name, p.Name(), err)
		}
		sboms[p.Name()] = doc
	}
	return built{name: e.name + " build", artifact: a, sboms: sboms}, nil
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	return s[strings.LastIndexByte(s, '\n')+1:]
}

// compareBuilds prints what differs between a and b, semantically, and
// reports whether they are the same image (or index: then the index and
// every platform's image) with the same SBOMs. Each difference names its
// platform.
func compareBuilds(a, b built, w io.Writer) (bool, error) {
	var diffs []string
	ia, ib := a.artifact.Index, b.artifact.Index
	if ia != nil && ib != nil {
		da, err := ia.Digest()
		if err != nil {
			return false, err
		}
		db, err := ib.Digest()
		if err != nil {
			return false, err
		}
		if da != db {
			diffs = append(diffs, fmt.Sprintf("index: %s vs %s", da, db))
		}
	}
	indexed := ia != nil || ib != nil
	var differing []platformPair
	for _, p := range pairPlatforms(a.artifact, b.artifact) {
		prefix := ""
		if indexed {
			prefix = p.name + ": "
		}
		switch {
		case p.b == nil:
			diffs = append(diffs, prefix+"only in "+a.name)
			continue
		case p.a == nil:
			diffs = append(diffs, prefix+"only in "+b.name)
			continue
		}
		xa, err := identify(p.a.Image)
		if err != nil {
			return false, fmt.Errorf("verify: %s: %s%w", a.name, prefix, err)
		}
		xb, err := identify(p.b.Image)
		if err != nil {
			return false, fmt.Errorf("verify: %s: %s%w", b.name, prefix, err)
		}
		for _, d := range xa.differences(xb) {
			diffs = append(diffs, prefix+d)
		}
		sa, sb := a.sboms[p.name], b.sboms[p.name]
		if sa != nil && sb != nil && !bytes.Equal(sa, sb) {
			diffs = append(diffs, prefix+"SBOM: "+firstDifference(sa, sb))
		}
		if xa.manifest != xb.manifest {
			differing = append(differing, p)
		}
	}
	if len(diffs) == 0 {
		return true, nil
	}
	fmt.Fprintf(w, "verify: %s and %s differ:\n", a.name, b.name)
	for _, d := range diffs {
		fmt.Fprintf(w, "  %s\n", d)
	}
	fmt.Fprintln(w)
	for _, p := range differing {
		if indexed {
			fmt.Fprintf(w, "== %s\n", p.name)
		}
		if _, err := imgdiff.Run(p.a.Image, p.b.Image, imgdiff.Options{PerLayer: true}, "text", w); err != nil {
			return false, err
		}
	}
	return false, nil
}

// sbomFileFor is where build wrote platform p's SBOM for --sbom file.
func sbomFileFor(file string, p source.PlatformImage) string {
	return sbomFile(file, &p.Platform)
}

// identity is what makes an image that image.
type identity struct {
	manifest  v1.Hash
	mediaType types.MediaType
	config    v1.Hash
	layers    []v1.Hash
}

func identify(img v1.Image) (identity, error) {
	var id identity
	var err error
	if id.manifest, err = img.Digest(); err != nil {
		return id, err
	}
	if id.mediaType, err = img.MediaType(); err != nil {
		return id, err
	}
	if id.config, err = img.ConfigName(); err != nil {
		return id, err
	}
	m, err := img.Manifest()
	if err != nil {
		return id, err
	}
	for _, l := range m.Layers {
		id.layers = append(id.layers, l.Digest)
	}
	return id, nil
}

// differences lists the digests that differ. A docker archive keeps no OCI
// manifest (its loader makes a Docker one), so across media types only the
// config and the layers can and must agree.
func (a identity) differences(b identity) []string {
	var out []string
	if a.mediaType == b.mediaType && a.manifest != b.manifest {
		out = append(out, fmt.Sprintf("manifest: %s vs %s", a.manifest, b.manifest))
	}
	if a.config != b.config {
		out = append(out, fmt.Sprintf("config: %s vs %s", a.config, b.config))
	}
	if len(a.layers) != len(b.layers) {
		out = append(out, fmt.Sprintf("layers: %d vs %d", len(a.layers), len(b.layers)))
	}
	for i := range min(len(a.layers), len(b.layers)) {
		if a.layers[i] != b.layers[i] {
			out = append(out, fmt.Sprintf("layer %d: %s vs %s", i, a.layers[i], b.layers[i]))
		}
	}
	return out
}

// firstDifference names the first line where two documents part.
func firstDifference(a, b []byte) string {
	la, lb := strings.Split(string(a), "\n"), strings.Split(string(b), "\n")
	for i := range max(len(la), len(lb)) {
		var x, y string
		if i < len(la) {
			x = la[i]
		}
		if i < len(lb) {
			y = lb[i]
		}
		if x != y {
			return fmt.Sprintf("first difference at line %d:\n    - %s\n    + %s", i+1, strings.TrimSpace(x), strings.TrimSpace(y))
		}
	}
	return "differs"
}

// prefixWriter writes each line of a subprocess's log with a prefix, so the
// two builds' output can be told apart. It is synchronous: exec's own
// copying goroutine calls it and is waited for by cmd.Wait.
type prefixWriter struct {
	w       io.Writer
	prefix  string
	partial []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			p.partial = append(p.partial, b...)
			break
		}
		line := append(p.partial, b[:i]...)
		p.partial = p.partial[:0]
		if _, err := fmt.Fprintf(p.w, "%s%s\n", p.prefix, line); err != nil {
			return 0, err
		}
		b = b[i+1:]
	}
	return n, nil
}

// flush writes an unterminated last line.
func (p *prefixWriter) flush() {
	if len(p.partial) > 0 {
		fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.partial)
		p.partial = nil
	}
}
