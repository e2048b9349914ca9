package e2e

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pulse-sidecar/pulse-sidecar/internal/audiotest"
	"github.com/pulse-sidecar/pulse-sidecar/internal/ogg"
	"github.com/pulse-sidecar/pulse-sidecar/internal/webclienttest"
)

// Case 10 (issue 13). One sidecar, both codecs, while the desktop plays a
// steady 1 kHz tone: each codec's encoder (an ffmpeg in the container)
// starts on its first listener, is shared by later ones and stops after the
// linger once its last listener left, whatever the other codec does; a
// late Opus joiner gets the running stream's headers first, then the very
// pages the first listener got, and decodes from its first page; MP2 and
// Opus listeners hear the tone at the same time.
func testSpeakerCodecs(t *testing.T, e *engine, image, ffmpeg string) {
	const linger = 3 * time.Second
	p := newPod(t, e, image)
	p.startSidecar(t, "--encoder-linger="+linger.String())
	if enc := p.encoders(t); len(enc) != 0 {
		t.Fatalf("encoders %v run without a listener", enc)
	}
	pl := startPlayer(t, p, tone(1000), 120, false)
	waitReached(t, pl, playRate/2, 60*time.Second)

	first := listenOpus(t, p.speaker)
	opus := p.waitEncoders(t, "the first Opus listener connected", func(enc map[string][]int) bool {
		return len(enc["opus"]) == 1 && len(enc["mp2"]) == 0
	})["opus"][0]
	waitMessages(t, "first Opus listener", first, 150)

	late := listenOpus(t, p.speaker)
	waitMessages(t, "late Opus listener", late, 150)
	p.checkEncoders(t, "a second Opus listener connected", map[string]int{"opus": opus})
	checkLateJoiner(t, ffmpeg, first, late)

	// MP2 beside Opus: a second encoder, the Opus one untouched, and both
	// streams carry the tone over the same stretch of time.
	opusFrom := first.count()
	mp2 := listen(t, p.speaker)
	mp2PID := p.waitEncoders(t, "an MP2 listener joined the Opus ones", func(enc map[string][]int) bool {
		return len(enc["mp2"]) == 1 && slices.Equal(enc["opus"], []int{opus})
	})["mp2"][0]
	mp2.waitBytes(t, 1, 30*time.Second)
	_, arr, _ := mp2.snapshot()
	since := arr[0].at
	deadline := time.Now().Add(30 * time.Second)
	for time.Since(since) < 2500*time.Millisecond && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	ts, _, err := mp2.snapshot()
	if err != nil {
		t.Fatalf("MP2 listener: %v", err)
	}
	if !packetAligned(ts) {
		t.Errorf("MP2 stream beside Opus: %d bytes, not whole MPEG-TS packets", len(ts))
	}
	pcm, err := audiotest.DecodeTS(ffmpeg, ts, playRate)
	if err != nil {
		t.Fatal(err)
	}
	webclienttest.ToneAt(t, "MP2 listener beside Opus", pcm, playRate, 1000, loud, 1.5)
	// The Opus pages that arrived since the MP2 listener connected, after
	// the headers, as a joiner at that moment would have got them.
	msgs := first.messages()
	pcm, err = audiotest.DecodeOgg(ffmpeg, bytes.Join(append(msgs[:2:2], msgs[opusFrom:]...), nil), 48000)
	if err != nil {
		t.Fatal(err)
	}
	webclienttest.ToneAt(t, "Opus listener beside MP2", pcm, 48000, 1000, loud, 1.5)

	// The MP2 listener leaves: its encoder stops after the linger, the Opus
	// one keeps running for its listeners.
	p.waitStopped(t, "mp2", linger, mp2.close, map[string]int{"opus": opus})
	// The MP2 encoder starts again for a new listener; then the Opus
	// listeners leave and only the Opus encoder stops.
	mp2 = listen(t, p.speaker)
	mp2PID = p.waitEncoders(t, "a new MP2 listener", func(enc map[string][]int) bool {
		return len(enc["mp2"]) == 1 && enc["mp2"][0] != mp2PID && slices.Equal(enc["opus"], []int{opus})
	})["mp2"][0]
	p.waitStopped(t, "opus", linger, func() { first.close(); late.close() }, map[string]int{"mp2": mp2PID})
	p.waitStopped(t, "mp2", linger, mp2.close, map[string]int{})
}

