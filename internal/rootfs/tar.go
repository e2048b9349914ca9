package rootfs

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"time"
)

// mergeNode adds a package entry, or reconciles it with what a package
// already put there. Every outcome is independent of which package came
// first, which is what makes the tree order-independent.
func (f *FS) mergeNode(p string, n *node) error {
	old, ok := f.nodes[p]
	if !ok {
		f.nodes[p] = n
		return nil
	}
	conflict := func(what string) error {
		return fmt.Errorf("%s: %s (also provided by %s)", p, what, originName(old.origin))
	}
	if old.typ != n.typ {
		return conflict(fmt.Sprintf("is a %s here but a %s there", typeName(n.typ), typeName(old.typ)))
	}
	switch n.typ {
	case tar.TypeDir:
		if old.implicit {
			old.mode, old.implicit, old.origin = n.mode, false, n.origin
			return nil
		}
		if old.mode != n.mode || old.uid != n.uid || old.gid != n.gid {
			return conflict(fmt.Sprintf("directory mode %04o differs from %04o", unixFromMode(n.mode), unixFromMode(old.mode)))
		}
	case tar.TypeSymlink:
		if old.target != n.target {
			return conflict(fmt.Sprintf("symlink to %s differs from symlink to %s", n.target, old.target))
		}
	case tar.TypeReg:
		if old.ino.sum != n.ino.sum || old.ino.size != n.ino.size {
			return conflict("content differs")
		}
		if old.mode != n.mode {
			return conflict(fmt.Sprintf("mode %04o differs from %04o", unixFromMode(n.mode), unixFromMode(old.mode)))
		}
	}
	if n.origin < old.origin {
		old.origin = n.origin
	}
	return nil
}

// addHardLink links p to target, a regular file the same payload added
// earlier (ReadPayload checked that). Link groups are the union of every
// package's declared links: a path several packages ship is one path, so
// groups that meet at it merge. Adding a plain file never changes a group,
// so the result does not depend on the order of packages; identical files
// at paths no package links stay separate files (the store still keeps
// their content once).
func (f *FS) addHardLink(origin, p, target, linkname string) error {
	t, ok := f.nodes[target]
	if !ok || t.typ != tar.TypeReg {
		// Unreachable for payloads from ReadPayload; kept so a broken
		// invariant is an error rather than a dangling link.
		return fmt.Errorf("%s: hard link to %s, which is not a regular file in the tree", p, linkname)
	}
	if target == p {
		return nil
	}
	old, ok := f.nodes[p]
	if !ok {
		t.ino.links++
		f.nodes[p] = &node{typ: tar.TypeReg, mode: t.mode, uid: t.uid, gid: t.gid, ino: t.ino, origin: origin}
		return nil
	}
	if old.typ != tar.TypeReg || old.ino.sum != t.ino.sum || old.ino.size != t.ino.size || old.mode != t.mode {
		return fmt.Errorf("%s: hard link to %s conflicts with %s's entry", p, linkname, originName(old.origin))
	}
	if origin < old.origin {
		old.origin = origin
	}
	if old.ino != t.ino {
		f.joinLinks(old.ino, t.ino)
	}
	return nil
}

// joinLinks moves every path of group from into group to.
func (f *FS) joinLinks(from, to *inode) {
	for _, n := range f.nodes {
		if n.ino == from {
			n.ino = to
			to.links++
		}
	}
	from.links = 0
}

func typeName(t byte) string {
	switch t {
	case tar.TypeReg:
		return "file"
	case tar.TypeDir:
		return "directory"
	case tar.TypeSymlink:
		return "symlink"
	case tar.TypeLink:
		return "hard link"
	}
	return fmt.Sprintf("type %q", t)
}

// WriteTar writes the tree as one tar stream. The bytes depend only on the
// tree: entries in byte-wise path order (parents first), mtime for every
// entry, numeric owners with empty user and group names, no access or
// change times, no xattrs. Headers are USTAR; archive/tar switches an entry
// to PAX only for what USTAR cannot hold (paths over 256 bytes, long link
// targets), which is again a function of the tree alone. Of a set of hard
// links, the first path in sorted order carries the content and the others
// link to it, so a link never precedes its target.
func (f *FS) WriteTar(w io.Writer, mtime time.Time) error {
	return f.writeTar(w, mtime, f.sorted())
}

