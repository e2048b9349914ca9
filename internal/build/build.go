// Package build is the image pipeline: spec + lock + fetched .debs + daemon
// binary -> v1.Image. It reads only what it is given, through the fs.FS
// values and bytes of Inputs (no network, no clock, no path of the machine),
// so the same inputs always give the same digest; fetching, compiling and
// writing outputs are the caller's edges.
package build

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/pulse-sidecar/pulse-sidecar/internal/deb"
	"github.com/pulse-sidecar/pulse-sidecar/internal/debian"
	"github.com/pulse-sidecar/pulse-sidecar/internal/oci"
	"github.com/pulse-sidecar/pulse-sidecar/internal/rootfs"
	"github.com/pulse-sidecar/pulse-sidecar/internal/spec"
)

// Inputs are everything an image is made of.
type Inputs struct {
	Spec *spec.Spec
	Lock *debian.Lock
	Arch string // Debian architecture: "amd64", "arm64"
	// Debs holds the fetched .debs, each named by the lowercase sha256 the
	// lock pins. Build reads each one whole and compares its size and
	// sha256 with the lock before parsing any byte of it.
	Debs fs.FS
	// Files holds the sources of the spec's files, by the spec-relative
	// path the spec names (os.DirFS of the spec's directory).
	Files fs.FS
	// Daemon is the pulse-sidecar binary for Arch.
	Daemon []byte
	// Version and Revision fill the OCI version and revision annotations.
	Version, Revision string
	// Created is SOURCE_DATE_EPOCH: every mtime and timestamp in the image.
	Created time.Time
	// SpillDir, when set, holds file contents on disk instead of in memory.
	SpillDir string
	// Log receives the normalisations applied to package payloads.
	Log io.Writer
	// Order is the order packages are extracted in. The image must not
	// depend on it; `imagectl verify` changes it to prove that.
	Order ExtractOrder
}

// Result is the image with what was learned while making it that the
// image alone would only give back by re-reading its layers.
type Result struct {
	Image v1.Image
	// Copyright maps a package name to its /usr/share/doc/<name>/copyright
	// as shipped in the image, for the SBOM's licences.
	Copyright map[string][]byte
}

// Build assembles the image. Layers, most stable first: (1) the Debian
// packages, split by source package as planLayers says, each with its dpkg
// status.d entries, (2) the configuration generated from the spec, (3) the
// daemon, which changes with every commit.
func Build(in Inputs) (*Result, error) {
	if in.Spec == nil || in.Lock == nil {
		return nil, fmt.Errorf("build: spec and lock are required")
	}
	if in.Created.IsZero() {
		return nil, fmt.Errorf("build: no creation time (SOURCE_DATE_EPOCH)")
	}
	if len(in.Daemon) == 0 {
		return nil, fmt.Errorf("build: no daemon binary")
	}
	if in.Debs == nil {
		return nil, fmt.Errorf("build: no .debs given")
	}
	pkgs := in.Lock.PackagesFor(in.Arch)
	if len(pkgs) == 0 {
		return nil, fmt.Errorf("build: lock has no packages for %s", in.Arch)
	}
	log := in.Log
	if log == nil {
		log = io.Discard
	}
	var opts []rootfs.Option
	if in.SpillDir != "" {
		opts = append(opts, rootfs.WithSpillDir(in.SpillDir))
	}

	tree := rootfs.New(opts...)
	status, err := addPackages(tree, in.Spec.Paths, in.Order.apply(pkgs), in.Debs)
	if err != nil {
		return nil, err
	}
	if err := rootfs.AddDpkgStatus(tree, status); err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	copyright, err := copyrights(tree, pkgs)
	if err != nil {
		return nil, err
	}
	for _, f := range tree.Fixups() {
		fmt.Fprintf(log, "build: %s: /%s: %s\n", f.Origin, f.Path, f.Change)
	}
	layers, err := packageLayers(tree, pkgs, in.Created)
	if err != nil {
		return nil, err
	}

	// The configuration is applied to the package tree itself, because
	// alternatives must resolve to files packages ship; the configuration
	// layer then holds exactly the entries this step added or changed.
	before := snapshot(tree)
	if err := configure(tree, in.Spec, in.Files, in.Arch); err != nil {
		return nil, err
	}
	if err := rootfs.CheckModes(tree, exempt(in.Spec)...); err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	cfgTree, err := changed(tree, before, opts)
	if err != nil {
		return nil, err
	}
	cfgLayer, err := oci.NewLayer(func(w io.Writer) error { return cfgTree.WriteTar(w, in.Created) })
	if err != nil {
		return nil, fmt.Errorf("build: configuration layer: %w", err)
	}
	layers = append(layers, oci.Layer{Layer: cfgLayer, CreatedBy: "imagectl: users, groups, directories, files and alternatives from the spec", Comment: "configuration"})

	daemonTree := rootfs.New()
	if err := daemonTree.AddFile(in.Spec.Daemon.Path, 0o755, 0, 0, in.Daemon); err != nil {
		return nil, fmt.Errorf("build: daemon: %w", err)
	}
	daemonLayer, err := oci.NewLayer(func(w io.Writer) error { return daemonTree.WriteTar(w, in.Created) })
	if err != nil {
		return nil, fmt.Errorf("build: daemon layer: %w", err)
	}
	layers = append(layers, oci.Layer{Layer: daemonLayer, CreatedBy: "imagectl: " + in.Spec.Daemon.Path, Comment: "daemon"})

	img, err := oci.Assemble(oci.Image{
		Created:      in.Created,
		OS:           "linux",
		Architecture: in.Arch, // Debian and OCI agree on amd64 and arm64
		Variant:      variant(in.Arch),
		Config:       imageConfig(in),
		Layers:       layers,
		Annotations:  annotations(in),
	})
	if err != nil {
		return nil, err
	}
	return &Result{Image: img, Copyright: copyright}, nil
}

