package speaker

import (
	"bytes"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pulse-sidecar/pulse-sidecar/internal/audiotest"
	"github.com/pulse-sidecar/pulse-sidecar/internal/ogg"
	"github.com/pulse-sidecar/pulse-sidecar/internal/testenv"
)

// pageRecording keeps every message of an Opus listener as it came.
type pageRecording struct {
	mu   sync.Mutex
	msgs [][]byte
	at   []time.Time
	err  error
	done chan struct{}
}

func recordPages(conn *websocket.Conn) *pageRecording {
	rec := &pageRecording{done: make(chan struct{})}
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
			rec.msgs = append(rec.msgs, msg)
			rec.at = append(rec.at, now)
			rec.mu.Unlock()
		}
	}()
	return rec
}

func (r *pageRecording) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}

func (r *pageRecording) pages(t *testing.T, from int) []ogg.Page {
	t.Helper()
	r.mu.Lock()
	msgs := r.msgs[from:]
	r.mu.Unlock()
	var s ogg.Splitter
	out := make([]ogg.Page, 0, len(msgs))
	for i, m := range msgs {
		// Each message must be exactly one page: parsing it alone must
		// succeed, with nothing left over.
		if _, err := ogg.ParsePage(m); err != nil {
			t.Fatalf("message %d is not exactly one Ogg page: %v", from+i, err)
		}
		_, _ = s.Write(m)
		p, ok := s.Next()
		if !ok {
			t.Fatalf("message %d: splitter found no page", from+i)
		}
		out = append(out, p)
	}
	return out
}

