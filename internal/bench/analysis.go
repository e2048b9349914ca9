package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// onsetDetector is the detector every recorded stream goes through: 2.5 ms
// RMS windows, re-armed by 100 ms of quiet.
func onsetDetector(rate int) *OnsetDetector {
	return &OnsetDetector{Window: rate / 400, Threshold: 0.05, Quiet: 40}
}

// onsetSample refines a detector window starting at w to its first sample
// above the detector's threshold, so the onset is placed to the sample and
// not to the window.
func onsetSample(d *OnsetDetector, samples []float32, w int64) int64 {
	for i := w; i < w+int64(d.Window) && i < int64(len(samples)); i++ {
		if math.Abs(float64(samples[i])) > d.Threshold {
			return i
		}
	}
	return w
}

// streamOnsets is what one recorded TS stream says about the bursts.
type streamOnsets struct {
	at                        []time.Time     // arrival of the frame holding each onset
	fill                      []time.Duration // how much of that frame followed the onset
	frames, ccErrors, resyncs int
}

// tsOnsets finds the frames of a recorded TS stream, decodes them all, and
// maps every onset in the decoded audio back to the frame that carried it.
// Layer II decoders put out exactly 1152 samples per frame, so sample n
// came from frame n/1152; the decoded total is checked against that.
func tsOnsets(ctx context.Context, ffmpeg string, chunks []chunk) (streamOnsets, error) {
	var so streamOnsets
	fr := NewFrameReader()
	for _, c := range chunks {
		if err := fr.Feed(c.b, c.at); err != nil {
			return so, err
		}
	}
	frames := fr.Frames()
	so.frames, so.ccErrors, so.resyncs = len(frames), fr.CCErrors, fr.Resyncs
	if len(frames) == 0 {
		return so, fmt.Errorf("no MP2 frame in %d messages", len(chunks))
	}
	samples, err := decodeMP2(ctx, ffmpeg, frames)
	if err != nil {
		return so, err
	}
	if len(samples) != layer2Samples*len(frames) {
		return so, fmt.Errorf("decoded %d samples from %d frames, want %d: cannot map samples to frames",
			len(samples), len(frames), layer2Samples*len(frames))
	}
	rate := fr.Rate()
	det := onsetDetector(rate)
	for _, w := range det.Feed(samples) {
		n := onsetSample(det, samples, w)
		k := n / layer2Samples
		so.at = append(so.at, frames[k].Arrived)
		left := (k+1)*layer2Samples - n
		so.fill = append(so.fill, time.Duration(left)*time.Second/time.Duration(rate))
	}
	return so, nil
}

// decodeMP2 decodes Layer II frames to mono float32 at their own rate.
func decodeMP2(ctx context.Context, ffmpeg string, frames []Frame) ([]float32, error) {
	var es bytes.Buffer
	for _, f := range frames {
		es.Write(f.Data)
	}
	cmd := exec.CommandContext(ctx, ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error",
		"-f", "mp3", "-i", "pipe:0", "-f", "f32le", "-ac", "1", "pipe:1")
	cmd.Stdin = &es
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("decoding with %s: %w: %s", ffmpeg, err, bytes.TrimSpace(stderr.Bytes()))
	}
	samples, _ := appendF32LE(nil, out.Bytes())
	return samples, nil
}

// pcmOnsets finds the onsets in a recording of s16le mono at toneRate and
// returns when the piece holding each onset's first sample was read.
func pcmOnsets(chunks []chunk) []time.Time {
	var all []byte
	var ends []int64 // sample count at the end of each chunk
	for _, c := range chunks {
		all = append(all, c.b...)
		ends = append(ends, int64(len(all)/2))
	}
	samples := make([]float32, len(all)/2)
	for i := range samples {
		samples[i] = float32(int16(binary.LittleEndian.Uint16(all[2*i:]))) / 32768
	}
	det := onsetDetector(toneRate)
	var at []time.Time
	for _, w := range det.Feed(samples) {
		n := onsetSample(det, samples, w)
		for k, e := range ends {
			if n < e {
				at = append(at, chunks[k].at)
				break
			}
		}
	}
	return at
}

