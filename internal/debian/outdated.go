package debian

import (
	"fmt"
	"sort"
)

// Update is a locked package with a newer candidate in the archive.
type Update struct {
	Name    string `json:"name"`
	ForArch string `json:"for_arch"`
	Locked  string `json:"locked"`
	// Available is the version a re-lock would pick, from Archive/Suite.
	Available string `json:"available"`
	Archive   string `json:"archive"`
	Suite     string `json:"suite"`
	// Security says the newer version comes from the security archive.
	Security bool `json:"security"`
}

// securityArchive is where Debian publishes security updates.
const securityArchive = "debian-security"

// Outdated lists every package of l for which the verified suites hold a
// newer candidate, picked as a re-lock would pick it (the highest version
// across suites), in lock order. A package that left the archive
// altogether is not an update and is not listed.
func Outdated(l *Lock, suites []VerifiedSuite) ([]Update, error) {
	var out []Update
	for _, arch := range l.Architectures {
		indexes := make([]Index, 0, len(suites))
		for _, s := range suites {
			ix, ok := s.Indexes[arch]
			if !ok {
				return nil, fmt.Errorf("suite %s: no Packages index for %s", s.Ref, arch)
			}
			indexes = append(indexes, Index{Archive: s.Ref.Archive, Suite: s.Ref.Suite, Packages: ix.Packages})
		}
		u, err := NewUniverse(arch, indexes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", arch, err)
		}
		for _, p := range l.PackagesFor(arch) {
			c, ok := u.Candidate(p.Name)
			if !ok || CompareVersions(c.Version, p.Version) <= 0 {
				continue
			}
			out = append(out, Update{
				Name: p.Name, ForArch: arch, Locked: p.Version, Available: c.Version,
				Archive: c.Archive, Suite: c.Suite, Security: c.Archive == securityArchive,
			})
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].ForArch < out[j].ForArch
	})
	return out, nil
}
