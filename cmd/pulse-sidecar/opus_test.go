package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pulse-sidecar/pulse-sidecar/internal/audiotest"
	"github.com/pulse-sidecar/pulse-sidecar/internal/ogg"
	"github.com/pulse-sidecar/pulse-sidecar/internal/testenv"
	"github.com/pulse-sidecar/pulse-sidecar/internal/webclienttest"
)

// opusListener keeps the messages of a ?codec=opus websocket, each with its
// arrival time.
type opusListener struct {
	mu   sync.Mutex
	msgs [][]byte
	at   []time.Time
	done chan struct{}
}

func listenOpus(t *testing.T, addr string) (*opusListener, *websocket.Conn) {
	t.Helper()
	conn, resp, err := websocket.DefaultDialer.Dial("ws://"+addr+"/?codec=opus&jwt_token=ignored", nil)
	if err != nil {
		t.Fatalf("dial speaker %s ?codec=opus: %v (%v)", addr, err, resp)
	}
	l := &opusListener{done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for {
			_, msg, err := conn.ReadMessage()
			if err != nil {
				return
			}
			l.mu.Lock()
			l.msgs = append(l.msgs, msg)
			l.at = append(l.at, time.Now())
			l.mu.Unlock()
		}
	}()
	t.Cleanup(func() { conn.Close(); <-l.done })
	return l, conn
}

func (l *opusListener) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.msgs)
}

// pages parses every message as exactly one Ogg page.
func (l *opusListener) pages(t *testing.T) []ogg.Page {
	t.Helper()
	l.mu.Lock()
	msgs := l.msgs
	l.mu.Unlock()
	var s ogg.Splitter
	var out []ogg.Page
	for i, m := range msgs {
		if _, err := ogg.ParsePage(m); err != nil {
			t.Fatalf("message %d is not one Ogg page: %v", i, err)
		}
		_, _ = s.Write(m)
		p, _ := s.Next()
		out = append(out, p)
	}
	return out
}

// TestDaemonOpus runs the issue 13 features on the real binary: the Opus
// speaker stream beside MP2, the codec refusal, the client page on the
// speaker port, and the page itself in Chromium playing Opus and sending
// its microphone as Opus.
func TestDaemonOpus(t *testing.T) {
	bin := buildDaemon(t)
	d := startDaemon(t, bin, []string{"--opus-frame", "10ms"}, nil)

	t.Run("client page", func(t *testing.T) {
		for _, c := range []struct{ path, ctype string }{
			{"/", "text/html; charset=utf-8"},
			{"/client.js", "text/javascript; charset=utf-8"},
			{"/worklet.js", "text/javascript; charset=utf-8"},
		} {
			resp, err := http.Get("http://" + d.speaker + c.path + "?jwt_token=x")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != c.ctype {
				t.Errorf("GET %s: %d %q, want 200 %q", c.path, resp.StatusCode, resp.Header.Get("Content-Type"), c.ctype)
			}
		}
	})

	t.Run("codec refused", func(t *testing.T) {
		_, resp, err := websocket.DefaultDialer.Dial("ws://"+d.speaker+"/?codec=foo", nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("?codec=foo: %v, %v; want 400", err, resp)
		}
	})

	t.Run("opus and mp2 listeners", func(t *testing.T) {
		ol, _ := listenOpus(t, d.speaker)
		waitFor(t, 20*time.Second, "opus pages", func() bool { return ol.count() >= 30 })
		if n := len(d.children("ffmpeg")); n != 1 {
			t.Fatalf("%d ffmpeg children for one Opus listener, want 1", n)
		}
		ml := listen(t, d.speaker)
		waitFor(t, 20*time.Second, "MP2 bytes", func() bool { return len(ml.bytes()) >= 188*20 })
		if n := len(d.children("ffmpeg")); n != 2 {
			t.Fatalf("%d ffmpeg children for an Opus and an MP2 listener, want 2", n)
		}
		from := len(ml.bytes())
		play(t, d, 1000, 1500*time.Millisecond)
		waitFor(t, 20*time.Second, "the tone to pass", func() bool { return len(ml.bytes()) >= from+40000 && ol.count() >= 300 })
		pages := ol.pages(t)
		if pages[0].Kind != ogg.KindOpusHead || pages[1].Kind != ogg.KindOpusTags {
			t.Fatalf("first messages %v, %v; want OpusHead, OpusTags", pages[0].Kind, pages[1].Kind)
		}
		var stream []byte
		for _, p := range pages {
			stream = append(stream, p.Raw...)
		}
		decoded, err := audiotest.DecodeOgg(testenv.Tool(t, "ffmpeg"), stream, 48000)
		if err != nil {
			t.Fatal(err)
		}
		webclienttest.ToneAt(t, "opus listener", decoded, 48000, 1000, 0.05, 1.2)
		toneIn(t, ml.bytes()[from:], 1000)
		ml.close()
		waitFor(t, 20*time.Second, "the MP2 encoder to stop, the Opus one to run", func() bool { return len(d.children("ffmpeg")) == 1 })
	})

	t.Run("browser", func(t *testing.T) { testOpusPage(t, d) })
}

