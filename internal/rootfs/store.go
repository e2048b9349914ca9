package rootfs

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

type digest [sha256.Size]byte

func (d digest) String() string { return hex.EncodeToString(d[:]) }

// store keeps file contents by sha256, once per distinct content: the same
// licence text or library shipped by several packages costs one copy.
// Implementations are safe for concurrent use, so payloads can be read in
// parallel.
type store interface {
	// put reads exactly size bytes from r.
	put(r io.Reader, size int64) (digest, error)
	putBytes(b []byte) (digest, error)
	open(d digest) (io.ReadCloser, error)
	// bytes returns the content without copying when it is in memory, or
	// nil when the caller must open it.
	bytes(d digest) []byte
}

type memStore struct {
	mu    sync.Mutex
	blobs map[digest][]byte
}

func newMemStore() *memStore { return &memStore{blobs: map[digest][]byte{}} }

func (m *memStore) put(r io.Reader, size int64) (digest, error) {
	buf := bytes.NewBuffer(make([]byte, 0, size))
	if err := copyExactly(buf, r, size); err != nil {
		return digest{}, err
	}
	return m.putBytes(buf.Bytes())
}

// putBytes keeps b itself (no copy): callers hand over ownership.
func (m *memStore) putBytes(b []byte) (digest, error) {
	d := digest(sha256.Sum256(b))
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.blobs[d]; !ok {
		m.blobs[d] = b
	}
	return d, nil
}

func (m *memStore) open(d digest) (io.ReadCloser, error) {
	m.mu.Lock()
	b, ok := m.blobs[d]
	m.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("content %s not stored", d)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func (m *memStore) bytes(d digest) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.blobs[d]
}

// diskStore spills contents to dir/<sha256>, for trees too big to hold in
// memory comfortably.
type diskStore struct {
	dir  string
	mu   sync.Mutex
	have map[digest]bool
}

func newDiskStore(dir string) *diskStore { return &diskStore{dir: dir, have: map[digest]bool{}} }

func (s *diskStore) put(r io.Reader, size int64) (digest, error) {
	tmp, err := os.CreateTemp(s.dir, ".blob-*")
	if err != nil {
		return digest{}, err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	h := sha256.New()
	err = copyExactly(io.MultiWriter(tmp, h), r, size)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return digest{}, err
	}
	var d digest
	h.Sum(d[:0])
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.have[d] {
		return d, nil
	}
	if err := os.Rename(tmp.Name(), filepath.Join(s.dir, d.String())); err != nil {
		return digest{}, err
	}
	s.have[d] = true
	return d, nil
}

func (s *diskStore) putBytes(b []byte) (digest, error) {
	return s.put(bytes.NewReader(b), int64(len(b)))
}

func (s *diskStore) open(d digest) (io.ReadCloser, error) {
	s.mu.Lock()
	ok := s.have[d]
	s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("content %s not stored", d)
	}
	return os.Open(filepath.Join(s.dir, d.String()))
}

func (s *diskStore) bytes(digest) []byte { return nil }

// copyExactly copies size bytes of r to w: fewer is a payload cut short.
func copyExactly(w io.Writer, r io.Reader, size int64) error {
	n, err := io.Copy(w, io.LimitReader(r, size))
	if err == nil && n < size {
		err = io.ErrUnexpectedEOF
	}
	return err
}
