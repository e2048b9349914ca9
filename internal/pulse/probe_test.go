package pulse

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pulse-sidecar/pulse-sidecar/internal/testenv"
)

func TestAuthPacketLayout(t *testing.T) {
	cookie := bytes.Repeat([]byte{0xAB}, CookieLen)
	b := authPacket(7, cookie)
	want := []byte{
		0, 0, 1, 20, // payload length: 3 u32 tags (15) + arbitrary header (5) + 256
		0xFF, 0xFF, 0xFF, 0xFF, // control channel
		0, 0, 0, 0, 0, 0, 0, 0, // offset
		0, 0, 0, 0, // flags
		'L', 0, 0, 0, 8, // AUTH
		'L', 0, 0, 0, 7, // tag
		'L', 0, 0, 0, 32, // version, no SHM bits
		'x', 0, 0, 1, 0, // cookie length
	}
	if !bytes.Equal(b[:len(want)], want) || !bytes.Equal(b[len(want):], cookie) {
		t.Fatalf("packet:\n% x", b[:len(want)])
	}
}

// fakeServer answers one AUTH with the given command and value.
func fakeServer(t *testing.T, cmd, value uint32) string {
	t.Helper()
	path := filepath.Join(testenv.ShortTempDir(t), "s")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { l.Close(); <-done })
	go func() {
		defer close(done)
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		req := make([]byte, descriptorLen+15)
		if _, err := io.ReadFull(c, req); err != nil {
			return
		}
		tag := binary.BigEndian.Uint32(req[descriptorLen+6:])
		var p []byte
		for _, v := range []uint32{cmd, tag, value} {
			p = append(p, tagU32)
			p = binary.BigEndian.AppendUint32(p, v)
		}
		hdr := make([]byte, descriptorLen)
		binary.BigEndian.PutUint32(hdr, uint32(len(p)))
		binary.BigEndian.PutUint32(hdr[4:], controlChannel)
		c.Write(append(hdr, p...))
		io.Copy(io.Discard, c)
	}()
	return path
}

func TestProbeFake(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := dial(ctx, fakeServer(t, cmdReply, 35|0x80000000), RandomCookie())
	if err != nil {
		t.Fatalf("reply with SHM flag: %v", err)
	}
	c.Close()
	sock := fakeServer(t, cmdError, errAccess)
	err = Health(ctx, sock, RandomCookie())
	if err == nil || !strings.Contains(err.Error(), "access denied") || !strings.Contains(err.Error(), sock) {
		t.Fatalf("access error: %v", err)
	}
	missing := filepath.Join(t.TempDir(), "none")
	if err := Health(ctx, missing, RandomCookie()); err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("missing socket: %v", err)
	}
}

func TestProbeHonoursCancel(t *testing.T) {
	path := filepath.Join(testenv.ShortTempDir(t), "s")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close() // accepted by the kernel backlog, never answered
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- Health(ctx, path, RandomCookie()) }()
	cancel()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("probe of a silent server succeeded")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("probe ignored cancellation")
	}
}

func BenchmarkAuthPacket(b *testing.B) {
	cookie := RandomCookie()
	b.ReportAllocs()
	for b.Loop() {
		authPacket(1, cookie)
	}
}

func TestHealthWithPulseAudio(t *testing.T) {
	full := testenv.PulseAudio(t,
		"load-module module-null-sink sink_name=speaker",
		"load-module module-null-source source_name=microphone")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// The test daemons allow anonymous clients: any cookie authenticates.
	if err := Health(ctx, strings.TrimPrefix(full.Server, "unix:"), RandomCookie()); err != nil {
		t.Fatalf("speaker and microphone present: %v", err)
	}
	noMic := testenv.PulseAudio(t, "load-module module-null-sink sink_name=speaker")
	err := Health(ctx, strings.TrimPrefix(noMic.Server, "unix:"), RandomCookie())
	if !errors.Is(err, ErrNoEntity) || !strings.Contains(err.Error(), `source "microphone"`) {
		t.Fatalf("without the microphone source: %v, want a missing source \"microphone\"", err)
	}
}

func TestRequestLayouts(t *testing.T) {
	if got, want := putString(nil, "speaker"), append([]byte{'t'}, "speaker\x00"...); !bytes.Equal(got, want) {
		t.Errorf("string: % x", got)
	}
	if got := putString(nil, ""); !bytes.Equal(got, []byte{'N'}) {
		t.Errorf("null string: % x", got)
	}
	f := frame([]byte{1, 2, 3})
	if !bytes.Equal(f[:8], []byte{0, 0, 0, 3, 0xFF, 0xFF, 0xFF, 0xFF}) || len(f) != descriptorLen+3 {
		t.Errorf("frame: % x", f)
	}
	ts := tagstruct(append(append([]byte{'t'}, "x\x00"...), 'N', 'L', 0, 0, 0, 9))
	if err := ts.skipString(); err != nil {
		t.Fatal(err)
	}
	if err := ts.skipString(); err != nil {
		t.Fatal(err)
	}
	if v, err := ts.u32(); err != nil || v != 9 {
		t.Errorf("u32 after strings: %v %v", v, err)
	}
	bad := tagstruct("tunterminated")
	if err := bad.skipString(); err == nil {
		t.Error("unterminated string accepted")
	}
}
