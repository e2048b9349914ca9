package rootfs

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"strings"
)

// Payload is one package's payload, read and checked but not yet in the
// tree. Reading is the slow part (decompression, hashing) and needs no
// tree, so a build can read packages in parallel with ReadPayload and then
// add them one by one with AddPayload; the resulting tree is the same
// whatever the order.
type Payload struct {
	origin  string
	entries []payloadEntry
	fixups  []Fixup
	// seen maps each kept path to its latest entry, so a hard link is
	// resolved against this payload alone: resolving against the tree
	// would make a link to another package's file work or fail depending
	// on which package came first.
	seen map[string]int
}

type payloadEntry struct {
	path     string
	typ      byte // tar.TypeReg, TypeDir, TypeSymlink or TypeLink
	mode     fs.FileMode
	target   string // symlink target, or the hard link's cleaned target
	linkname string // the hard link's target as written, for errors
	sum      digest
	size     int64
}

// AddTar copies a package payload (a .deb's data.tar) into the tree,
// attributing entries to origin. keep may be nil (keep everything). It is
// ReadPayload followed by AddPayload.
//
// The payload is untrusted. Refused, with an error naming the package and
// path: absolute paths, ".." components, writing through a symlink, hard
// links to anything but a regular file earlier in the same payload (a
// package cannot link to another package's file), device nodes, FIFOs, sockets and unknown entry types, and a
// path that another package (or the same payload) provides differently.
// Identical files, symlinks and directories merge.
//
// Normalised, and reported through Fixups: owners forced to 0:0, setuid,
// setgid and sticky bits dropped, group and other write permission removed,
// extended attributes dropped. The image's own writable or set-id paths
// come from generated entries (AddDir, AddFile), never from packages.
func (f *FS) AddTar(origin string, tr *tar.Reader, keep Filter) error {
	p, err := f.ReadPayload(origin, tr, keep)
	if err != nil {
		return err
	}
	return f.AddPayload(p)
}

// ReadPayload reads and checks a package payload and stores its contents,
// without touching the tree. It is safe to call from several goroutines at
// once, and alongside any other method.
func (f *FS) ReadPayload(origin string, tr *tar.Reader, keep Filter) (*Payload, error) {
	p := &Payload{origin: origin, seen: map[string]int{}}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return p, nil
		}
		if err != nil {
			// A payload cut short is io.ErrUnexpectedEOF already: tar
			// and package deb's decompressors say so.
			return nil, fmt.Errorf("package %s: reading payload: %w", origin, err)
		}
		if err := f.readEntry(p, hdr, tr, keep); err != nil {
			return nil, fmt.Errorf("package %s: %w", origin, err)
		}
	}
}

func (f *FS) readEntry(p *Payload, hdr *tar.Header, r io.Reader, keep Filter) error {
	name, err := cleanPath(hdr.Name, false)
	if err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeDir, tar.TypeSymlink, tar.TypeLink:
	case tar.TypeChar, tar.TypeBlock:
		return fmt.Errorf("%s: device node (type %q) not allowed in an image payload", hdr.Name, hdr.Typeflag)
	case tar.TypeFifo:
		return fmt.Errorf("%s: FIFO not allowed in an image payload", hdr.Name)
	default:
		return fmt.Errorf("%s: unsupported tar entry type %q", hdr.Name, hdr.Typeflag)
	}
	if name == "" {
		if hdr.Typeflag != tar.TypeDir {
			return fmt.Errorf("%q: the root must be a directory", hdr.Name)
		}
		return nil // the root's own metadata is the image's business
	}
	if keep != nil && !keep(name) {
		return nil
	}
	e := payloadEntry{path: name, typ: hdr.Typeflag, mode: p.sanitize(name, hdr)}
	switch hdr.Typeflag {
	case tar.TypeSymlink:
		if hdr.Linkname == "" || strings.ContainsRune(hdr.Linkname, 0) {
			return fmt.Errorf("%s: bad symlink target %q", name, hdr.Linkname)
		}
		e.target = hdr.Linkname
	case tar.TypeLink:
		target, err := cleanPath(hdr.Linkname, false)
		if err != nil {
			return fmt.Errorf("%s: hard link target: %w", name, err)
		}
		if e.target, err = p.linkTarget(name, target, hdr.Linkname); err != nil {
			return err
		}
		e.linkname = hdr.Linkname
	case tar.TypeReg:
		if hdr.Size < 0 || hdr.Size > f.maxFileSize {
			return fmt.Errorf("%s: size %d outside 0..%d", name, hdr.Size, f.maxFileSize)
		}
		sum, err := f.store.put(r, hdr.Size)
		if err != nil {
			return fmt.Errorf("%s: reading content: %w", name, err)
		}
		e.sum, e.size = sum, hdr.Size
	}
	p.seen[name] = len(p.entries)
	p.entries = append(p.entries, e)
	return nil
}

