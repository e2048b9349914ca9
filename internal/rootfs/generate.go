package rootfs

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

// User is one /etc/passwd line.
type User struct {
	Name     string
	UID, GID int
	Gecos    string
	Home     string
	Shell    string // "/usr/sbin/nologin" when empty
}

// Group is one /etc/group line.
type Group struct {
	Name    string
	GID     int
	Members []string
}

// AddUsers writes /etc/passwd and /etc/group (0644 root:root), sorted by
// id then name so the files do not depend on the spec's order. No
// /etc/shadow is written: nothing in the image authenticates anyone, and
// with "x" in the password field and no shadow file no password can match.
// Every user's primary group and every group member must be declared.
func AddUsers(f *FS, users []User, groups []Group) error {
	gids := map[int]string{}
	names := map[string]bool{}
	for _, g := range groups {
		if err := checkAccountName("group", g.Name); err != nil {
			return err
		}
		if names[g.Name] {
			return fmt.Errorf("group %s declared twice", g.Name)
		}
		if other, dup := gids[g.GID]; dup {
			return fmt.Errorf("groups %s and %s share gid %d", other, g.Name, g.GID)
		}
		if g.GID < 0 {
			return fmt.Errorf("group %s: negative gid %d", g.Name, g.GID)
		}
		names[g.Name], gids[g.GID] = true, g.Name
	}
	uids := map[int]string{}
	userNames := map[string]bool{}
	for _, u := range users {
		if err := checkAccountName("user", u.Name); err != nil {
			return err
		}
		if userNames[u.Name] {
			return fmt.Errorf("user %s declared twice", u.Name)
		}
		if other, dup := uids[u.UID]; dup {
			return fmt.Errorf("users %s and %s share uid %d", other, u.Name, u.UID)
		}
		if u.UID < 0 {
			return fmt.Errorf("user %s: negative uid %d", u.Name, u.UID)
		}
		if _, ok := gids[u.GID]; !ok {
			return fmt.Errorf("user %s: primary gid %d is not a declared group", u.Name, u.GID)
		}
		for _, v := range []string{u.Gecos, u.Home, u.Shell} {
			if strings.ContainsAny(v, ":\n") {
				return fmt.Errorf("user %s: field %q contains ':' or a newline", u.Name, v)
			}
		}
		if u.Home != "" && !path.IsAbs(u.Home) {
			return fmt.Errorf("user %s: home %q is not absolute", u.Name, u.Home)
		}
		userNames[u.Name], uids[u.UID] = true, u.Name
	}
	for _, g := range groups {
		for _, m := range g.Members {
			if !userNames[m] {
				return fmt.Errorf("group %s: member %s is not a declared user", g.Name, m)
			}
		}
	}

	us := append([]User(nil), users...)
	sort.Slice(us, func(i, j int) bool { return us[i].UID < us[j].UID })
	var passwd bytes.Buffer
	for _, u := range us {
		home, shell := u.Home, u.Shell
		if home == "" {
			home = "/nonexistent"
		}
		if shell == "" {
			shell = "/usr/sbin/nologin"
		}
		fmt.Fprintf(&passwd, "%s:x:%d:%d:%s:%s:%s\n", u.Name, u.UID, u.GID, u.Gecos, home, shell)
	}
	gs := append([]Group(nil), groups...)
	sort.Slice(gs, func(i, j int) bool { return gs[i].GID < gs[j].GID })
	var group bytes.Buffer
	for _, g := range gs {
		members := append([]string(nil), g.Members...)
		sort.Strings(members)
		fmt.Fprintf(&group, "%s:x:%d:%s\n", g.Name, g.GID, strings.Join(members, ","))
	}
	if err := f.AddFile("etc/passwd", 0o644, 0, 0, passwd.Bytes()); err != nil {
		return err
	}
	return f.AddFile("etc/group", 0o644, 0, 0, group.Bytes())
}

// checkAccountName applies the portable subset of names shadow-utils
// accepts, which also keeps ':' and newlines out of the files.
func checkAccountName(kind, name string) error {
	if name == "" || len(name) > 32 {
		return fmt.Errorf("%s name %q: must be 1 to 32 characters", kind, name)
	}
	for i, c := range name {
		ok := c == '_' || ('a' <= c && c <= 'z') || (i > 0 && (c == '-' || ('0' <= c && c <= '9')))
		if !ok {
			return fmt.Errorf("%s name %q: only [a-z_][a-z0-9_-]* is allowed", kind, name)
		}
	}
	return nil
}