// packageLayers writes the package tree as the layers planLayers chose.
// Every entry of the tree belongs to exactly one of them, by its Origin;
// a directory also goes to every layer with something below it.
func packageLayers(tree *rootfs.FS, pkgs []debian.LockedPackage, created time.Time) ([]oci.Layer, error) {
	plan := planLayers(pkgs)
	layerOf := map[string]int{}
	for i, l := range plan {
		for _, p := range l.Packages {
			layerOf[p] = i
		}
	}
	err := tree.Walk(func(e rootfs.Entry) error {
		if _, ok := layerOf[e.Origin]; !ok && e.Type != tar.TypeDir {
			return fmt.Errorf("build: /%s comes from %q, which is in no package layer", e.Path, e.Origin)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]oci.Layer, 0, len(plan)+2)
	for i, l := range plan {
		in := func(e rootfs.Entry) bool {
			j, ok := layerOf[e.Origin]
			return ok && j == i
		}
		layer, err := oci.NewLayer(func(w io.Writer) error { return tree.WriteTarPart(w, created, in) })
		if err != nil {
			return nil, fmt.Errorf("build: package layer %s: %w", l.Key, err)
		}
		out = append(out, oci.Layer{Layer: layer, CreatedBy: l.describe(), Comment: "packages: " + l.Key})
	}
	return out, nil
}

// copyrights reads each package's copyright file from the tree: the filter
// kept exactly these out of /usr/share/doc. A package without one (its doc
// directory is a symlink to another package's, say) is simply absent.
func copyrights(tree *rootfs.FS, pkgs []debian.LockedPackage) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, p := range pkgs {
		file := "/usr/share/doc/" + p.Name + "/copyright"
		e, ok := tree.Lookup(file)
		if !ok || (e.Type != tar.TypeReg && e.Type != tar.TypeLink) {
			continue
		}
		rc, err := tree.Open(file)
		if err != nil {
			return nil, fmt.Errorf("build: %s: %s: %w", p.Name, file, err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("build: %s: %s: %w", p.Name, file, err)
		}
		out[p.Name] = b
	}
	return out, nil
}

// addPackages extracts every package's payload into tree and returns the
// dpkg status entries for them.
func addPackages(tree *rootfs.FS, rules spec.PathRules, pkgs []debian.LockedPackage, debs fs.FS) ([]rootfs.StatusEntry, error) {
	keep, err := rootfs.PathFilter(rules.Drop, rules.Keep)
	if err != nil {
		return nil, fmt.Errorf("spec paths: %w", err)
	}
	only := map[string]rootfs.Filter{}
	for name, patterns := range rules.Only {
		if only[name], err = rootfs.OnlyFilter(patterns); err != nil {
			return nil, fmt.Errorf("spec paths.only.%s: %w", name, err)
		}
	}
	status := make([]rootfs.StatusEntry, 0, len(pkgs))
	for _, p := range pkgs {
		b, err := readPinned(debs, p)
		if err != nil {
			return nil, err
		}
		filter := keep
		if o, ok := only[p.Name]; ok {
			filter = func(path string) bool { return keep(path) && o(path) }
		}
		deb, err := extract(tree, p, b, filter)
		if err != nil {
			return nil, err
		}
		status = append(status, rootfs.StatusEntry{Package: p.Name, Control: withSHA256(deb.Control, p.SHA256), MD5Sums: deb.ControlFiles["md5sums"]})
	}
	// status.d is written in name order whatever the extraction order was.
	sort.Slice(status, func(i, j int) bool { return status[i].Package < status[j].Package })
	return status, nil
}

// withSHA256 records the .deb's digest in its status paragraph. dpkg keeps
// no digest of an installed package, so without it nothing in the image
// ties a package to the file the lock pinned; `imagectl policy` compares
// this field with the lock. Scanners read deb822 and skip unknown fields.
func withSHA256(control []byte, sha string) []byte {
	para, err := debian.ParseControl("control", string(control))
	if err == nil {
		if _, ok := para.Get("SHA256"); ok {
			return control
		}
	}
	text := strings.TrimRight(string(control), "\n")
	return []byte(text + "\nSHA256: " + strings.ToLower(sha) + "\n")
}

// readPinned returns the bytes of p's .deb once they are known to be the
// file the lock pins: read whole (never more than one byte past the pinned
// size), then size and sha256 compared. No byte is parsed before that. A
// cache hit or a --debs file was matched by name (at best by size too),
// and a parser fed a hostile file pays before a digest taken alongside it
// could refuse it: an xz stream asking for a multi-GiB dictionary, a tar
// header claiming a huge file. The bytes stay in memory from the check to
// the parse, so the file cannot change in between.
func readPinned(debs fs.FS, p debian.LockedPackage) ([]byte, error) {
	name := strings.ToLower(p.SHA256)
	f, err := debs.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("build: %s %s: no .deb fetched for sha256 %s", p.Name, p.Version, p.SHA256)
	}
	if err != nil {
		return nil, fmt.Errorf("build: %s %s: %w", p.Name, p.Version, err)
	}
	defer f.Close()
	if p.Size <= 0 {
		return nil, fmt.Errorf("build: %s %s: lock pins no size", p.Name, p.Version)
	}
	b, err := io.ReadAll(io.LimitReader(f, p.Size+1))
	if err != nil {
		return nil, fmt.Errorf("build: %s %s (.deb %s): %w", p.Name, p.Version, name, err)
	}
	if int64(len(b)) != p.Size {
		more := ""
		if int64(len(b)) > p.Size {
			more = " or more"
		}
		return nil, fmt.Errorf("build: %s %s (.deb %s): %d bytes%s, lock pins %d: not the pinned file", p.Name, p.Version, name, len(b), more, p.Size)
	}
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); got != name {
		return nil, fmt.Errorf("build: %s %s (.deb %s): sha256 %s, lock pins %s: not the pinned file", p.Name, p.Version, name, got, p.SHA256)
	}
	return b, nil
}

