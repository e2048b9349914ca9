package bench

import (
	"bytes"
	"context"
	"io"
	"net"
	"os/exec"
	"testing"
	"time"

	"github.com/pulse-sidecar/pulse-sidecar/internal/testenv"
)

func TestMPAHeader(t *testing.T) {
	for _, c := range []struct {
		h            []byte
		length, rate int
		ok           bool
	}{
		{[]byte{0xFF, 0xFD, 0x80, 0xC4}, 417, 44100, true}, // MPEG-1 Layer II 128k 44.1k, no CRC
		{[]byte{0xFF, 0xFD, 0x82, 0xC4}, 418, 44100, true}, // padded
		{[]byte{0xFF, 0xFD, 0x84, 0xC4}, 384, 48000, true},
		{[]byte{0xFF, 0xF5, 0x80, 0xC4}, 0, 0, true},  // MPEG-2 LSF, 64k at 22.05k: length set below
		{[]byte{0xFF, 0xFB, 0x90, 0x64}, 0, 0, false}, // Layer III
		{[]byte{0xFF, 0xFD, 0xF0, 0xC4}, 0, 0, false}, // bad bitrate
		{[]byte{0x47, 0x40, 0x00, 0x10}, 0, 0, false},
	} {
		n, r, ok := mpaHeader(c.h)
		if c.length == 0 && c.ok {
			c.length, c.rate = 144*64000/22050, 22050
		}
		if ok != c.ok || ok && (n != c.length || r != c.rate) {
			t.Errorf("mpaHeader(% x) = %d, %d, %v; want %d, %d, %v", c.h, n, r, ok, c.length, c.rate, c.ok)
		}
	}
}

// encodeTS makes the speaker's stream from a second of silence and a tone
// with real ffmpeg, muxed as extra asks.
func encodeTS(t *testing.T, ffmpeg string, extra ...string) []byte {
	t.Helper()
	pcm := make([]byte, 2*toneRate) // 1 s of silence, then the burst
	pcm = append(pcm, burstPCM(1000, 300*time.Millisecond)...)
	pcm = append(pcm, make([]byte, toneRate)...)
	args := []string{"-nostdin", "-hide_banner", "-loglevel", "error",
		"-f", "s16le", "-ar", "44100", "-ac", "1", "-i", "pipe:0",
		"-f", "mpegts", "-codec:a", "mp2", "-b:a", "128k", "-ac", "1", "-ar", "44100"}
	cmd := exec.Command(ffmpeg, append(append(args, extra...), "pipe:1")...)
	cmd.Stdin = bytes.NewReader(pcm)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("encoding: %v\n%s", err, errb.String())
	}
	return out.Bytes()
}

// The onset is mapped back to the frame that carried it: with each packet
// arriving a millisecond after the previous one, the onset's time is the
// arrival of the packet completing frame (onset sample)/1152, whatever the
// muxer's PES packing and however the stream was cut into messages.
func TestTSOnsetsMapToTheCarryingFrame(t *testing.T) {
	ffmpeg := testenv.Tool(t, "ffmpeg")
	base := time.Unix(1_700_000_000, 0)
	for _, mux := range [][]string{nil, {"-pes_payload_size", "0"}} {
		ts := encodeTS(t, ffmpeg, mux...)
		var chunks []chunk
		// Messages of 1 to 7 packets, as a relay may send them.
		for i, k := 0, 0; i < len(ts); k++ {
			n := min(len(ts)-i, (1+k%7)*PacketSize)
			chunks = append(chunks, chunk{base.Add(time.Duration(i/PacketSize+n/PacketSize) * time.Millisecond), ts[i : i+n]})
			i += n
		}
		so, err := tsOnsets(context.Background(), ffmpeg, chunks)
		if err != nil {
			t.Fatalf("%q: %v", mux, err)
		}
		if len(so.at) != 1 || so.ccErrors != 0 || so.resyncs != 0 {
			t.Fatalf("%q: %d onsets, %d CC errors, %d resyncs; want 1, 0, 0", mux, len(so.at), so.ccErrors, so.resyncs)
		}
		// Where the last byte of each frame is in the stream, by packet.
		fr := NewFrameReader()
		for p := 0; p < len(ts); p += PacketSize {
			fr.Feed(ts[p:p+PacketSize], base.Add(time.Duration(p/PacketSize+1)*time.Millisecond))
		}
		// The tone starts at sample 44100; a Layer II codec delays it by
		// 481 samples (its filter banks), so the decoded onset is in frame
		// 38 (samples 43776-44927).
		want := fr.Frames()[38].Arrived
		// A message arrives with its last packet.
		var at time.Time
		for _, c := range chunks {
			if !c.at.Before(want) {
				at = c.at
				break
			}
		}
		if !so.at[0].Equal(at) {
			t.Errorf("%q: onset at %v, want the message completing frame 38 at %v", mux, so.at[0].Sub(base), at.Sub(base))
		}
		if fill := so.fill[0]; fill <= 0 || fill > 26200*time.Microsecond {
			t.Errorf("%q: frame fill %v, want within one frame", mux, fill)
		}
	}
}

