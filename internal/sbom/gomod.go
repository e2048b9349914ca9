package sbom

import (
	"debug/buildinfo"
	"fmt"
	"runtime/debug"
	"sort"

	"github.com/spdx/tools-golang/spdx/v2/common"
	"github.com/spdx/tools-golang/spdx/v2/v2_3"
)

// ReadBuildInfo reads the module list a Go binary was linked from, for
// Input.Daemon.
func ReadBuildInfo(binary string) (*debug.BuildInfo, error) {
	bi, err := buildinfo.ReadFile(binary)
	if err != nil {
		return nil, fmt.Errorf("reading Go build info of %s: %w", binary, err)
	}
	return bi, nil
}

// goPackages describes the main module first, then its dependencies sorted
// by path. A replaced module is described as what was actually linked.
func goPackages(bi *debug.BuildInfo) []*v2_3.Package {
	mod := func(prefix string, m debug.Module) *v2_3.Package {
		if m.Replace != nil {
			m = *m.Replace
		}
		return &v2_3.Package{
			PackageName:             m.Path,
			PackageSPDXIdentifier:   common.ElementID(prefix + idSafe(m.Path)),
			PackageVersion:          m.Version,
			PackageDownloadLocation: noAssertion,
			PackageLicenseConcluded: noAssertion,
			PackageLicenseDeclared:  noAssertion,
			PackageCopyrightText:    noAssertion,
			PackageExternalReferences: []*v2_3.PackageExternalReference{
				purlRef(goPURL(m.Path, m.Version)),
			},
		}
	}
	daemon := mod("go-main-", bi.Main)
	daemon.PrimaryPackagePurpose = "APPLICATION"
	if daemon.PackageName == "" {
		daemon.PackageName = bi.Path
	}
	out := []*v2_3.Package{daemon}
	deps := append([]*debug.Module(nil), bi.Deps...)
	sort.Slice(deps, func(i, j int) bool { return deps[i].Path < deps[j].Path })
	for _, d := range deps {
		if d != nil {
			out = append(out, mod("go-", *d))
		}
	}
	return out
}