// extract parses a .deb readPinned checked and adds its payload to the
// tree. It is the build's one use of the .deb reader.
func extract(tree *rootfs.FS, p debian.LockedPackage, b []byte, keep rootfs.Filter) (*deb.Deb, error) {
	d, err := deb.Read(bytes.NewReader(b), int64(len(b)), deb.DefaultLimits, func(tr *tar.Reader) error {
		return tree.AddTar(p.Name, tr, keep)
	})
	if err != nil {
		return nil, fmt.Errorf("build: %s %s: %w", p.Name, p.Version, err)
	}
	return d, nil
}

// configure re-creates what maintainer scripts would have done, from the spec.
func configure(tree *rootfs.FS, s *spec.Spec, files fs.FS, arch string) error {
	users := make([]rootfs.User, 0, len(s.Users))
	for _, u := range s.Users {
		users = append(users, rootfs.User{Name: u.Name, UID: u.UID, GID: u.GID, Gecos: u.Gecos, Home: u.Home, Shell: u.Shell})
	}
	groups := make([]rootfs.Group, 0, len(s.Groups))
	for _, g := range s.Groups {
		groups = append(groups, rootfs.Group{Name: g.Name, GID: g.GID, Members: g.Members})
	}
	if err := rootfs.AddUsers(tree, users, groups); err != nil {
		return fmt.Errorf("build: users: %w", err)
	}
	for _, d := range s.Directories {
		if err := tree.AddDir(d.Path, rootfs.UnixMode(uint32(d.Mode)), d.UID, d.GID); err != nil {
			return fmt.Errorf("build: directory %s: %w", d.Path, err)
		}
	}
	for _, f := range s.Files {
		if files == nil {
			return fmt.Errorf("build: file %s: no spec files given", f.Path)
		}
		b, err := fs.ReadFile(files, path.Clean(filepath.ToSlash(f.Source)))
		if err != nil {
			return fmt.Errorf("build: file %s: %w", f.Path, err)
		}
		if err := tree.AddFile(f.Path, rootfs.UnixMode(uint32(f.Mode)), f.UID, f.GID, b); err != nil {
			return fmt.Errorf("build: file %s: %w", f.Path, err)
		}
	}
	alts := make([]rootfs.Alternative, 0, len(s.Alternatives))
	for _, a := range s.Alternatives {
		name, err1 := spec.Expand(a.Name, arch)
		link, err2 := spec.Expand(a.Link, arch)
		target, err3 := spec.Expand(a.Target, arch)
		if err := errors.Join(err1, err2, err3); err != nil {
			return fmt.Errorf("build: alternative %s: %w", a.Name, err)
		}
		alts = append(alts, rootfs.Alternative{Name: name, Link: link, Target: target})
	}
	if err := rootfs.AddAlternatives(tree, alts); err != nil {
		return fmt.Errorf("build: %w", err)
	}
	return nil
}