// FindEncoder returns the command line and executable of the ffmpeg that
// the process pid (the relay) or one of its descendants runs.
func FindEncoder(root string, pid int) (argv []string, exe string, err error) {
	_, pids, err := TreeRSS(root, pid)
	if err != nil {
		return nil, "", err
	}
	for _, p := range pids {
		dir := filepath.Join(root, strconv.Itoa(p))
		comm, err := os.ReadFile(filepath.Join(dir, "comm"))
		if err != nil || strings.TrimSpace(string(comm)) != "ffmpeg" {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join(dir, "cmdline"))
		if err != nil {
			continue
		}
		argv = strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		if exe, err = os.Readlink(filepath.Join(dir, "exe")); err != nil {
			exe = argv[0]
		}
		return argv, exe, nil
	}
	return nil, "", fmt.Errorf("bench: no ffmpeg among process %d and its descendants (is a listener connected?)", pid)
}

// fragmentMillis is the capture fragment the encoder asks PulseAudio for
// (-fragment_size, in bytes of s16le mono at toneRate), in whole
// milliseconds, at least 1; 25 ms when it asks for none. The PCM recorder
// asks for the same, so it neither lowers the sink's block size for the
// encoder nor waits longer than the encoder for its audio.
func fragmentMillis(argv []string) int {
	for i, a := range argv[:max(len(argv)-1, 0)] {
		if a == "-fragment_size" {
			if b, err := strconv.Atoi(argv[i+1]); err == nil && b > 0 {
				return max(1, int(math.Round(float64(b)/2/toneRate*1000)))
			}
		}
	}
	return 25
}

// proc is a child whose stdout the tool reads.
type proc struct {
	cmd    *exec.Cmd
	stdout io.ReadCloser
	stderr bytes.Buffer
}

func startProc(ctx context.Context, env []string, bin string, args ...string) (*proc, error) {
	p := &proc{cmd: exec.CommandContext(ctx, bin, args...)}
	p.cmd.Env = env
	p.cmd.Stderr = &p.stderr
	var err error
	if p.stdout, err = p.cmd.StdoutPipe(); err != nil {
		return nil, fmt.Errorf("bench: %s: %w", bin, err)
	}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: starting %s: %w", bin, err)
	}
	return p, nil
}

func (p *proc) stop() {
	if p.cmd.Process != nil {
		p.cmd.Process.Kill()
	}
	p.cmd.Wait()
}

// pulseLatencies is PulseAudio's own account of the latencies of the
// speaker's streams, one line per stream (pactl list), or why there is none.
func pulseLatencies(ctx context.Context, env []string) []string {
	var out []string
	for _, kind := range []string{"sinks", "sources", "sink-inputs", "source-outputs"} {
		cmd := exec.CommandContext(ctx, "pactl", "list", kind)
		cmd.Env = env
		b, err := cmd.Output()
		if err != nil {
			return append(out, fmt.Sprintf("pactl list %s: %v", kind, err))
		}
		out = append(out, latencyLines(string(b))...)
	}
	return out
}

// latencyLines condenses pactl list output to one "header (name): latency"
// line per latency line; the name comes after the latency in pactl's
// output, so a section is printed once it ends.
func latencyLines(s string) []string {
	var out, lat []string
	var head, name string
	flush := func() {
		for _, t := range lat {
			out = append(out, fmt.Sprintf("%s (%s): %s", head, name, t))
		}
		lat = lat[:0]
	}
	for _, line := range strings.Split(s, "\n") {
		t := strings.TrimSpace(line)
		switch {
		case line != "" && line[0] != '\t' && line[0] != ' ':
			flush()
			head, name = t, ""
		case strings.HasPrefix(t, "Name: "):
			name = strings.TrimPrefix(t, "Name: ")
		case name == "" && (strings.HasPrefix(t, "application.name = ") || strings.HasPrefix(t, "media.name = ")):
			name = strings.Trim(strings.SplitN(t, " = ", 2)[1], `"`)
		case strings.Contains(t, "Latency:"):
			lat = append(lat, t)
		}
	}
	flush()
	return out
}
