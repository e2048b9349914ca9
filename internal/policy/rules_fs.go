package policy

import (
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/pulse-sidecar/pulse-sidecar/internal/imgdiff"
)

const (
	modeSetuid = 0o4000
	modeSetgid = 0o2000
	modeSticky = 0o1000
)

// checkWorldWritable: anything others may write is a way for another uid in
// the pod to change what runs. Sticky directories (/tmp) are the exception
// because others can then only remove their own entries. Symlink modes mean
// nothing on Linux.
func checkWorldWritable(s *subject, _ *Options) []Violation {
	var out []Violation
	for _, f := range s.scan.Files {
		if f.Type == "symlink" || f.Mode&0o002 == 0 {
			continue
		}
		if f.Type == "dir" && f.Mode&modeSticky != 0 {
			continue
		}
		out = append(out, Violation{Path: f.Path, Message: fmt.Sprintf("%s mode %04o is writable by others", f.Type, f.Mode)})
	}
	return out
}

// checkSetuid: a setuid or setgid file is a privilege change waiting for a
// caller. Setgid on directories only inherits a group, so it is allowed.
func checkSetuid(s *subject, _ *Options) []Violation {
	var out []Violation
	for _, f := range s.scan.Files {
		if f.Type == "dir" || f.Type == "symlink" || f.Mode&(modeSetuid|modeSetgid) == 0 {
			continue
		}
		out = append(out, Violation{Path: f.Path, Message: fmt.Sprintf("mode %04o sets uid or gid", f.Mode)})
	}
	return out
}

func checkDevices(s *subject, _ *Options) []Violation {
	var out []Violation
	for _, f := range s.scan.Files {
		if f.Type == "char" || f.Type == "block" {
			out = append(out, Violation{Path: f.Path, Message: fmt.Sprintf("%s device node %s", f.Type, f.Device)})
		}
	}
	return out
}

// checkUserDirs: the directories the daemon writes belong to it and nobody
// else, because the pod shares them with a desktop container.
func checkUserDirs(s *subject, o *Options) []Violation {
	if len(o.UserDirs) == 0 {
		return nil
	}
	uid, _, err := parseUser(s.config.Config.User)
	if err != nil {
		return []Violation{{Field: "config.User", Message: fmt.Sprintf("cannot check user directories: %v", err)}}
	}
	files := byPath(s.scan.Files)
	var out []Violation
	for _, d := range o.UserDirs {
		p := path.Clean("/" + d)
		f, ok := files[p]
		switch {
		case !ok:
			out = append(out, Violation{Path: p, Message: "user directory is missing"})
		case f.Type != "dir":
			out = append(out, Violation{Path: p, Message: fmt.Sprintf("user directory is a %s", f.Type)})
		default:
			if f.UID != uid {
				out = append(out, Violation{Path: p, Message: fmt.Sprintf("owned by uid %d, config user is uid %d", f.UID, uid)})
			}
			if f.Mode&0o007 != 0 {
				out = append(out, Violation{Path: p, Message: fmt.Sprintf("mode %04o grants access to others", f.Mode)})
			}
		}
	}
	return out
}

// checkSecretPaths: a secret baked into the image must at least not be
// readable by every uid. Absent is the expected case: secrets come at run time.
func checkSecretPaths(s *subject, o *Options) []Violation {
	files := byPath(s.scan.Files)
	var out []Violation
	for _, sp := range o.SecretPaths {
		p := path.Clean("/" + sp)
		if f, ok := files[p]; ok && f.Mode&0o004 != 0 {
			out = append(out, Violation{Path: p, Message: fmt.Sprintf("secret %s mode %04o is readable by others", f.Type, f.Mode)})
		}
	}
	return out
}

// checkTimestamps: one timestamp everywhere is what makes a rebuild
// byte-identical; every entry of every layer is checked, hidden ones too,
// because they are in the layer digest all the same.
func checkTimestamps(s *subject, _ *Options) []Violation {
	created := s.config.Created.Time
	var out []Violation
	for i, layer := range s.scan.Layers {
		for _, f := range layer {
			if !f.ModTime.Equal(created) {
				out = append(out, Violation{
					Path:    f.Path,
					Message: fmt.Sprintf("layer %d mtime %s differs from created %s", i, f.ModTime.Format(timeFormat), created.UTC().Format(timeFormat)),
				})
			}
		}
	}
	return out
}

const timeFormat = "2006-01-02T15:04:05.999999999Z07:00"

func byPath(fs []imgdiff.File) map[string]imgdiff.File {
	m := make(map[string]imgdiff.File, len(fs))
	for _, f := range fs {
		m[f.Path] = f
	}
	return m
}

// parseUser splits a config user "uid[:gid]" and insists on numbers: a
// name means the runtime resolves it through the image's /etc/passwd, and a
// policy cannot tell what uid that ends up as. gid is -1 when absent.
func parseUser(u string) (uid, gid int, err error) {
	if u == "" {
		return 0, 0, fmt.Errorf("config user is empty, so the container runs as root")
	}
	us, gs, hasGroup := strings.Cut(u, ":")
	uid, err = strconv.Atoi(us)
	if err != nil || uid < 0 {
		return 0, 0, fmt.Errorf("config user %q: %q is not a numeric uid", u, us)
	}
	gid = -1
	if hasGroup {
		if gid, err = strconv.Atoi(gs); err != nil || gid < 0 {
			return 0, 0, fmt.Errorf("config user %q: %q is not a numeric gid", u, gs)
		}
	}
	return uid, gid, nil
}
