package sbom

import (
	"strings"

	"github.com/package-url/packageurl-go"
)

// debPURL is the package URL scanners match Debian packages by.
func debPURL(name, version, arch, distro string) string {
	return packageurl.NewPackageURL(packageurl.TypeDebian, "debian", name, version,
		packageurl.Qualifiers{{Key: "arch", Value: arch}, {Key: "distro", Value: distro}}, "").ToString()
}

// goPURL names a Go module: the last path element is the name, the rest
// the namespace. The version is omitted when the build does not know it
// ("(devel)").
func goPURL(path, version string) string {
	namespace, name := "", path
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		namespace, name = path[:i], path[i+1:]
	}
	if version == "(devel)" {
		version = ""
	}
	return packageurl.NewPackageURL(packageurl.TypeGolang, namespace, name, version, nil, "").ToString()
}

// ociPURL names the image itself by digest.
func ociPURL(name, digest string) string {
	return packageurl.NewPackageURL(packageurl.TypeOCI, "", name, digest, nil, "").ToString()
}
