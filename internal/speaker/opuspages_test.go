package speaker

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/pulse-sidecar/pulse-sidecar/internal/ogg"
	"github.com/pulse-sidecar/pulse-sidecar/internal/testenv"
)

// opusArgsOnStdin is the Opus encoder's own command line with its
// PulseAudio input swapped for s16le on stdin and, when format is given,
// its output muxer too.
func opusArgsOnStdin(t *testing.T, frame time.Duration, format ...string) []string {
	t.Helper()
	args := opusArgs(defaultOpusBitrate, frame)
	from := slices.Index(args, "pulse") - 1
	to := slices.Index(args, monitorSource) + 1
	if from < 0 || to <= from {
		t.Fatalf("no pulse input in %q", args)
	}
	args = slices.Concat(args[:from],
		[]string{"-f", "s16le", "-sample_rate", "48000", "-channels", "1", "-i", "pipe:0"}, args[to:])
	if len(format) > 0 {
		out := slices.Index(args, "rtp") - 1
		args = slices.Concat(args[:out], format, []string{"pipe:1"})
	}
	return args
}

// tone48k is n samples of a 1 kHz tone, s16le at 48 kHz.
func tone48k(n int) []byte {
	pcm := make([]byte, 0, 2*n)
	for i := range n {
		v := int16(8000 * math.Sin(2*math.Pi*1000*float64(i)/48000))
		pcm = binary.LittleEndian.AppendUint16(pcm, uint16(v))
	}
	return pcm
}

// runOnOpenStdin feeds pcm to ffmpeg with args, keeps its stdin open, and
// calls got with everything read from stdout until the count it returns
// has not grown for 3 s (a loaded machine may stall ffmpeg a while).
func runOnOpenStdin(t *testing.T, args []string, stdout *os.File, read func() int) int {
	t.Helper()
	ffmpeg := testenv.Tool(t, "ffmpeg")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ffmpeg, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stdout.Close()
	defer func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	}()
	if _, err := stdin.Write(tone48k(10 * 480)); err != nil {
		t.Fatal(err)
	}
	got, grew := 0, time.Now()
	for time.Since(grew) < 3*time.Second && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
		if n := read(); n != got {
			got, grew = n, time.Now()
		}
	}
	if got == 0 {
		t.Fatalf("ffmpeg wrote nothing\n%s", stderr.String())
	}
	return got
}

// Every packet the encoder has made is on the wire as an Ogg page while its
// input stays open. ffmpeg's Ogg muxer, which the encoder used to write
// through, closes a page only when the next packet arrives: one frame
// (10 ms) of latency on every page. The reference is ffmpeg's own count of
// the packets it encoded from the same input (framecrc writes a line per
// packet at once).
func TestOpusPacketsLeaveAtOnce(t *testing.T) {
	const frame = 10 * time.Millisecond
	pw, crc := collect(t)
	encoded := runOnOpenStdin(t, opusArgsOnStdin(t, frame, "-f", "framecrc"), pw, func() int {
		n := 0
		for _, l := range strings.Split(string(crc()), "\n") {
			if l != "" && !strings.HasPrefix(l, "#") {
				n++
			}
		}
		return n
	})

	in, out, err := opusSocket()
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	var (
		pager opusPager
		mu    sync.Mutex
		audio int
		pages []ogg.Page
	)
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := in.Read(buf)
			if err != nil {
				return
			}
			ps, err := pager.push(buf[:n])
			if err != nil {
				t.Errorf("datagram: %v", err)
			}
			mu.Lock()
			pages = append(pages, ps...)
			mu.Unlock()
		}
	}()
	runOnOpenStdin(t, opusArgsOnStdin(t, frame), out, func() int {
		mu.Lock()
		defer mu.Unlock()
		audio = 0
		for _, p := range pages {
			if p.Kind == ogg.KindAudio {
				audio++
			}
		}
		return audio
	})
	if audio < encoded {
		t.Errorf("%d audio pages out while %d packets are encoded and the input stays open: the muxer holds packets back", audio, encoded)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(pages) < 3 || pages[0].Kind != ogg.KindOpusHead || pages[1].Kind != ogg.KindOpusTags {
		t.Fatalf("stream does not start with OpusHead, OpusTags: %d pages", len(pages))
	}
}

