// Package rootfs assembles an image's file tree in memory from untrusted
// package payloads and generated files, and writes it as a tar stream that
// depends only on the tree's contents: not on the order things were added,
// the machine, the clock or the user running the build.
//
// The tree is never materialised on disk, so a hostile payload cannot touch
// the build machine; the checks here (no "..", no writing through symlinks,
// no device nodes, hard links only inside the tree) exist so the image
// itself is what the packages claim, not to protect the host.
package rootfs

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// Entry describes one path of the tree.
type Entry struct {
	Path string // "usr/bin/pulseaudio": relative, clean, no leading "./" or "/"
	// Type is tar.TypeReg, tar.TypeDir, tar.TypeSymlink or tar.TypeLink. A
	// set of hard-linked paths shows up as one TypeReg (the first in sorted
	// order) and TypeLink entries pointing at it, exactly as WriteTar emits it.
	Type byte
	// Mode holds permission bits plus fs.ModeSetuid, fs.ModeSetgid and
	// fs.ModeSticky; never type bits (Type says that).
	Mode     fs.FileMode
	Uid, Gid int
	Size     int64  // regular files
	Linkname string // symlink target, or the hard link's first path
	// Origin is the package that provided the entry, "" for generated ones.
	// When several packages provide the same directory or identical file,
	// it is the smallest name, so it does not depend on the order of adding.
	Origin string
	SHA256 string // hex, regular files and hard links
}

// Filter decides which paths of a package payload enter the tree.
type Filter func(path string) bool // true: keep

// Fixup records something AddTar changed while normalising a package's
// payload, so the build can log it instead of silently shipping or hiding it.
type Fixup struct {
	Origin string
	Path   string
	Change string // "setuid bit dropped", "mode 0775 -> 0755", ...
}

// FS is the in-memory file tree. The zero value is not usable; call New.
// Only ReadPayload may run concurrently; every other method expects one
// caller at a time. Add package payloads before generated entries: a
// generated entry replaces what a package put there, while a package
// entry that disagrees with an earlier generated one is a conflict.
type FS struct {
	nodes       map[string]*node
	store       store
	fixups      []Fixup
	maxFileSize int64
}

type node struct {
	typ    byte // tar.TypeReg, TypeDir or TypeSymlink; hard links share ino
	mode   fs.FileMode
	uid    int
	gid    int
	target string // symlink target
	ino    *inode // regular files
	origin string
	// implicit marks a directory created only because something below it
	// was added; the first explicit entry for it sets its mode.
	implicit bool
}

// inode is a file's content identity. Paths that share one *inode are hard
// links of each other; equal digests in different inodes are just equal
// files (stored once, written twice).
type inode struct {
	sum   digest
	size  int64
	links int
}

// Option configures New.
type Option func(*FS)

// WithSpillDir keeps file contents in dir (content-addressed, one file per
// distinct content) instead of memory. dir must exist and should be private
// to this build; its files are not removed by FS.
func WithSpillDir(dir string) Option {
	return func(f *FS) { f.store = newDiskStore(dir) }
}

// WithMaxFileSize bounds one file of a package payload (default 2 GiB), so a
// header claiming a huge size fails cleanly instead of exhausting memory.
func WithMaxFileSize(n int64) Option {
	return func(f *FS) { f.maxFileSize = n }
}

// New returns an empty tree.
func New(opts ...Option) *FS {
	f := &FS{nodes: map[string]*node{}, store: newMemStore(), maxFileSize: 2 << 30}
	for _, o := range opts {
		o(f)
	}
	return f
}

// Fixups returns what AddTar changed, sorted by path then origin.
func (f *FS) Fixups() []Fixup {
	out := append([]Fixup(nil), f.fixups...)
	sort.Slice(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return out[i].Path < out[j].Path
		}
		if out[i].Origin != out[j].Origin {
			return out[i].Origin < out[j].Origin
		}
		return out[i].Change < out[j].Change
	})
	return out
}

// cleanPath turns a tar or caller path into the tree's key. Any ".."
// component is refused outright, even a harmless "usr/../usr", because a
// package that needs one is broken and cleaning it would hide where it
// points.
func cleanPath(p string, allowAbs bool) (string, error) {
	if strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("path %q contains NUL", p)
	}
	if strings.HasPrefix(p, "/") {
		if !allowAbs {
			return "", fmt.Errorf("absolute path %q", p)
		}
		p = strings.TrimLeft(p, "/")
	}
	for _, c := range strings.Split(p, "/") {
		if c == ".." {
			return "", fmt.Errorf("path %q has a \"..\" component", p)
		}
	}
	c := path.Clean(p)
	if c == "." {
		return "", nil
	}
	return c, nil
}