// StatusEntry is one package as scanners should see it.
type StatusEntry struct {
	Package string // file name under status.d: the package name
	Control []byte // the .deb's control file (debian.Deb.Control)
	MD5Sums []byte // the .deb's md5sums control member; may be empty
}

// AddDpkgStatus writes the distroless package database that trivy, grype
// and syft read in place of /var/lib/dpkg/status:
// /var/lib/dpkg/status.d/<package> holds the package's control paragraph
// with "Status: install ok installed" after the Package field (what dpkg
// would record), and /var/lib/dpkg/status.d/<package>.md5sums the package's
// md5sums, restricted to files the tree still has, so a scanner's file list
// matches the image after the documentation drop. Both files carry the
// package as their Origin, so a build that splits packages into layers can
// put a package's database entry in the package's own layer: updating one
// package then changes one layer, not also a layer holding every entry.
func AddDpkgStatus(f *FS, pkgs []StatusEntry) error {
	seen := map[string]bool{}
	for _, p := range pkgs {
		if !validPackageName(p.Package) {
			return fmt.Errorf("dpkg status: bad package name %q", p.Package)
		}
		if seen[p.Package] {
			return fmt.Errorf("dpkg status: package %s listed twice", p.Package)
		}
		seen[p.Package] = true
		status, err := statusParagraph(p.Package, p.Control)
		if err != nil {
			return err
		}
		dir := "var/lib/dpkg/status.d/"
		if err := f.addOwnedFile(dir+p.Package, p.Package, status); err != nil {
			return err
		}
		if len(p.MD5Sums) == 0 {
			continue
		}
		if err := f.addOwnedFile(dir+p.Package+".md5sums", p.Package, f.presentSums(p.MD5Sums)); err != nil {
			return err
		}
	}
	return nil
}

// addOwnedFile is AddFile (0644 root:root) for a file generated on behalf
// of a package, attributed to it.
func (f *FS) addOwnedFile(p, origin string, content []byte) error {
	if err := f.AddFile(p, 0o644, 0, 0, content); err != nil {
		return err
	}
	key, _ := cleanPath(p, true) // AddFile accepted it
	f.nodes[key].origin = origin
	return nil
}

func validPackageName(n string) bool {
	if len(n) < 2 {
		return false
	}
	for i, c := range n {
		ok := ('a' <= c && c <= 'z') || ('0' <= c && c <= '9') || (i > 0 && (c == '+' || c == '-' || c == '.'))
		if !ok {
			return false
		}
	}
	return true
}

