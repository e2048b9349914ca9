package sbom

import (
	"strings"
)

// debPURL is the package URL scanners match Debian packages by.
func debPURL(name, version, arch, distro string) string {
	return "pkg:deb/debian/" + purlEscape(name) + "@" + purlEscape(version) +
		"?arch=" + purlEscape(arch) + "&distro=" + purlEscape(distro)
}

// goPURL names a Go module; a module path's slashes are the purl namespace
// separators, so they stay. The version is omitted when the build does not
// know it ("(devel)").
func goPURL(path, version string) string {
	segs := strings.Split(path, "/")
	for i, s := range segs {
		segs[i] = purlEscape(s)
	}
	p := "pkg:golang/" + strings.Join(segs, "/")
	if version != "" && version != "(devel)" {
		p += "@" + purlEscape(version)
	}
	return p
}

// ociPURL names the image itself by digest.
func ociPURL(name, digest string) string {
	return "pkg:oci/" + purlEscape(name) + "@" + purlEscape(digest)
}

// purlEscape percent-encodes everything but the unreserved characters, so
// a Debian epoch's ':' and a '+' in "+deb12u1" cannot be misparsed.
func purlEscape(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '.', c == '_', c == '~':
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}