// exempt lists the paths the spec deliberately owns or opens up.
func exempt(s *spec.Spec) []string {
	var out []string
	for _, d := range s.Directories {
		out = append(out, d.Path)
	}
	for _, f := range s.Files {
		out = append(out, f.Path)
	}
	return out
}

func snapshot(tree *rootfs.FS) map[string]rootfs.Entry {
	m := make(map[string]rootfs.Entry, tree.Len())
	_ = tree.Walk(func(e rootfs.Entry) error {
		m[e.Path] = e
		return nil
	})
	return m
}

// changed copies into a new tree every entry of tree that is not in before
// or differs from it, with the directories leading to each carrying their
// final owner and mode (so the layer does not reset them to defaults).
func changed(tree *rootfs.FS, before map[string]rootfs.Entry, opts []rootfs.Option) (*rootfs.FS, error) {
	out := rootfs.New(opts...)
	var paths []string
	_ = tree.Walk(func(e rootfs.Entry) error {
		if old, ok := before[e.Path]; !ok || old != e {
			paths = append(paths, e.Path)
		}
		return nil
	})
	sort.Strings(paths)
	dirs := map[string]bool{}
	for _, p := range paths {
		for d := path.Dir(p); d != "." && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	for d := range dirs {
		paths = append(paths, d)
	}
	sort.Strings(paths) // parents first
	seen := map[string]bool{}
	for _, p := range paths {
		if seen[p] {
			continue
		}
		seen[p] = true
		e, ok := tree.Lookup("/" + p)
		if !ok {
			return nil, fmt.Errorf("build: %s vanished from the tree", p)
		}
		if err := copyEntry(out, tree, e); err != nil {
			return nil, fmt.Errorf("build: configuration layer: /%s: %w", p, err)
		}
	}
	return out, nil
}

func copyEntry(dst, src *rootfs.FS, e rootfs.Entry) error {
	p := "/" + e.Path
	switch e.Type {
	case tar.TypeDir:
		return dst.AddDir(p, e.Mode, e.Uid, e.Gid)
	case tar.TypeSymlink:
		return dst.AddSymlink(p, e.Linkname)
	case tar.TypeReg, tar.TypeLink:
		rc, err := src.Open(p)
		if err != nil {
			return err
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			return err
		}
		return dst.AddFile(p, e.Mode, e.Uid, e.Gid, b)
	}
	return fmt.Errorf("unexpected entry type %q", e.Type)
}

func imageConfig(in Inputs) v1.Config {
	c := in.Spec.Config
	cfg := v1.Config{
		User:       c.User,
		Entrypoint: c.Entrypoint,
		Cmd:        c.Cmd,
		WorkingDir: c.WorkingDir,
		Env:        c.Env,
		StopSignal: c.StopSignal,
		Labels:     map[string]string{},
	}
	if len(c.ExposedPorts) > 0 {
		cfg.ExposedPorts = map[string]struct{}{}
		for _, p := range c.ExposedPorts {
			cfg.ExposedPorts[p] = struct{}{}
		}
	}
	if h := c.Healthcheck; h != nil {
		cfg.Healthcheck = &v1.HealthConfig{
			Test:        h.Test,
			Interval:    time.Duration(h.Interval),
			Timeout:     time.Duration(h.Timeout),
			StartPeriod: time.Duration(h.StartPeriod),
			Retries:     h.Retries,
		}
	}
	for k, v := range c.Labels {
		cfg.Labels[k] = v
	}
	// The OCI annotations double as labels: `podman inspect` and
	// `docker inspect` show labels, registries show annotations.
	for k, v := range annotations(in) {
		cfg.Labels[k] = v
	}
	return cfg
}

func annotations(in Inputs) map[string]string {
	a := map[string]string{}
	for k, v := range in.Spec.Annotations {
		a[k] = v
	}
	a["org.opencontainers.image.created"] = in.Created.UTC().Format(time.RFC3339)
	if in.Version != "" {
		a["org.opencontainers.image.version"] = in.Version
	}
	if in.Revision != "" {
		a["org.opencontainers.image.revision"] = in.Revision
	}
	return a
}

func variant(debArch string) string {
	if debArch == "arm64" {
		return "v8"
	}
	return ""
}
