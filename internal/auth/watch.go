package auth

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"syscall"
	"time"
)

// pollInterval is how often Run looks at the file. A stat per second costs
// nothing measurable, and a rotated key is in use within ~1 s.
const pollInterval = time.Second

// Reload reads the file again. On any error the keys in use stay and the
// error is logged and returned: a half-written or wrong file during a
// rotation must not lock every user out.
func (v *Verifier) Reload() error {
	v.reloadMu.Lock()
	defer v.reloadMu.Unlock()
	l, err := v.load()
	if err != nil {
		v.log.Error("auth: reload failed, keeping the keys in use", "file", v.path, "err", err)
		return fmt.Errorf("auth: reload: %w", err)
	}
	old := v.keys.Swap(l)
	v.log.Info("auth: keys reloaded", "file", v.path, "keys", l.ks.desc, "changed", old.ks.sum != l.ks.sum)
	return nil
}

// fileID is what tells Run the file may have changed without reading it.
// The inode matters for Kubernetes Secret volumes: an update swaps a
// symlink to a new directory, so the path's inode changes while size and
// even mtime may not.
type fileID struct {
	ino, dev  uint64
	size      int64
	mtime     int64
	ctime     int64
	exists    bool
	statError string
}

func statID(path string) fileID {
	fi, err := os.Stat(path)
	if err != nil {
		return fileID{statError: err.Error()}
	}
	id := fileID{size: fi.Size(), mtime: fi.ModTime().UnixNano(), exists: true}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.ino, id.dev = uint64(st.Ino), uint64(st.Dev)
		id.ctime = st.Ctim.Nano()
	}
	return id
}

// Run watches the file and reloads it when its content changes, until ctx
// ends (then it returns nil). It polls: inotify misses the symlink swaps
// of Secret volumes and ConfigMaps unless one watches the directory and
// re-adds watches, and one stat per second is cheaper than getting that
// right. A changed stat leads to reading and hashing the file; only a
// different content leads to a reload, and a failed reload is retried at
// the file's next change, not every second.
func (v *Verifier) Run(ctx context.Context) error {
	// The zero fileID differs from any stat, so the first tick compares the
	// content with what New loaded: a change in between is not missed.
	var last fileID
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		id := statID(v.path)
		if id == last {
			continue
		}
		last = id
		if !id.exists {
			v.log.Warn("auth: key file unreadable, keeping the keys in use", "file", v.path, "err", id.statError)
			continue
		}
		data, err := readLimited(v.path)
		if err == nil && sha256.Sum256(data) == v.keys.Load().ks.sum {
			continue
		}
		// Reload logs its own failure; the watcher goes on either way.
		_ = v.Reload()
	}
}
