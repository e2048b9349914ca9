package speaker

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"os"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pulse-sidecar/pulse-sidecar/internal/testenv"
)

// The encoder writes every MP2 frame as soon as it is encoded. With the TS
// muxer's defaults a frame waited in the muxer for the next one, 26.1 ms of
// latency for nothing. The encoder's own command line runs here with only
// its PulseAudio input swapped for s16le on stdin: eight frames' worth of
// samples go in and stdin stays open, so nothing is flushed by an end of
// input. ffmpeg 5.1's raw PCM demuxer keeps one 1024-sample packet back, so
// 7 frames can be encoded from 9216 samples; all 7 must be out. The
// muxer's default held the last of them back (6 out).
func TestEncoderWritesEachFrameAtOnce(t *testing.T) {
	ffmpeg := testenv.Tool(t, "ffmpeg")
	args := ffmpegArgs()
	from := slices.Index(args, "pulse") - 1
	to := slices.Index(args, monitorSource) + 1
	if from < 0 || to <= from {
		t.Fatalf("no pulse input in %q", args)
	}
	args = slices.Concat(args[:from],
		[]string{"-f", "s16le", "-sample_rate", "44100", "-channels", "1", "-i", "pipe:0"}, args[to:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ffmpeg, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	pw, output := collect(t)
	cmd.Stdout = pw
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	defer func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	}()
	const frames = 8
	pcm := make([]byte, 0, 2*1152*frames)
	for i := 0; i < 1152*frames; i++ {
		v := int16(8000 * math.Sin(2*math.Pi*1000*float64(i)/44100))
		pcm = binary.LittleEndian.AppendUint16(pcm, uint16(v))
	}
	if _, err := stdin.Write(pcm); err != nil {
		t.Fatal(err)
	}
	// Wait for all of them, or until the output has stopped growing for
	// long enough to say nothing more comes without more input (5 s: a
	// loaded machine may stall ffmpeg for a while, its start included).
	var got int
	grew := time.Now()
	for got < frames-1 && time.Since(grew) < 5*time.Second {
		time.Sleep(50 * time.Millisecond)
		if ctx.Err() != nil {
			break
		}
		n := audioPES(output())
		if n != got {
			got, grew = n, time.Now()
		}
	}
	if got < frames-1 {
		t.Errorf("%d of the %d encodable frames written while the input stays open; the muxer holds frames back\n%s",
			got, frames-1, stderr.String())
	}
}

// collect returns a pipe's write end for a child's stdout and a function
// giving a copy of everything read from it so far.
func collect(t *testing.T) (*os.File, func() []byte) {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pr.Close() })
	var (
		mu  sync.Mutex
		out []byte
	)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := pr.Read(buf)
			mu.Lock()
			out = append(out, buf[:n]...)
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return pw, func() []byte {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(out)
	}
}

// audioPES counts the PES packets of MPEG audio (stream id 0xC0) that start
// in a TS stream.
func audioPES(ts []byte) int {
	n := 0
	for ; len(ts) >= 188; ts = ts[188:] {
		p := ts[:188]
		if p[0] != 0x47 || p[1]&0x40 == 0 || p[3]&0x10 == 0 {
			continue
		}
		payload := p[4:]
		if p[3]&0x20 != 0 {
			payload = payload[min(len(payload), 1+int(payload[0])):]
		}
		if len(payload) >= 4 && payload[0] == 0 && payload[1] == 0 && payload[2] == 1 && payload[3] == 0xC0 {
			n++
		}
	}
	return n
}
