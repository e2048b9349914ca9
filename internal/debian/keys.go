package debian

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/ProtonMail/go-crypto/openpgp"
)

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
