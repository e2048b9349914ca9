package debian

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/ProtonMail/go-crypto/openpgp"
)

// Keys are the pinned archive signing keys, each bound to the one archive
// it signs: the security archive's key cannot vouch for the main archive's
// Release and the other way round, as with apt's Signed-By.
type Keys map[string]openpgp.EntityList

// For returns the keys bound to archive.
func (k Keys) For(archive string) (openpgp.EntityList, error) {
	ring := k[archive]
	if len(ring) == 0 {
		return nil, fmt.Errorf("archive %q: no pinned key is bound to it (keys are bound by directory: <keys>/%s/*.asc)", archive, archive)
	}
	return ring, nil
}

// LoadKeys reads dir/<archive>/*.asc: the directory a key file sits in
// names the archive it may sign. A key file directly in dir is an error
// rather than a key trusted for every archive.
func LoadKeys(dir string) (Keys, error) {
	loose, err := filepath.Glob(filepath.Join(dir, "*.asc"))
	if err != nil {
		return nil, err
	}
	if len(loose) > 0 {
		return nil, fmt.Errorf("%s: bound to no archive; move it to %s/<archive>/ (the archive it signs)", loose[0], dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	keys := Keys{}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		ring, err := LoadKeyring(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		keys[e.Name()] = ring
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: no archive directories of armored public keys (<archive>/*.asc)", dir)
	}
	return keys, nil
}

// LoadKeyring reads every *.asc file of dir (armored public keys) into one
// keyring. The files are read in name order so the keyring, and any error,
// is the same on every machine. An empty directory is an error: verifying
// against no keys would refuse everything with a confusing message.
func LoadKeyring(dir string) (openpgp.EntityList, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.asc"))
	if err != nil {
		return nil, err
	}
	sort.Strings(paths)
	var ring openpgp.EntityList
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		keys, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		for _, k := range keys {
			if k.PrivateKey != nil {
				return nil, fmt.Errorf("%s: holds a private key; only public keys belong in the keyring", p)
			}
		}
		ring = append(ring, keys...)
	}
	if len(ring) == 0 {
		return nil, fmt.Errorf("%s: no armored public keys (*.asc)", dir)
	}
	return ring, nil
}
