package debian

import (
	"strings"
	"testing"
)

func validLock() *Lock {
	return &Lock{
		Version:       LockVersion,
		Architectures: []string{"amd64"},
		Suites:        []LockSuite{{Archive: "debian", Suite: "bookworm"}},
		Packages: []LockedPackage{{
			Name: "libc6", Version: "2.36-9", Architecture: "amd64", ForArch: "amd64",
			Archive: "debian", Suite: "bookworm", Filename: "pool/main/g/glibc/libc6_2.36-9_amd64.deb",
			Size: 1, SHA256: strings.Repeat("0123456789abcdef", 4),
		}},
	}
}

// TestLockValidateSHA256: a digest is later joined into cache and --debs
// paths, so only lowercase hex passes, not merely the right length.
func TestLockValidateSHA256(t *testing.T) {
	if err := validLock().Validate(); err != nil {
		t.Fatalf("valid lock: %v", err)
	}
	for name, sum := range map[string]string{
		"short":     "abc",
		"path":      strings.Repeat("../", 21) + "x",
		"uppercase": strings.Repeat("AB", 32),
		"not hex":   strings.Repeat("g", 64),
	} {
		l := validLock()
		l.Packages[0].SHA256 = sum
		err := l.Validate()
		if err == nil || !strings.Contains(err.Error(), "libc6") || !strings.Contains(err.Error(), "64 hex digits") {
			t.Errorf("%s sha256 %q: err = %v", name, sum, err)
		}
	}
}
