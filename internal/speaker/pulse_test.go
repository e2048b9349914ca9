package speaker

import (
	"bytes"
	"math"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pulse-sidecar/pulse-sidecar/internal/audiotest"
	"github.com/pulse-sidecar/pulse-sidecar/internal/testenv"
)

// startPulse runs a throwaway PulseAudio with a null sink "speaker" and
// returns its server address.
func startPulse(t *testing.T) string {
	t.Helper()
	return testenv.PulseAudio(t,
		"load-module module-null-sink sink_name=speaker rate=44100 channels=1 format=s16le",
		"set-default-sink speaker",
	).Server
}

// recording collects what one websocket listener receives, with the time
// each message arrived.
type recording struct {
	mu      sync.Mutex
	data    []byte
	arrived []arrival
	err     error
	done    chan struct{}
}

type arrival struct {
	end int // offset just past the message
	at  time.Time
}

func record(conn *websocket.Conn) *recording {
	rec := &recording{done: make(chan struct{})}
	go func() {
		defer close(rec.done)
		for {
			_, msg, err := conn.ReadMessage()
			now := time.Now()
			rec.mu.Lock()
			if err != nil {
				rec.err = err
				rec.mu.Unlock()
				return
			}
			rec.data = append(rec.data, msg...)
			rec.arrived = append(rec.arrived, arrival{len(rec.data), now})
			rec.mu.Unlock()
		}
	}()
	return rec
}

func (r *recording) size() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.data)
}

// since returns the bytes received after offset from.
func (r *recording) since(from int) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.data[from:])
}

// arrivalOf returns when the byte at offset off arrived.
func (r *recording) arrivalOf(off int) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, a := range r.arrived {
		if a.end > off {
			return a.at
		}
	}
	return time.Time{}
}

// playTone plays a 1 kHz tone into the speaker sink and returns when paplay
// was started.
func playTone(t *testing.T, server string, seconds float64) time.Time {
	t.Helper()
	paplay := testenv.Tool(t, "paplay")
	wav := filepath.Join(t.TempDir(), "tone.wav")
	if err := audiotest.WriteWAV(wav, audiotest.Sine(1000, 44100, 0.5, int(seconds*44100), 1), 44100); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(paplay, "--server="+server, "--device=speaker", wav)
	cmd.Env = []string{"HOME=" + t.TempDir()}
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("paplay: %v: %s", err, out)
	}
	return start
}

// checkTone decodes ts and checks it holds a 1 kHz tone. It returns the
// offset into ts at which the tone starts (estimated from its sample
// position: the stream has a constant bit rate).
func checkTone(t *testing.T, ffmpeg string, ts []byte) int {
	t.Helper()
	samples, err := audiotest.DecodeTS(ffmpeg, ts, 44100)
	if err != nil {
		t.Fatal(err)
	}
	start, end, ok := audiotest.Loud(samples, 44100, 0.1)
	if !ok {
		t.Fatalf("no tone in %.1f s of decoded audio", float64(len(samples))/44100)
	}
	// Skip the edges, where the tone fades in and out.
	steady := samples[start+4410 : max(start+4410, end-4410)]
	if len(steady) < 8192 {
		t.Fatalf("tone only %d samples long", end-start)
	}
	f := audiotest.DominantFrequency(steady, 44100)
	if math.Abs(f-1000) > 10 {
		t.Fatalf("dominant frequency %.1f Hz, want 1000 Hz within 1%%", f)
	}
	t.Logf("tone at %.2f Hz, %d to %d of %d samples", f, start, end, len(samples))
	return int(float64(start) / float64(len(samples)) * float64(len(ts)))
}

// TestPulseToWebsocket runs the real chain: paplay -> PulseAudio null sink
// -> ffmpeg (started on demand by the relay) -> FIFO -> websocket listener.
func TestPulseToWebsocket(t *testing.T) {
	ffmpeg := testenv.Tool(t, "ffmpeg")
	server := startPulse(t)
	reaper := startReaper(t)
	r := startRelay(t, Config{
		FFmpeg:      ffmpeg,
		PulseServer: server,
		Reaper:      reaper,
		Linger:      time.Second,
		Grace:       2 * time.Second,
	})

	conn := dial(t, r, nil)
	rec := record(conn)
	waitFor(t, "the encoder to start", func() bool { return encoderPid(t) != 0 })
	// The monitor streams silence while nothing plays: audio flowing means
	// the encoder is up.
	waitFor(t, "the first audio", func() bool { return rec.size() >= 20*PacketSize })

	from := rec.size()
	played := playTone(t, server, 1.5)
	waitFor(t, "the tone to pass", func() bool { return rec.size() >= from+40000 }) // ~1.5 s after it ended
	ts := rec.since(from)
	off := checkTone(t, ffmpeg, ts)
	// A backlog of stale audio in front of the tone would show as seconds
	// of delay here; the pipeline itself takes a fraction of one.
	if lag := rec.arrivalOf(from + off).Sub(played); lag > 3*time.Second {
		t.Errorf("tone arrived %v after it was played: stale audio queued in front of it", lag)
	} else {
		t.Logf("tone arrived %v after paplay started", lag)
	}

	// Killed under a listener, the encoder comes back and audio resumes;
	// the listener stays connected.
	first := encoderPid(t)
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a new encoder", func() bool {
		pid := encoderPid(t)
		return pid != 0 && pid != first
	})
	second := encoderPid(t)
	// The old encoder's last bytes may still be arriving; only a steady
	// flow well after the restart is the new one's.
	restarted := rec.size()
	waitFor(t, "audio from the new encoder", func() bool { return rec.size() >= restarted+40*PacketSize })
	from = rec.size()
	playTone(t, server, 1.5)
	waitFor(t, "the second tone to pass", func() bool { return rec.size() >= from+40000 })
	checkTone(t, ffmpeg, rec.since(from))
	select {
	case <-rec.done:
		t.Fatalf("listener dropped: %v", rec.err)
	default:
	}

	// The last listener leaving stops the encoder after the linger.
	conn.Close()
	<-rec.done
	waitFor(t, "the encoder to stop", func() bool { return encoderPid(t) == 0 && !alive(second) })

}