// modeFromUnix converts tar's permission and set-id bits to fs.FileMode.
func modeFromUnix(m int64) fs.FileMode {
	mode := fs.FileMode(m) & fs.ModePerm
	if m&0o4000 != 0 {
		mode |= fs.ModeSetuid
	}
	if m&0o2000 != 0 {
		mode |= fs.ModeSetgid
	}
	if m&0o1000 != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}

func unixFromMode(m fs.FileMode) int64 {
	u := int64(m & fs.ModePerm)
	if m&fs.ModeSetuid != 0 {
		u |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		u |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		u |= 0o1000
	}
	return u
}

// UnixMode converts a mode written the Unix way (0o1777, 0o2755) to the
// fs.FileMode the tree uses.
func UnixMode(m uint32) fs.FileMode { return modeFromUnix(int64(m)) }

// callerMode accepts both spellings from callers: fs.FileMode bits, or the
// Unix set-id bits 0o7000 that fs.FileMode leaves unused (a spec's "1777"
// converted with a plain fs.FileMode(0o1777)). Type bits are dropped.
func callerMode(m fs.FileMode) fs.FileMode {
	out := m & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
	return out | modeFromUnix(int64(m&0o7000))
}

// parents makes sure every ancestor of p is a directory, creating missing
// ones as 0755 root:root. A symlink or file among the ancestors is an error:
// writing through a symlink would put the entry somewhere other than where
// the payload says, possibly outside the package's own paths.
func (f *FS) parents(p, origin string) error {
	for i := 0; i < len(p); i++ {
		if p[i] != '/' {
			continue
		}
		dir := p[:i]
		n, ok := f.nodes[dir]
		switch {
		case !ok:
			f.nodes[dir] = &node{typ: tar.TypeDir, mode: 0o755, origin: origin, implicit: true}
		case n.implicit:
			if origin < n.origin {
				n.origin = origin // the smallest name, whatever the order of adding
			}
		case n.typ == tar.TypeSymlink:
			return fmt.Errorf("%s: parent %s is a symlink (-> %s, from %s): refusing to write through it", p, dir, n.target, originName(n.origin))
		case n.typ != tar.TypeDir:
			return fmt.Errorf("%s: parent %s is not a directory (from %s)", p, dir, originName(n.origin))
		}
	}
	return nil
}

func originName(o string) string {
	if o == "" {
		return "generated content"
	}
	return "package " + o
}

// unlink removes one path, keeping hard-link counts right.
func (f *FS) unlink(p string) {
	if n, ok := f.nodes[p]; ok {
		if n.ino != nil {
			n.ino.links--
		}
		delete(f.nodes, p)
	}
}

// hasChildren reports whether any path lies below dir.
func (f *FS) hasChildren(dir string) bool {
	prefix := dir + "/"
	for p := range f.nodes {
		if strings.HasPrefix(p, prefix) {
			return true
		}
	}
	return false
}

// put is the generated-content path: the caller is trusted, so the entry
// replaces whatever is there (a spec's /tmp 1777 over a package's /tmp),
// except that a directory with contents is never silently replaced.
func (f *FS) put(p string, n *node) error {
	if p == "" {
		return fmt.Errorf("cannot replace the root directory")
	}
	if err := f.parents(p, ""); err != nil {
		return err
	}
	if old, ok := f.nodes[p]; ok && old.typ == tar.TypeDir && n.typ != tar.TypeDir && f.hasChildren(p) {
		return fmt.Errorf("%s: is a non-empty directory (from %s), cannot replace it with a file or symlink", p, originName(old.origin))
	}
	f.unlink(p)
	f.nodes[p] = n
	return nil
}

func checkOwner(uid, gid int) error {
	if uid < 0 || gid < 0 || uid > 0o7777777 || gid > 0o7777777 {
		return fmt.Errorf("owner %d:%d out of range", uid, gid)
	}
	return nil
}