// linkTarget resolves a hard link to the regular file it shares content
// with, among the entries this payload kept so far. A link to an earlier
// link resolves to that link's file.
func (p *Payload) linkTarget(name, target, linkname string) (string, error) {
	i, ok := p.seen[target]
	if !ok || target == "" {
		return "", fmt.Errorf("%s: hard link to %s, which is not an earlier file in the tree of this package (hard links may only point at a regular file earlier in the same payload; %s is not yet seen, filtered out or shipped by another package)", name, linkname, target)
	}
	switch t := p.entries[i]; t.typ {
	case tar.TypeReg:
		return t.path, nil
	case tar.TypeLink:
		return t.target, nil
	default:
		return "", fmt.Errorf("%s: hard link to %s, which is a %s", name, linkname, typeName(t.typ))
	}
}

// sanitize returns the entry's normalised mode and records every change.
func (p *Payload) sanitize(name string, hdr *tar.Header) fs.FileMode {
	note := func(format string, args ...any) {
		p.fixups = append(p.fixups, Fixup{Origin: p.origin, Path: name, Change: fmt.Sprintf(format, args...)})
	}
	if hdr.Uid != 0 || hdr.Gid != 0 {
		note("owner %d:%d forced to 0:0", hdr.Uid, hdr.Gid)
	}
	for k := range hdr.PAXRecords {
		for _, prefix := range []string{"SCHILY.xattr.", "LIBARCHIVE.xattr."} {
			if attr, ok := strings.CutPrefix(k, prefix); ok {
				note("extended attribute %s dropped", attr)
			}
		}
	}
	if hdr.Typeflag == tar.TypeSymlink || hdr.Typeflag == tar.TypeLink {
		return 0o777 // symlinks have no mode; hard links take their target's
	}
	mode := modeFromUnix(hdr.Mode)
	if mode&fs.ModeSetuid != 0 {
		note("setuid bit dropped")
	}
	if mode&fs.ModeSetgid != 0 {
		note("setgid bit dropped")
	}
	if mode&fs.ModeSticky != 0 {
		note("sticky bit dropped")
	}
	if mode&0o022 != 0 {
		note("group/other write removed (mode %04o)", mode&fs.ModePerm)
	}
	return mode & 0o755
}

// AddPayload puts a payload read by ReadPayload into the tree. On error the
// tree holds part of the payload; builds stop at the first error anyway.
func (f *FS) AddPayload(p *Payload) error {
	for _, e := range p.entries {
		if err := f.addPayloadEntry(p.origin, e); err != nil {
			return fmt.Errorf("package %s: %w", p.origin, err)
		}
	}
	f.fixups = append(f.fixups, p.fixups...)
	return nil
}

func (f *FS) addPayloadEntry(origin string, e payloadEntry) error {
	if err := f.parents(e.path, origin); err != nil {
		return err
	}
	switch e.typ {
	case tar.TypeDir:
		return f.mergeNode(e.path, &node{typ: tar.TypeDir, mode: e.mode, origin: origin})
	case tar.TypeSymlink:
		return f.mergeNode(e.path, &node{typ: tar.TypeSymlink, mode: 0o777, target: e.target, origin: origin})
	case tar.TypeLink:
		return f.addHardLink(origin, e.path, e.target, e.linkname)
	}
	return f.mergeNode(e.path, &node{typ: tar.TypeReg, mode: e.mode, origin: origin, ino: &inode{sum: e.sum, size: e.size, links: 1}})
}
