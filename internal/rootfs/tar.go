package rootfs

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
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
	mtime = mtime.UTC().Truncate(time.Second)
	tw := tar.NewWriter(w)
	firsts := map[*inode]string{}
	var buf []byte // copy buffer for spilled contents, allocated on first use
	var hdr tar.Header
	for _, p := range f.sorted() {
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
			if n.ino.links > 1 {
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