// WriteTarPart writes the part of the tree that in selects, as WriteTar
// would write it, for one layer of an image split into several. Every
// selected entry comes with the directories leading to it, carrying their
// mode and owner in the tree, so each layer applies alone and several
// layers agree on every directory they share. A set of hard links is
// written within the part only: the first selected path carries the
// content and the other selected paths link to it. A layer is unpacked on
// its own (overlay snapshotters extract each into its own directory), so a
// link to a path in another layer would not resolve; a hard-link set split
// across parts becomes one set per part with equal contents, which is what
// the paths hold anyway.
//
// in sees each entry as Walk reports it. A directory in does not select is
// still written when something below it is.
func (f *FS) WriteTarPart(w io.Writer, mtime time.Time, in func(Entry) bool) error {
	return f.writeTar(w, mtime, f.Part(in))
}

// Part returns the paths WriteTarPart writes for in, sorted.
func (f *FS) Part(in func(Entry) bool) []string {
	var out []string
	dirs := map[string]bool{}
	_ = f.Walk(func(e Entry) error {
		if !in(e) {
			return nil
		}
		out = append(out, e.Path)
		for d := path.Dir(e.Path); d != "." && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
		}
		return nil
	})
	for _, p := range out {
		delete(dirs, p)
	}
	for d := range dirs {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

func (f *FS) writeTar(w io.Writer, mtime time.Time, paths []string) error {
	mtime = mtime.UTC().Truncate(time.Second)
	tw := tar.NewWriter(w)
	// links counts each inode's paths among those written, so a file whose
	// other links are all in other parts is written as a plain file.
	links := map[*inode]int{}
	for _, p := range paths {
		if n := f.nodes[p]; n.ino != nil && n.ino.links > 1 {
			links[n.ino]++
		}
	}
	firsts := map[*inode]string{}
	var buf []byte // copy buffer for spilled contents, allocated on first use
	var hdr tar.Header
	for _, p := range paths {
		n := f.nodes[p]
		hdr = tar.Header{
			Name:    p,
			Mode:    unixFromMode(n.mode),
			Uid:     n.uid,
			Gid:     n.gid,
			ModTime: mtime,
		}
		var content []byte
		var ino *inode
		switch n.typ {
		case tar.TypeDir:
			hdr.Typeflag, hdr.Name = tar.TypeDir, p+"/"
		case tar.TypeSymlink:
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, n.target
		case tar.TypeReg:
			if first, ok := firsts[n.ino]; ok {
				hdr.Typeflag, hdr.Linkname = tar.TypeLink, first
				break
			}
			if links[n.ino] > 1 {
				firsts[n.ino] = p
			}
			hdr.Typeflag, hdr.Size = tar.TypeReg, n.ino.size
			ino = n.ino
			content = f.store.bytes(n.ino.sum)
		}
		if err := tw.WriteHeader(&hdr); err != nil {
			return fmt.Errorf("writing %s: %w", p, err)
		}
		if ino == nil || ino.size == 0 {
			continue
		}
		if content != nil {
			if _, err := tw.Write(content); err != nil {
				return fmt.Errorf("writing %s: %w", p, err)
			}
			continue
		}
		if buf == nil {
			buf = make([]byte, 256<<10)
		}
		if err := f.copyContent(tw, ino, buf); err != nil {
			return fmt.Errorf("writing %s: %w", p, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("finishing tar: %w", err)
	}
	return nil
}

func (f *FS) copyContent(w io.Writer, ino *inode, buf []byte) error {
	rc, err := f.store.open(ino.sum)
	if err != nil {
		return err
	}
	defer rc.Close()
	// onlyReader hides *os.File's WriterTo so io.CopyBuffer uses buf
	// instead of allocating its own for every file.
	n, err := io.CopyBuffer(w, onlyReader{rc}, buf)
	if err != nil {
		return err
	}
	if n != ino.size {
		return errors.New("stored content changed size")
	}
	return nil
}

type onlyReader struct{ io.Reader }