// checkLateJoiner: the late listener's first two messages are the running
// stream's OpusHead and OpusTags, then come pages byte for byte as the first
// listener got them, with their original sequence numbers, without a gap;
// ffmpeg decodes them from the first one on, and as the tone was playing
// when it joined, the tone is there from the start.
func checkLateJoiner(t *testing.T, ffmpeg string, first, late *listener) {
	t.Helper()
	fm, lm := first.messages(), late.messages()
	fp, lp := parsePages(t, "first Opus listener", fm), parsePages(t, "late Opus listener", lm)
	if lp[0].Kind != ogg.KindOpusHead || lp[1].Kind != ogg.KindOpusTags || !bytes.Equal(lm[0], fm[0]) || !bytes.Equal(lm[1], fm[1]) {
		t.Fatalf("late listener's first messages are %v, %v: want the running stream's OpusHead and OpusTags", lp[0].Kind, lp[1].Kind)
	}
	i := slices.IndexFunc(fp, func(pg ogg.Page) bool { return pg.Sequence == lp[2].Sequence && pg.Serial == lp[2].Serial })
	if i < 3 {
		t.Fatalf("late listener's first audio page (sequence %d) is not a mid-stream page of the running stream", lp[2].Sequence)
	}
	var samples int
	for k, pg := range lp[2:] {
		if pg.Kind != ogg.KindAudio {
			t.Fatalf("late listener's message %d is %v, want audio", k+2, pg.Kind)
		}
		if i+k < len(fm) && !bytes.Equal(lm[k+2], fm[i+k]) {
			t.Fatalf("late listener's page %d differs from the first listener's page with the same sequence", pg.Sequence)
		}
		if k > 0 && pg.Sequence != lp[k+1].Sequence+1 {
			t.Fatalf("late listener: page %d after %d", pg.Sequence, lp[k+1].Sequence)
		}
		pkts, _ := pg.Packets()
		for _, pkt := range pkts {
			n, err := ogg.PacketSamples(pkt)
			if err != nil {
				t.Fatalf("late listener's page %d: %v", pg.Sequence, err)
			}
			samples += n
		}
	}
	head, err := ogg.ParseOpusHead(lp[0].Body())
	if err != nil {
		t.Fatal(err)
	}
	pcm, err := audiotest.DecodeOgg(ffmpeg, bytes.Join(lm, nil), 48000)
	if err != nil {
		t.Fatalf("late listener: %v", err)
	}
	// Decoding from the first page gives every page's samples but the
	// pre-skip; a decoder that needed a page to start would miss a frame.
	want := samples - int(head.PreSkip)
	t.Logf("late listener: joined at page %d (granule %d), %d pages, %d samples decoded of %d carried (pre-skip %d)",
		lp[2].Sequence, lp[2].Granule, len(lp)-2, len(pcm), samples, head.PreSkip)
	if len(pcm) < want-120 || len(pcm) > samples {
		t.Errorf("late listener: %d samples decoded from pages carrying %d: want %d (all but the pre-skip)", len(pcm), samples, want)
	}
	// A decoder starting mid-stream lacks the earlier frames' state and
	// converges within a frame or two (10-20 ms seen here).
	start, _ := webclienttest.ToneAt(t, "late listener", pcm, 48000, 1000, loud, 1)
	if start > 48000/20 {
		t.Errorf("late listener: the tone starts %.3f s into what it decoded, want from its first page", float64(start)/48000)
	}
}