// AddFile adds or replaces a regular file with generated content.
func (f *FS) AddFile(p string, mode fs.FileMode, uid, gid int, content []byte) error {
	key, err := cleanPath(p, true)
	if err != nil {
		return err
	}
	if err := checkOwner(uid, gid); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	sum, err := f.store.putBytes(content)
	if err != nil {
		return fmt.Errorf("%s: storing content: %w", p, err)
	}
	n := &node{typ: tar.TypeReg, mode: callerMode(mode), uid: uid, gid: gid, ino: &inode{sum: sum, size: int64(len(content)), links: 1}}
	return f.put(key, n)
}

// AddDir adds a directory, or sets the mode and owner of an existing one.
// Missing parents are created 0755 root:root.
func (f *FS) AddDir(p string, mode fs.FileMode, uid, gid int) error {
	key, err := cleanPath(p, true)
	if err != nil {
		return err
	}
	if err := checkOwner(uid, gid); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	if old, ok := f.nodes[key]; ok && old.typ == tar.TypeDir {
		old.mode, old.uid, old.gid, old.origin, old.implicit = callerMode(mode), uid, gid, "", false
		return nil
	}
	return f.put(key, &node{typ: tar.TypeDir, mode: callerMode(mode), uid: uid, gid: gid})
}

// AddSymlink adds or replaces a symlink (root-owned, as symlink modes and
// owners mean nothing on Linux beyond sticky directories).
func (f *FS) AddSymlink(p, target string) error {
	key, err := cleanPath(p, true)
	if err != nil {
		return err
	}
	if target == "" || strings.ContainsRune(target, 0) {
		return fmt.Errorf("%s: bad symlink target %q", p, target)
	}
	return f.put(key, &node{typ: tar.TypeSymlink, mode: 0o777, target: target})
}

// Remove deletes path and everything under it. Removing a missing path is
// not an error: filters and specs name paths that only some builds have.
func (f *FS) Remove(p string) {
	key, err := cleanPath(p, true)
	if err != nil || key == "" {
		return
	}
	f.unlink(key)
	prefix := key + "/"
	for q := range f.nodes {
		if strings.HasPrefix(q, prefix) {
			f.unlink(q)
		}
	}
}

// Lookup returns the entry at path.
func (f *FS) Lookup(p string) (Entry, bool) {
	key, err := cleanPath(p, true)
	if err != nil {
		return Entry{}, false
	}
	n, ok := f.nodes[key]
	if !ok {
		return Entry{}, false
	}
	first := key
	if n.ino != nil && n.ino.links > 1 {
		for q, m := range f.nodes {
			if m.ino == n.ino && q < first {
				first = q
			}
		}
	}
	return n.entry(key, first), true
}

func (n *node) entry(p, firstLink string) Entry {
	e := Entry{Path: p, Type: n.typ, Mode: n.mode, Uid: n.uid, Gid: n.gid, Origin: n.origin}
	switch n.typ {
	case tar.TypeSymlink:
		e.Linkname = n.target
	case tar.TypeReg:
		e.Size = n.ino.size
		e.SHA256 = n.ino.sum.String()
		if firstLink != p {
			e.Type, e.Linkname = tar.TypeLink, firstLink
		}
	}
	return e
}

// sorted returns the paths in output order. Plain byte order already puts
// a directory before everything below it, since a path sorts before any
// longer path it is a prefix of.
func (f *FS) sorted() []string {
	keys := make([]string, 0, len(f.nodes))
	for p := range f.nodes {
		keys = append(keys, p)
	}
	sort.Strings(keys)
	return keys
}

// Walk calls fn for every entry in sorted order, hard links resolved as
// WriteTar will write them. fn must not modify the tree.
func (f *FS) Walk(fn func(Entry) error) error {
	firsts := map[*inode]string{}
	for _, p := range f.sorted() {
		n := f.nodes[p]
		first := p
		if n.ino != nil && n.ino.links > 1 {
			if q, ok := firsts[n.ino]; ok {
				first = q
			} else {
				firsts[n.ino] = p
			}
		}
		if err := fn(n.entry(p, first)); err != nil {
			return err
		}
	}
	return nil
}

// Len is the number of entries.
func (f *FS) Len() int { return len(f.nodes) }

// Open returns a regular file's content.
func (f *FS) Open(p string) (io.ReadCloser, error) {
	key, err := cleanPath(p, true)
	if err != nil {
		return nil, err
	}
	n, ok := f.nodes[key]
	if !ok || n.ino == nil {
		return nil, fmt.Errorf("%s: no regular file in the tree", p)
	}
	return f.store.open(n.ino.sum)
}