func TestPCMOnsets(t *testing.T) {
	base := time.Unix(1_700_000_000, 0)
	pcm := append(make([]byte, 2*toneRate/2), burstPCM(1000, 100*time.Millisecond)...)
	var chunks []chunk
	for i := 0; i < len(pcm); i += 1000 {
		chunks = append(chunks, chunk{base.Add(time.Duration(i) * time.Microsecond), pcm[i:min(i+1000, len(pcm))]})
	}
	at := pcmOnsets(chunks)
	// The tone's first loud sample is a few samples in (it starts at phase
	// 0): in the chunk starting at byte 44000.
	if len(at) != 1 || !at[0].Equal(base.Add(44000*time.Microsecond)) {
		t.Errorf("onsets %v, want one in the chunk at 44 ms", at)
	}
}

func TestDelayProxy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		for i := 0; i < 5; i++ {
			c.Write([]byte{byte(i)})
			time.Sleep(20 * time.Millisecond)
		}
	}()
	const delay = 100 * time.Millisecond
	p, err := StartDelayProxy(ln.Addr().String(), delay)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	start := time.Now()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 1)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatal(err)
	}
	// Nothing can come sooner than the delay; under a loaded machine it
	// may come later.
	if got := time.Since(start); got < delay {
		t.Errorf("first byte after %v, before the proxy's %v", got, delay)
	}
	rest, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(append(b, rest...), []byte{0, 1, 2, 3, 4}) {
		t.Errorf("through the proxy: % x, %v", append(b, rest...), err)
	}
	if u, err := p.URL("ws://example.invalid:1/x?y=1"); err != nil || u != "ws://"+p.Addr()+"/x?y=1" {
		t.Errorf("URL = %q, %v", u, err)
	}
}

func TestLatencyLines(t *testing.T) {
	out := latencyLines(`Source Output #1
	Driver: protocol-native.c
	Buffer Latency: 0 usec
	Source Latency: 5623 usec
	Properties:
		media.name = "record"
		application.name = "Lavf59.27.100"
Sink #0
	Name: speaker
	Latency: 499 usec, configured 5804 usec
`)
	want := []string{
		"Source Output #1 (record): Buffer Latency: 0 usec",
		"Source Output #1 (record): Source Latency: 5623 usec",
		"Sink #0 (speaker): Latency: 499 usec, configured 5804 usec",
	}
	if len(out) != len(want) {
		t.Fatalf("latencyLines = %q, want %q", out, want)
	}
	for i := range want {
		if out[i] != want[i] {
			t.Errorf("line %d = %q, want %q", i, out[i], want[i])
		}
	}
}

func TestFragmentMillis(t *testing.T) {
	for _, c := range []struct {
		argv []string
		want int
	}{
		{[]string{"ffmpeg", "-f", "pulse", "-fragment_size", "1024", "-i", "x"}, 12},
		{[]string{"ffmpeg", "-fragment_size", "256"}, 3},
		{[]string{"ffmpeg", "-fragment_size", "2"}, 1},
		{[]string{"ffmpeg", "-i", "x"}, 25},
		{[]string{"ffmpeg", "-fragment_size"}, 25},
	} {
		if got := fragmentMillis(c.argv); got != c.want {
			t.Errorf("fragmentMillis(%q) = %d, want %d", c.argv, got, c.want)
		}
	}
}
