package sbom

import (
	"fmt"
	"path"
	"sort"

	"github.com/spdx/tools-golang/spdx/v2/common"
	"github.com/spdx/tools-golang/spdx/v2/v2_3"

	"github.com/pulse-sidecar/pulse-sidecar/internal/debian"
)

// debPackages describes the Debian packages sorted by name and architecture,
// and collects the LicenseRefs their copyright files defined.
func debPackages(in Input) ([]*v2_3.Package, map[string]string, error) {
	pkgs := append([]debian.LockedPackage(nil), in.Packages...)
	sort.Slice(pkgs, func(i, j int) bool {
		if pkgs[i].Name != pkgs[j].Name {
			return pkgs[i].Name < pkgs[j].Name
		}
		return pkgs[i].Architecture < pkgs[j].Architecture
	})
	refs := map[string]string{}
	seen := map[common.ElementID]bool{}
	var out []*v2_3.Package
	for _, p := range pkgs {
		id := common.ElementID("deb-" + idSafe(p.Name) + "-" + idSafe(p.Architecture))
		if seen[id] {
			return nil, nil, fmt.Errorf("sbom %s: package %s %s listed twice", in.Name, p.Name, p.Architecture)
		}
		seen[id] = true
		if len(p.SHA256) != 64 {
			return nil, nil, fmt.Errorf("sbom %s: package %s %s: sha256 %q is not 64 hex digits", in.Name, p.Name, p.Version, p.SHA256)
		}
		lic := parseCopyright(p.Name, in.Copyright[p.Name])
		for ref, text := range lic.Refs {
			// Sorted iteration makes the first package to define a
			// ref win, the same way on every run.
			if _, ok := refs[ref]; !ok {
				refs[ref] = text
			}
		}
		sp := &v2_3.Package{
			PackageName:             p.Name,
			PackageSPDXIdentifier:   id,
			PackageVersion:          p.Version,
			PackageFileName:         path.Base(p.Filename),
			PackageDownloadLocation: noAssertion,
			PackageChecksums:        []common.Checksum{{Algorithm: common.SHA256, Value: p.SHA256}},
			PackageLicenseConcluded: noAssertion,
			PackageLicenseDeclared:  lic.Expression,
			PackageCopyrightText:    noAssertion,
			PackageExternalReferences: []*v2_3.PackageExternalReference{
				purlRef(debPURL(p.Name, p.Version, p.Architecture, in.Distro)),
			},
		}
		if p.Source != "" {
			v := p.SourceVersion
			if v == "" {
				v = p.Version
			}
			sp.PackageSourceInfo = "built from Debian source package " + p.Source + " " + v
		}
		out = append(out, sp)
	}
	return out, refs, nil
}
