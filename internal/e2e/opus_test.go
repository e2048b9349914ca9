package e2e

import (
	"bytes"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pulse-sidecar/pulse-sidecar/internal/audiotest"
	"github.com/pulse-sidecar/pulse-sidecar/internal/ogg"
)

// Case 9 (issue 13). The image's sidecar serves ?codec=opus: one Ogg page
// per message, a listener joining later gets the headers first and decodes
// from its first page; and the speaker port serves the web client.
func testSpeakerOpus(t *testing.T, e *engine, image, ffmpeg string) {
	p := newPod(t, e, image)
	p.startSidecar(t)

	resp, err := http.Get("http://" + p.speaker + "/client.js")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") {
		t.Errorf("GET /client.js on the speaker port: %d %q, want the module", resp.StatusCode, resp.Header.Get("Content-Type"))
	}

	const toneFrom, toneTo = 1.0, 5.0
	sine := tone(1000)
	prog := func(i int) float32 {
		if s := float64(i) / playRate; s >= toneFrom && s < toneTo {
			return sine(i)
		}
		return 0
	}
	// The encoder starts on the first listener, which on a loaded machine
	// took over a second: the tone begins once it sends audio, so the
	// first listener's 3 s of it do not depend on how long that took.
	first := listenOpus(t, p.speaker)
	waitMessages(t, "first Opus listener", first, 3)
	pl := startPlayer(t, p, prog, toneTo+1, false)
	waitReached(t, pl, int(2.5*playRate), 60*time.Second)
	late := listenOpus(t, p.speaker)
	waitReached(t, pl, int((toneTo+1)*playRate)-1, 60*time.Second)
	time.Sleep(2 * time.Second)

	for _, c := range []struct {
		name    string
		l       *listener
		minTone float64
	}{{"first listener", first, 3}, {"late listener", late, 1.5}} {
		_, _, err := c.l.snapshot()
		if err != nil {
			t.Fatalf("%s disconnected: %v", c.name, err)
		}
		msgs := c.l.messages()
		var s ogg.Splitter
		var kinds []ogg.Kind
		for i, m := range msgs {
			if _, err := ogg.ParsePage(m); err != nil {
				t.Fatalf("%s: message %d is not one Ogg page: %v", c.name, i, err)
			}
			_, _ = s.Write(m)
			pg, _ := s.Next()
			kinds = append(kinds, pg.Kind)
		}
		if len(kinds) < 3 || kinds[0] != ogg.KindOpusHead || kinds[1] != ogg.KindOpusTags || kinds[2] != ogg.KindAudio {
			t.Fatalf("%s: first messages %v, want OpusHead, OpusTags, audio", c.name, kinds[:min(3, len(kinds))])
		}
		samples, err := audiotest.DecodeOgg(ffmpeg, bytes.Join(msgs, nil), 48000)
		if err != nil {
			t.Fatalf("%s: decoding its pages: %v", c.name, err)
		}
		st, end, ok := audiotest.Loud(samples, 48000, loud)
		if !ok {
			t.Fatalf("%s: no tone in %.1f s decoded", c.name, float64(len(samples))/48000)
		}
		secs := float64(end-st) / 48000
		f := audiotest.DominantFrequency(samples[st+2400:max(st+2400, end-2400)], 48000)
		t.Logf("%s: %d pages, %.2f s of tone at %.1f Hz", c.name, len(msgs), secs, f)
		if math.Abs(f-1000) > 10 || secs < c.minTone {
			t.Errorf("%s: %.2f s of tone at %.1f Hz, want at least %.1f s at 1000 Hz", c.name, secs, f, c.minTone)
		}
	}
}

func listenOpus(t *testing.T, addr string) *listener {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	start := time.Now()
	conn, resp, err := d.Dial("ws://"+addr+"/?codec=opus", nil)
	if err != nil {
		t.Fatalf("speaker websocket %s ?codec=opus: %v", addr, err)
	}
	resp.Body.Close()
	l := &listener{conn: conn, connected: start, done: make(chan struct{})}
	go l.read()
	t.Cleanup(l.close)
	return l
}