func parsePages(t *testing.T, what string, msgs [][]byte) []ogg.Page {
	t.Helper()
	// The splitter follows the stream and tells headers from audio.
	var s ogg.Splitter
	var out []ogg.Page
	for i, m := range msgs {
		if _, err := ogg.ParsePage(m); err != nil {
			t.Fatalf("%s: message %d is not one Ogg page: %v", what, i, err)
		}
		_, _ = s.Write(m)
		pg, ok := s.Next()
		if !ok || len(pg.Raw) != len(m) {
			t.Fatalf("%s: message %d is not one whole Ogg page", what, i)
		}
		out = append(out, pg)
	}
	if len(out) < 3 {
		t.Fatalf("%s: %d messages, want the two headers and audio", what, len(out))
	}
	return out
}

func waitMessages(t *testing.T, what string, l *listener, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for l.count() < n {
		if _, _, err := l.snapshot(); err != nil {
			t.Fatalf("%s disconnected: %v", what, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d messages within 30 s, want %d", what, l.count(), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// encoders lists the sidecar's ffmpeg processes by the codec on their
// command line ("opus" or "mp2"), with their host PIDs.
func (p *pod) encoders(t *testing.T) map[string][]int {
	t.Helper()
	out := map[string][]int{}
	for _, pid := range p.hostPIDs(t, p.sidecar, "ffmpeg") {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue // it ended since podman top listed it
		}
		args := strings.Split(string(b), "\x00")
		switch {
		case slices.Contains(args, "libopus"):
			out["opus"] = append(out["opus"], pid)
		case slices.Contains(args, "mp2"):
			out["mp2"] = append(out["mp2"], pid)
		default:
			out["other"] = append(out["other"], pid)
		}
	}
	return out
}

// waitEncoders polls the sidecar's encoders until ok holds, for 30 s.
func (p *pod) waitEncoders(t *testing.T, after string, ok func(map[string][]int) bool) map[string][]int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		enc := p.encoders(t)
		if ok(enc) {
			return enc
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s, the sidecar's encoders are %v 30 s later", after, enc)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkEncoders: the sidecar runs exactly these encoders, by codec and PID.
func (p *pod) checkEncoders(t *testing.T, after string, want map[string]int) {
	t.Helper()
	enc := p.encoders(t)
	if !sameEncoders(enc, want) {
		t.Fatalf("%s, the sidecar's encoders are %v, want %v", after, enc, want)
	}
}

func sameEncoders(enc map[string][]int, want map[string]int) bool {
	if len(enc) != len(want) {
		return false
	}
	for codec, pid := range want {
		if !slices.Equal(enc[codec], []int{pid}) {
			return false
		}
	}
	return true
}

// waitStopped runs leave (the codec's last listener goes) and watches the
// codec's encoder: it must keep running for the linger, then stop, while the
// other encoders stay exactly as in others.
func (p *pod) waitStopped(t *testing.T, codec string, linger time.Duration, leave func(), others map[string]int) {
	t.Helper()
	before := p.encoders(t)[codec]
	if len(before) != 1 {
		t.Fatalf("%s encoders %v before its last listener left, want one", codec, before)
	}
	left := time.Now()
	leave()
	deadline := left.Add(linger + 20*time.Second)
	for {
		enc := p.encoders(t)
		// Measured after podman top returned: had the encoder stopped
		// before the linger, this is still earlier than it.
		elapsed := time.Since(left)
		running := enc[codec]
		delete(enc, codec)
		if !sameEncoders(enc, others) {
			t.Fatalf("%s after the last %s listener left, the other encoders are %v, want %v", elapsed.Round(time.Millisecond), codec, enc, others)
		}
		switch {
		case len(running) == 0 && elapsed < linger:
			t.Fatalf("the %s encoder stopped %s after its last listener left, before the %s linger", codec, elapsed.Round(time.Millisecond), linger)
		case len(running) == 0:
			t.Logf("the %s encoder stopped within %s of its last listener leaving (linger %s)", codec, elapsed.Round(time.Millisecond), linger)
			return
		case !slices.Equal(running, before):
			t.Fatalf("the %s encoder is %v after its last listener left, was %v", codec, running, before)
		case time.Now().After(deadline):
			t.Fatalf("the %s encoder still runs %s after its last listener left (linger %s)", codec, elapsed.Round(time.Millisecond), linger)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
