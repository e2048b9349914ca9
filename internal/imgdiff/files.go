package imgdiff

import (
	"fmt"
	"time"
)

// diffFiles merges two path-sorted lists.
func diffFiles(a, b []File, opts Options) []FileDiff {
	var out []FileDiff
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || (i < len(a) && a[i].Path < b[j].Path):
			fa := a[i]
			out = append(out, FileDiff{Path: fa.Path, Kind: "removed", A: &fa})
			i++
		case i == len(a) || b[j].Path < a[i].Path:
			fb := b[j]
			out = append(out, FileDiff{Path: fb.Path, Kind: "added", B: &fb})
			j++
		default:
			fa, fb := a[i], b[j]
			if cs := compareFile(fa, fb, opts); len(cs) > 0 {
				out = append(out, FileDiff{Path: fa.Path, Kind: "changed", A: &fa, B: &fb, Changes: cs, Ignored: allIgnored(cs)})
			}
			i++
			j++
		}
	}
	return out
}

// compareFile lists the attributes that differ. The layer a file came from
// is not an attribute: moving a file between layers changes no container.
func compareFile(a, b File, opts Options) []Change {
	var cs []Change
	add := func(attr, va, vb string, ignored bool) {
		if va != vb {
			cs = append(cs, Change{Attr: attr, A: va, B: vb, Ignored: ignored})
		}
	}
	add("type", a.Type, b.Type, false)
	add("mode", fmt.Sprintf("%04o", a.Mode), fmt.Sprintf("%04o", b.Mode), false)
	add("uid", fmt.Sprint(a.UID), fmt.Sprint(b.UID), false)
	add("gid", fmt.Sprint(a.GID), fmt.Sprint(b.GID), false)
	add("size", fmt.Sprint(a.Size), fmt.Sprint(b.Size), false)
	add("sha256", a.SHA256, b.SHA256, false)
	add("link", a.Link, b.Link, false)
	add("device", a.Device, b.Device, false)
	add("mtime", a.ModTime.Format(time.RFC3339Nano), b.ModTime.Format(time.RFC3339Nano), opts.IgnoreTimestamps)
	return cs
}

func allIgnored(cs []Change) bool {
	for _, c := range cs {
		if !c.Ignored {
			return false
		}
	}
	return true
}