// TestDaemonClientPageOff: --client-page=false leaves plain requests 404
// and the websocket as it was.
func TestDaemonClientPageOff(t *testing.T) {
	bin := buildDaemon(t)
	d := startDaemon(t, bin, []string{"--client-page=false"}, nil)
	for _, p := range []string{"/", "/client.js", "/worklet.js"} {
		resp, err := http.Get("http://" + d.speaker + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s with --client-page=false: %d, want 404", p, resp.StatusCode)
		}
	}
	ol, _ := listenOpus(t, d.speaker)
	waitFor(t, 20*time.Second, "opus pages", func() bool { return ol.count() >= 10 })
}

// testOpusPage loads http://127.0.0.1:PORT/ from the daemon in headless
// Chromium (a secure context): the module plays ?codec=opus through
// WebCodecs and its tapped output holds the desktop's 1 kHz tone; then the
// page's microphone, Chromium's fake capture of a 440 Hz file with audio
// processing off, goes out as Opus and is recorded from the source
// "microphone" at 440 Hz for as long as the file's tone lasts.
func testOpusPage(t *testing.T, d *daemonUnderTest) {
	// The microphone source is recorded throughout.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rec := exec.CommandContext(ctx, testenv.Tool(t, "parecord"), "--latency-msec=20", "-d", "microphone", "--raw",
		"--format=float32le", "--rate=44100", "--channels=1")
	rec.Env = d.pulseEnv()
	var recorded testenv.SyncBuffer
	rec.Stdout = &recorded
	if err := rec.Start(); err != nil {
		t.Fatal(err)
	}
	recDone := make(chan struct{})
	go func() { _ = rec.Wait(); close(recDone) }()
	defer func() {
		_ = rec.Process.Signal(syscall.SIGINT)
		<-recDone
	}()

	var (
		played  time.Time
		playErr = make(chan error, 1)
		playing bool
	)
	page := "http://" + d.speaker + "/?" + url.Values{"jwt_token": {"tok"}, "microphone": {"ws://" + d.mic + "/"}}.Encode()
	r := webclienttest.Run(t, webclienttest.Options{
		Page: page, BrowserDir: filepath.Join("..", "..", "internal", "e2e", "browser"),
		TapSeconds: 5, MicSeconds: 4.5,
	}, func(signal string) {
		if signal != "tap" {
			return
		}
		// The tone goes on while the page taps its output.
		playing = true
		played = time.Now()
		go func() {
			wavPath := filepath.Join(d.dir, "page-tone.wav")
			if err := audiotest.WriteWAV(wavPath, audiotest.Sine(1000, 44100, 0.5, 44100*3/2, 1), 44100); err != nil {
				playErr <- err
				return
			}
			c := exec.Command(testenv.Tool(t, "paplay"), "--device=speaker", wavPath)
			c.Env = d.pulseEnv()
			if out, err := c.CombinedOutput(); err != nil {
				playErr <- fmt.Errorf("%v: %s", err, out)
				return
			}
			playErr <- nil
		}()
	})
	if playing {
		if err := <-playErr; err != nil {
			t.Fatalf("paplay: %v", err)
		}
	}

	t.Run("speaker", func(t *testing.T) { webclienttest.CheckSpeaker(t, r, played) })

	t.Run("microphone", func(t *testing.T) {
		_ = rec.Process.Signal(syscall.SIGINT)
		<-recDone
		all := []byte(recorded.String())
		// Nothing but the page feeds the source: the whole recording is
		// searched.
		webclienttest.CheckMicrophone(t, r, audiotest.F32LE(all[:len(all)/4*4]), 44100)
	})
}