func statusParagraph(pkg string, control []byte) ([]byte, error) {
	text := strings.TrimRight(string(control), "\n")
	if text == "" {
		return nil, fmt.Errorf("dpkg status: package %s: empty control file", pkg)
	}
	if strings.Contains(text, "\n\n") {
		return nil, fmt.Errorf("dpkg status: package %s: control file has more than one paragraph", pkg)
	}
	lines := strings.Split(text, "\n")
	name, ok := strings.CutPrefix(lines[0], "Package:")
	if !ok || strings.TrimSpace(name) != pkg {
		return nil, fmt.Errorf("dpkg status: package %s: control file does not start with \"Package: %s\"", pkg, pkg)
	}
	var b bytes.Buffer
	b.WriteString(lines[0])
	b.WriteByte('\n')
	hasStatus := false
	for _, l := range lines[1:] {
		if strings.HasPrefix(strings.ToLower(l), "status:") {
			hasStatus = true
		}
	}
	if !hasStatus {
		b.WriteString("Status: install ok installed\n")
	}
	for _, l := range lines[1:] {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.Bytes(), nil
}

// presentSums keeps the md5sums lines ("<md5>  <path>") whose path is in
// the tree; malformed lines are dropped too, since scanners would choke on
// them the same way.
func (f *FS) presentSums(sums []byte) []byte {
	var out bytes.Buffer
	for _, line := range strings.Split(string(sums), "\n") {
		_, p, ok := strings.Cut(line, "  ")
		if !ok {
			continue
		}
		if key, err := cleanPath(p, true); err == nil && key != "" {
			if n, ok := f.nodes[key]; ok && n.typ == tar.TypeReg {
				out.WriteString(line)
				out.WriteByte('\n')
			}
		}
	}
	return out.Bytes()
}

// Alternative is what update-alternatives would have set up:
// Link -> /etc/alternatives/Name -> Target.
type Alternative struct {
	Link   string // "/usr/lib/x86_64-linux-gnu/libblas.so.3"
	Name   string // "libblas.so.3-x86_64-linux-gnu"
	Target string // "/usr/lib/x86_64-linux-gnu/blas/libblas.so.3"
}

// AddAlternatives creates the two symlinks of each alternative. Target must
// resolve, within the tree, to a regular file: a dangling alternative is
// exactly the failure (a library not found at run time) this exists to
// prevent. Link may replace a symlink but never a file a package ships.
func AddAlternatives(f *FS, alts []Alternative) error {
	for _, a := range alts {
		if a.Name == "" || strings.ContainsAny(a.Name, "/\x00") {
			return fmt.Errorf("alternative %q: bad name", a.Name)
		}
		if !path.IsAbs(a.Link) || !path.IsAbs(a.Target) {
			return fmt.Errorf("alternative %s: link %q and target %q must be absolute", a.Name, a.Link, a.Target)
		}
		if _, n, err := f.resolve(a.Target); err != nil {
			return fmt.Errorf("alternative %s: target %s: %w", a.Name, a.Target, err)
		} else if n.typ != tar.TypeReg {
			return fmt.Errorf("alternative %s: target %s is a %s, not a file", a.Name, a.Target, typeName(n.typ))
		}
		if e, ok := f.Lookup(a.Link); ok && e.Type != tar.TypeSymlink {
			return fmt.Errorf("alternative %s: %s is a %s from %s", a.Name, a.Link, typeName(e.Type), originName(e.Origin))
		}
		alt := "/etc/alternatives/" + a.Name
		if err := f.AddSymlink(alt, a.Target); err != nil {
			return fmt.Errorf("alternative %s: %w", a.Name, err)
		}
		if err := f.AddSymlink(a.Link, alt); err != nil {
			return fmt.Errorf("alternative %s: %w", a.Name, err)
		}
	}
	return nil
}

// resolve follows symlinks in the tree the way the kernel would inside the
// image's root, and returns the final path and node.
func (f *FS) resolve(p string) (string, *node, error) {
	const maxLinks = 40 // the kernel's limit
	links := 0
	pending := strings.Split(strings.Trim(p, "/"), "/")
	cur := ""
	for len(pending) > 0 {
		elem := pending[0]
		pending = pending[1:]
		switch elem {
		case "", ".":
			continue
		case "..":
			cur = path.Dir(cur)
			if cur == "." {
				cur = ""
			}
			continue
		}
		next := path.Join(cur, elem)
		n, ok := f.nodes[next]
		if !ok {
			return "", nil, fmt.Errorf("%s does not exist in the tree", "/"+next)
		}
		if n.typ != tar.TypeSymlink {
			if len(pending) > 0 && n.typ != tar.TypeDir {
				return "", nil, fmt.Errorf("%s is not a directory", "/"+next)
			}
			cur = next
			continue
		}
		if links++; links > maxLinks {
			return "", nil, fmt.Errorf("too many levels of symlinks at %s", "/"+next)
		}
		if strings.HasPrefix(n.target, "/") {
			cur = ""
		}
		pending = append(strings.Split(strings.Trim(n.target, "/"), "/"), pending...)
	}
	n, ok := f.nodes[cur]
	if !ok {
		return "", nil, fmt.Errorf("%s resolves to the root directory", p)
	}
	return cur, n, nil
}

// CheckModes enforces the image's ownership rule on the finished tree:
// every entry root-owned, nothing writable by group or others, no setuid or
// setgid file, except the paths listed in exempt (the spec's own
// directories such as /tmp 1777 or /container 0750 102:104).
func CheckModes(f *FS, exempt ...string) error {
	skip := map[string]bool{}
	for _, p := range exempt {
		key, err := cleanPath(p, true)
		if err != nil {
			return err
		}
		skip[key] = true
	}
	var bad []string
	_ = f.Walk(func(e Entry) error {
		if skip[e.Path] || e.Type == tar.TypeSymlink {
			return nil
		}
		var why []string
		if e.Uid != 0 || e.Gid != 0 {
			why = append(why, "owner "+strconv.Itoa(e.Uid)+":"+strconv.Itoa(e.Gid))
		}
		if e.Mode&0o022 != 0 {
			why = append(why, fmt.Sprintf("mode %04o writable by group/others", unixFromMode(e.Mode)))
		}
		if e.Mode&(fs.ModeSetuid|fs.ModeSetgid) != 0 {
			why = append(why, "set-id bit")
		}
		if len(why) > 0 {
			bad = append(bad, "/"+e.Path+": "+strings.Join(why, ", "))
		}
		return nil
	})
	if len(bad) > 0 {
		return fmt.Errorf("%d entries break the ownership rule:\n  %s", len(bad), strings.Join(bad, "\n  "))
	}
	return nil
}
