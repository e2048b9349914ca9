// Package build is the image pipeline: spec + lock + fetched .debs + daemon
// binary -> v1.Image. It reads only what it is given (no network, no clock),
// so the same inputs always give the same digest; fetching and writing
// outputs are the caller's edges.
package build

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
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
	// Debs maps a locked package's sha256 to the path of its .deb. Build
	// hashes each file as it extracts it and fails on a mismatch.
	Debs map[string]string
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

// Image assembles the image; see Build.
func Image(in Inputs) (v1.Image, error) {
	r, err := Build(in)
	if err != nil {
		return nil, err
	}
	return r.Image, nil
}

// Build assembles the image. Layers, most stable first: (1) the Debian
// packages, (2) the configuration generated from the spec, (3) the daemon,
// which changes with every commit.
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
	copyright, err := copyrights(tree, pkgs)
	if err != nil {
		return nil, err
	}
	for _, f := range tree.Fixups() {
		fmt.Fprintf(log, "build: %s: /%s: %s\n", f.Origin, f.Path, f.Change)
	}
	pkgLayer, err := oci.NewLayer(func(w io.Writer) error { return tree.WriteTar(w, in.Created) })
	if err != nil {
		return nil, fmt.Errorf("build: package layer: %w", err)
	}

	// The configuration is applied to the package tree itself, because
	// alternatives must resolve to files packages ship and status.d lists
	// the files that survived the filter; the configuration layer then
	// holds exactly the entries this step added or changed.
	before := snapshot(tree)
	if err := configure(tree, in.Spec, in.Arch, status); err != nil {
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

	daemonTree := rootfs.New()
	if err := daemonTree.AddFile(in.Spec.Daemon.Path, 0o755, 0, 0, in.Daemon); err != nil {
		return nil, fmt.Errorf("build: daemon: %w", err)
	}
	daemonLayer, err := oci.NewLayer(func(w io.Writer) error { return daemonTree.WriteTar(w, in.Created) })
	if err != nil {
		return nil, fmt.Errorf("build: daemon layer: %w", err)
	}

	img, err := oci.Assemble(oci.Image{
		Created:      in.Created,
		OS:           "linux",
		Architecture: in.Arch, // Debian and OCI agree on amd64 and arm64
		Variant:      variant(in.Arch),
		Config:       imageConfig(in),
		Layers: []oci.Layer{
			{Layer: pkgLayer, CreatedBy: fmt.Sprintf("imagectl: %d Debian packages from %s, without maintainer scripts", len(pkgs), in.Lock.Distribution), Comment: "packages"},
			{Layer: cfgLayer, CreatedBy: "imagectl: users, groups, directories, files and alternatives from the spec; dpkg status.d", Comment: "configuration"},
			{Layer: daemonLayer, CreatedBy: "imagectl: " + in.Spec.Daemon.Path, Comment: "daemon"},
		},
		Annotations: annotations(in),
	})
	if err != nil {
		return nil, err
	}
	return &Result{Image: img, Copyright: copyright}, nil
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
func addPackages(tree *rootfs.FS, rules spec.PathRules, pkgs []debian.LockedPackage, debs map[string]string) ([]rootfs.StatusEntry, error) {
	keep, err := rootfs.PathFilter(rules.Drop, rules.Keep)
	if err != nil {
		return nil, fmt.Errorf("spec paths: %w", err)
	}
	status := make([]rootfs.StatusEntry, 0, len(pkgs))
	for _, p := range pkgs {
		file, ok := debs[strings.ToLower(p.SHA256)]
		if !ok {
			return nil, fmt.Errorf("build: %s %s: no .deb fetched for sha256 %s", p.Name, p.Version, p.SHA256)
		}
		deb, sum, err := readDeb(tree, p, file, keep)
		if err != nil {
			return nil, err
		}
		status = append(status, rootfs.StatusEntry{Package: p.Name, Control: withSHA256(deb.Control, sum), MD5Sums: deb.ControlFiles["md5sums"]})
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

// readDeb extracts one package and returns the sha256 of the bytes it read.
// The whole file is hashed and compared with the lock before any byte of it
// is parsed (deb.ReadVerified): a cache hit or a --debs file was matched by
// name and size only, and the lock's digest is the only thing that ties the
// image to the pinned package.
func readDeb(tree *rootfs.FS, p debian.LockedPackage, file string, keep rootfs.Filter) (*deb.Deb, string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, "", fmt.Errorf("build: %s: %w", p.Name, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, "", fmt.Errorf("build: %s: %w", p.Name, err)
	}
	d, err := deb.ReadVerified(f, fi.Size(), p.Size, p.SHA256, func(tr *tar.Reader) error {
		return tree.AddTar(p.Name, tr, keep)
	})
	if err != nil {
		return nil, "", fmt.Errorf("build: %s %s (%s): %w", p.Name, p.Version, file, err)
	}
	return d, strings.ToLower(p.SHA256), nil
}

// configure re-creates what maintainer scripts would have done, from the spec.
func configure(tree *rootfs.FS, s *spec.Spec, arch string, status []rootfs.StatusEntry) error {
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
		b, err := os.ReadFile(s.Source(f))
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
	if err := rootfs.AddDpkgStatus(tree, status); err != nil {
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