func dialQuery(t *testing.T, r *Relay, query string) *websocket.Conn {
	t.Helper()
	conn, resp, err := websocket.DefaultDialer.Dial("ws://"+r.Addr().String()+"/sound?"+query, nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial ?%s: %v (HTTP %d)", query, err, status)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// encoderPidOf is the pid of the test process's running encoder child for
// codec (recognised by its command line), 0 if there is none.
func encoderPidOf(t *testing.T, codec string) int {
	t.Helper()
	want := map[string]string{CodecOpus: "libopus", CodecMP2: "mpegts"}[codec]
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(stat)
		end := strings.LastIndexByte(s, ')')
		if end < 0 {
			continue
		}
		fields := strings.Fields(s[end+1:])
		if len(fields) < 2 || fields[0] == "Z" {
			continue
		}
		if ppid, _ := strconv.Atoi(fields[1]); ppid != os.Getpid() {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if bytes.Contains(cmdline, []byte(want)) {
			return pid
		}
	}
	return 0
}

// decodeOgg decodes an Ogg Opus stream with ffmpeg to 48 kHz mono float32.
func decodeOgg(t *testing.T, ffmpeg string, data []byte) []float32 {
	t.Helper()
	cmd := exec.Command(ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "ogg", "-i", "pipe:0",
		"-f", "f32le", "-ac", "1", "-ar", "48000", "pipe:1")
	cmd.Stdin = bytes.NewReader(data)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ffmpeg decoding %d bytes of Ogg Opus: %v: %s", len(data), err, stderr.Bytes())
	}
	return audiotest.F32LE(out)
}

func joinPages(pages []ogg.Page) []byte {
	var b []byte
	for _, p := range pages {
		b = append(b, p.Raw...)
	}
	return b
}

// checkTone48k checks that samples (48 kHz) hold a 1 kHz tone and returns
// the sample where it starts.
func checkTone48k(t *testing.T, what string, samples []float32) int {
	t.Helper()
	start, end, ok := audiotest.Loud(samples, 48000, 0.1)
	if !ok {
		t.Fatalf("%s: no tone in %.2f s of decoded audio", what, float64(len(samples))/48000)
	}
	steady := samples[start+4800 : max(start+4800, end-4800)]
	if len(steady) < 8192 {
		t.Fatalf("%s: tone only %d samples long", what, end-start)
	}
	f := audiotest.DominantFrequency(steady, 48000)
	if math.Abs(f-1000) > 10 {
		t.Fatalf("%s: dominant frequency %.1f Hz, want 1000 Hz within 1%%", what, f)
	}
	t.Logf("%s: tone at %.2f Hz, samples %d to %d of %d", what, f, start, end, len(samples))
	return start
}

func checkHeaders(t *testing.T, what string, pages []ogg.Page) uint32 {
	t.Helper()
	if len(pages) < 3 {
		t.Fatalf("%s: %d pages", what, len(pages))
	}
	if pages[0].Kind != ogg.KindOpusHead || !pages[0].BOS() || pages[1].Kind != ogg.KindOpusTags || pages[2].Kind != ogg.KindAudio {
		t.Fatalf("%s: first pages are %v, %v, %v; want OpusHead, OpusTags, audio", what, pages[0].Kind, pages[1].Kind, pages[2].Kind)
	}
	if pages[1].Serial != pages[0].Serial || pages[2].Serial != pages[0].Serial {
		t.Fatalf("%s: serials %d %d %d differ", what, pages[0].Serial, pages[1].Serial, pages[2].Serial)
	}
	return pages[0].Serial
}

// TestOpusStream runs the real chain for ?codec=opus: paplay -> PulseAudio
// -> ffmpeg libopus (started on demand) -> pipe -> one Ogg page per
// message. It checks the framing, a late joiner, MP2 and Opus listeners at
// once with their encoders started and stopped independently, and the
// chained stream after an encoder restart.
func TestOpusStream(t *testing.T) {
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

	conn := dialQuery(t, r, "codec=opus&jwt_token=abc")
	rec := recordPages(conn)
	waitFor(t, "the opus encoder to start", func() bool { return encoderPidOf(t, CodecOpus) != 0 })
	if pid := encoderPidOf(t, CodecMP2); pid != 0 {
		t.Fatalf("an MP2 encoder (pid %d) runs for an Opus listener alone", pid)
	}
	waitFor(t, "the first audio pages", func() bool { return rec.len() >= 50 })
	serial := checkHeaders(t, "first listener", rec.pages(t, 0))

	// The desktop's tone, decoded by ffmpeg from the pages as received.
	played := playTone(t, server, 1.5)
	waitFor(t, "the tone to pass", func() bool { return rec.len() >= 300 })
	all := rec.pages(t, 0)
	samples := decodeOgg(t, ffmpeg, joinPages(all))
	start := checkTone48k(t, "first listener", samples)
	// The page carrying the onset: each audio page's packets cover the
	// next samples of the decoded stream, less the pre-skip.
	decodedEnd := -opusPreSkip
	for i, p := range all {
		if p.Kind != ogg.KindAudio {
			continue
		}
		pkts, _ := p.Packets()
		for _, k := range pkts {
			n, _ := ogg.PacketSamples(k)
			decodedEnd += n
		}
		if decodedEnd > start {
			rec.mu.Lock()
			at := rec.at[i]
			rec.mu.Unlock()
			t.Logf("onset at sample %d arrived in page %d, %v after paplay started", start, p.Sequence, at.Sub(played))
			break
		}
	}

	// A late joiner: the headers first (two messages), then live pages
	// from a page boundary with their original sequence numbers, and
	// ffmpeg decodes it from its first page.
	late := dialQuery(t, r, "codec=opus")
	lrec := recordPages(late)
	waitFor(t, "the late joiner's pages", func() bool { return lrec.len() >= 20 })
	lp := lrec.pages(t, 0)
	if s := checkHeaders(t, "late joiner", lp); s != serial {
		t.Fatalf("late joiner got serial %d, want the running stream's %d", s, serial)
	}
	if lp[2].Sequence < 10 {
		t.Fatalf("late joiner's first audio page has sequence %d: not mid-stream", lp[2].Sequence)
	}
	for i := 3; i < len(lp); i++ {
		if lp[i].Sequence != lp[i-1].Sequence+1 {
			t.Fatalf("late joiner: sequence %d after %d", lp[i].Sequence, lp[i-1].Sequence)
		}
	}
	playTone(t, server, 1.0)
	n := lrec.len()
	waitFor(t, "the tone at the late joiner", func() bool { return lrec.len() >= n+200 })
	checkTone48k(t, "late joiner", decodeOgg(t, ffmpeg, joinPages(lrec.pages(t, 0))))

	// An MP2 listener at the same time starts the MP2 encoder; both
	// streams flow.
	mp2 := dial(t, r, nil)
	mrec := record(mp2)
	waitFor(t, "the MP2 encoder to start", func() bool { return encoderPidOf(t, CodecMP2) != 0 })
	waitFor(t, "MP2 audio", func() bool { return mrec.size() >= 40*PacketSize })
	if b := mrec.since(0); b[0] != 0x47 {
		t.Fatalf("MP2 listener's stream starts with %#x, want a TS sync byte", b[0])
	}
	n = rec.len()
	from := mrec.size()
	playTone(t, server, 1.5)
	waitFor(t, "the tone on both streams", func() bool { return rec.len() >= n+250 && mrec.size() >= from+40000 })
	checkTone(t, ffmpeg, mrec.since(from))
	checkTone48k(t, "opus beside mp2", decodeOgg(t, ffmpeg, joinPages(rec.pages(t, 0))))

	// The MP2 listener leaving stops the MP2 encoder after the linger; the
	// Opus encoder keeps running for its listeners.
	opusPid := encoderPidOf(t, CodecOpus)
	mp2.Close()
	<-mrec.done
	waitFor(t, "the MP2 encoder to stop", func() bool { return encoderPidOf(t, CodecMP2) == 0 })
	if pid := encoderPidOf(t, CodecOpus); pid != opusPid {
		t.Fatalf("opus encoder pid %d, want %d still running", pid, opusPid)
	}

	// Killed, the Opus encoder comes back as a chained stream: a new
	// OpusHead with a new serial reaches the connected listener.
	if err := syscall.Kill(opusPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	n = rec.len()
	waitFor(t, "a new OpusHead", func() bool {
		if rec.len() <= n {
			return false
		}
		for _, p := range rec.pages(t, n) {
			if p.Kind == ogg.KindOpusHead {
				return true
			}
		}
		return false
	})
	var chained []ogg.Page
	waitFor(t, "the chained stream's audio", func() bool {
		for i, p := range rec.pages(t, n) {
			if p.Kind == ogg.KindOpusHead {
				chained = rec.pages(t, n+i)
				return len(chained) >= 20
			}
		}
		return false
	})
	if s := checkHeaders(t, "after the restart", chained); s == serial {
		t.Fatalf("restarted encoder kept serial %d: not a new chained stream", s)
	}

	// The last Opus listener leaving stops the Opus encoder.
	conn.Close()
	late.Close()
	<-rec.done
	<-lrec.done
	waitFor(t, "the opus encoder to stop", func() bool { return encoderPidOf(t, CodecOpus) == 0 })

	// A listener after the stop gets the new encoder's stream only, not
	// the stopped one's headers first.
	again := dialQuery(t, r, "codec=opus")
	arec := recordPages(again)
	waitFor(t, "pages after the restart on demand", func() bool { return arec.len() >= 20 })
	heads := 0
	for _, p := range arec.pages(t, 0) {
		if p.Kind == ogg.KindOpusHead {
			heads++
		}
	}
	if s := checkHeaders(t, "listener after a stop", arec.pages(t, 0)); heads != 1 {
		t.Fatalf("listener joining a stopped encoder got %d OpusHead pages (first serial %d), want 1", heads, s)
	}
}

func TestCodecRefusedBeforeUpgrade(t *testing.T) {
	r := startRelay(t, Config{})
	for _, q := range []string{"codec=foo", "codec=OPUS", "codec="} {
		_, resp, err := websocket.DefaultDialer.Dial(fmt.Sprintf("ws://%s/?%s", r.Addr(), q), nil)
		if q == "codec=" {
			// An empty value is the default, MP2.
			if err != nil {
				t.Errorf("?%s: %v", q, err)
			}
			continue
		}
		if err == nil || resp == nil || resp.StatusCode != http.StatusBadRequest {
			status := 0
			if resp != nil {
				status = resp.StatusCode
			}
			t.Errorf("?%s: dial got %v, HTTP %d; want 400", q, err, status)
		}
	}
	for _, q := range []string{"codec=opus", "codec=mp2", ""} {
		dialQuery(t, r, q).Close()
	}
}
