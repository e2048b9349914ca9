package build

import (
	"path/filepath"
	"testing"

	"github.com/pulse-sidecar/pulse-sidecar/internal/debian"
)

func realLock(t *testing.T) *debian.Lock {
	t.Helper()
	l, err := debian.ReadLock(filepath.Join("..", "..", "image", "debian.lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func layerKeys(plan []packageLayer) map[string]string {
	out := map[string]string{}
	for _, l := range plan {
		for _, p := range l.Packages {
			out[p] = l.Key
		}
	}
	return out
}

// TestLayerPlanOfTheLock: every locked package in exactly one layer, the
// image within ~30 layers, and the binaries of one source together.
func TestLayerPlanOfTheLock(t *testing.T) {
	lock := realLock(t)
	for _, arch := range lock.Architectures {
		pkgs := lock.PackagesFor(arch)
		plan := planLayers(pkgs)
		if n := len(plan) + 2; n > 30 {
			t.Errorf("%s: %d layers", arch, n)
		}
		keys := layerKeys(plan)
		n := 0
		for _, l := range plan {
			n += len(l.Packages)
		}
		if n != len(pkgs) || len(keys) != len(pkgs) {
			t.Errorf("%s: %d packages in layers (%d distinct), lock has %d", arch, n, len(keys), len(pkgs))
		}
		bySource := map[string]string{}
		for _, p := range pkgs {
			if k, ok := bySource[sourceOf(p)]; ok && k != keys[p.Name] {
				t.Errorf("%s: source %s split over layers %s and %s", arch, sourceOf(p), k, keys[p.Name])
			}
			bySource[sourceOf(p)] = keys[p.Name]
		}
	}
}

// TestLayerPlanIsStable: taking any one package out of the lock (or, read
// the other way, adding it) moves no package of another source to another
// layer. The plan is computed from the lock alone, so this is what keeps
// an unrelated update from changing a layer.
func TestLayerPlanIsStable(t *testing.T) {
	lock := realLock(t)
	pkgs := lock.PackagesFor(lock.Architectures[0])
	base := layerKeys(planLayers(pkgs))
	for i, gone := range pkgs {
		rest := append(append([]debian.LockedPackage(nil), pkgs[:i]...), pkgs[i+1:]...)
		for name, key := range layerKeys(planLayers(rest)) {
			var p debian.LockedPackage
			for _, q := range pkgs {
				if q.Name == name {
					p = q
				}
			}
			if sourceOf(p) != sourceOf(gone) && base[name] != key {
				t.Errorf("without %s, %s moves from %s to %s", gone.Name, name, base[name], key)
			}
		}
	}
}

// TestLayerPlanVersionBump: a new version of one package (another size,
// another digest) keeps every package in its layer unless the size moves
// its source across AloneBytes.
func TestLayerPlanVersionBump(t *testing.T) {
	lock := realLock(t)
	pkgs := lock.PackagesFor(lock.Architectures[0])
	base := layerKeys(planLayers(pkgs))
	for _, name := range []string{"libssl3", "libx265-199", "pulseaudio"} {
		bumped := append([]debian.LockedPackage(nil), pkgs...)
		for i := range bumped {
			if bumped[i].Name == name {
				bumped[i].Version += "+deb12u9"
				bumped[i].Size += 4096
				bumped[i].SHA256 = "00" + bumped[i].SHA256[2:]
			}
		}
		for n, key := range layerKeys(planLayers(bumped)) {
			if base[n] != key {
				t.Errorf("updating %s moves %s from %s to %s", name, n, base[n], key)
			}
		}
	}
}