// The relay writes OpusHead itself, so its pre-skip must be what libopus
// really delays by for the encoder's settings: ffmpeg's Ogg muxer asks
// libopus and writes that, for every frame duration offered.
func TestOpusPreSkipIsFFmpegs(t *testing.T) {
	for _, frame := range OpusFrames {
		pw, raw := collect(t)
		runOnOpenStdin(t, opusArgsOnStdin(t, frame, "-f", "ogg"), pw, func() int { return len(raw()) })
		p, err := ogg.NewReader(bytes.NewReader(raw())).Next()
		if err != nil || p.Kind != ogg.KindOpusHead {
			t.Fatalf("%v: no OpusHead from ffmpeg's Ogg muxer: %v", frame, err)
		}
		h, err := ogg.ParseOpusHead(p.Body())
		if err != nil {
			t.Fatal(err)
		}
		if h.PreSkip != opusPreSkip {
			t.Errorf("%v frames: ffmpeg's pre-skip is %d, the relay writes %d", frame, h.PreSkip, opusPreSkip)
		}
	}
}

func rtpPacket(t *testing.T, ssrc uint32, seq uint16, pt uint8, payload []byte) []byte {
	t.Helper()
	b, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq, SSRC: ssrc}, Payload: payload}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// One chained stream per encoder run, told apart by SSRC; RTCP goes
// nowhere; granules count samples.
func TestOpusPager(t *testing.T) {
	var p opusPager
	pkt := []byte{0xf8, 1, 2, 3} // CELT FB 20 ms, one frame: 960 samples
	push := func(msg []byte) []ogg.Page {
		t.Helper()
		pages, err := p.push(msg)
		if err != nil {
			t.Fatal(err)
		}
		return pages
	}
	rtcp := []byte{0x80, 200, 0, 6, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	if got := push(rtcp); len(got) != 0 {
		t.Fatalf("an RTCP report made %d pages", len(got))
	}
	first := push(rtpPacket(t, 11, 1, opusPayloadType, pkt))
	if len(first) != 3 || first[0].Kind != ogg.KindOpusHead || first[1].Kind != ogg.KindOpusTags || first[2].Kind != ogg.KindAudio {
		t.Fatalf("first packet made %d pages, want OpusHead, OpusTags, audio", len(first))
	}
	h, err := ogg.ParseOpusHead(first[0].Body())
	if err != nil || h.PreSkip != opusPreSkip || h.Channels != 1 || h.InputRate != opusRate {
		t.Fatalf("OpusHead %+v, %v", h, err)
	}
	next := push(rtpPacket(t, 11, 2, opusPayloadType, pkt))
	if len(next) != 1 || next[0].Granule != 1920 || next[0].Sequence != 3 || next[0].Serial != first[0].Serial {
		t.Fatalf("second packet: %+v", next)
	}
	restart := push(rtpPacket(t, 22, 9, opusPayloadType, pkt))
	if len(restart) != 3 || restart[0].Kind != ogg.KindOpusHead || restart[0].Serial == first[0].Serial || restart[2].Granule != 960 {
		t.Fatalf("a new SSRC should start a chained stream with a new serial: %d pages", len(restart))
	}
	if _, err := p.push(rtpPacket(t, 22, 10, 96, pkt)); err == nil {
		t.Fatal("a packet of another payload type was taken")
	}
	if _, err := p.push([]byte("SDP:\nv=0")); err == nil {
		t.Fatal("a datagram that is not RTP was taken")
	}
}
