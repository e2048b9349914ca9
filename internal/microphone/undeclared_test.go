package microphone

import (
	"math"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pulse-sidecar/pulse-sidecar/internal/audiotest"
)

// sendPaced sends samples as an AudioWorklet does, 128 a message, in real
// time at rate, burst messages at a time.
func sendPaced(t *testing.T, c *websocket.Conn, samples []float32, rate, burst int) {
	t.Helper()
	const quantum = 128
	start := time.Now()
	for i := 0; len(samples) > 0; i++ {
		n := min(quantum, len(samples))
		if err := c.WriteMessage(websocket.BinaryMessage, f32Bytes(samples[:n])); err != nil {
			t.Fatal(err)
		}
		samples = samples[n:]
		if (i+1)%burst == 0 {
			time.Sleep(time.Until(start.Add(time.Duration(i+1) * quantum * time.Second / time.Duration(rate))))
		}
	}
}

func decisions(r *Relay, rate, how string) float64 {
	return testutil.ToFloat64(r.um.decisions.WithLabelValues(rate, how))
}

// An undeclared stream is detected, and its first messages, held for the
// detection, reach the pipe converted at the detected rate: the whole tone
// comes out, at its pitch.
func TestRelayUndeclaredDetectsAndFlushesHeld(t *testing.T) {
	fifoPath := makeFIFO(t)
	pr := readPipe(t, fifoPath)
	r := startRelay(t, fifoPath, func(c *Config) { c.Undeclared = Undeclared{} })
	for _, rate := range []int{48000, 44100} {
		before := len(pr.bytes())
		c := dial(t, r, "jwt_token=x")
		sendPaced(t, c, audiotest.Sine(440, float64(rate), 0.5, rate, 1), rate, 1)
		c.Close()
		want := 44100 * 4
		waitFor(t, "the second of audio in the pipe", func() bool { return len(pr.bytes())-before >= want*97/100 })
		if got := testutil.ToFloat64(r.um.detected); got != float64(rate) {
			t.Errorf("detected rate %g, want %d", got, rate)
		}
		out := f32Samples(t, pr.bytes()[before:])
		if n := len(out); n < want/4*97/100 || n > want/4*103/100 {
			t.Errorf("%d Hz: %d samples in the pipe for one second, want ~44100", rate, n)
		}
		if f := audiotest.DominantFrequency(out, 44100); math.Abs(f-440) > 4.4 {
			t.Errorf("%d Hz: tone at %.1f Hz in the pipe, want 440", rate, f)
		}
		if got := testutil.ToFloat64(r.m.dropped); got != 0 {
			t.Errorf("%g bytes dropped with a reader draining the pipe", got)
		}
	}
	if decisions(r, "48000", "detected") != 1 || decisions(r, "44100", "detected") != 1 {
		t.Errorf("each sender gets its own detection: decisions 48000 %g, 44100 %g",
			decisions(r, "48000", "detected"), decisions(r, "44100", "detected"))
	}
}

// A sender that goes quiet during the hold is decided by the timer, not by
// its next message.
func TestRelayUndeclaredQuietSenderDecidedByTimer(t *testing.T) {
	fifoPath := makeFIFO(t)
	pr := readPipe(t, fifoPath)
	r := startRelay(t, fifoPath, func(c *Config) {
		c.Undeclared = Undeclared{}
		c.DetectHold = 100 * time.Millisecond
	})
	c := dial(t, r, "")
	sendPaced(t, c, audiotest.Sine(440, 48000, 0.5, 48000/5, 1), 48000, 1)
	waitFor(t, "held audio written without further messages", func() bool { return len(pr.bytes()) >= 44100*4/5*95/100 })
	if got := testutil.ToFloat64(r.um.detected); got != 48000 {
		t.Errorf("detected %g, want 48000", got)
	}

	// One message only: nothing to tell a rate from, so the fallback.
	c2 := dial(t, r, "")
	if err := c2.WriteMessage(websocket.BinaryMessage, f32Bytes(make([]float32, 128))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "fallback decision", func() bool { return decisions(r, "48000", "fallback") == 1 })
}

// Any declared parameter, passthrough and a fixed rate keep conversions
// exact and detect nothing; sanitising applies in every mode.
func TestRelayUndeclaredModes(t *testing.T) {
	msg := f32Bytes([]float32{0.25, float32(math.NaN()), 2, -0.5})
	for _, tc := range []struct {
		name  string
		mode  Undeclared
		query string
	}{
		{"declared rate", Undeclared{}, "rate=44100"},
		{"declared format", Undeclared{}, "format=f32le"},
		{"passthrough", Undeclared{Passthrough: true}, ""},
		{"fixed rate", Undeclared{Rate: 44100}, "jwt_token=x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fifoPath := makeFIFO(t)
			pr := readPipe(t, fifoPath)
			r := startRelay(t, fifoPath, func(c *Config) { c.Undeclared = tc.mode })
			c := dial(t, r, tc.query)
			if err := c.WriteMessage(websocket.BinaryMessage, msg); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "audio in the pipe", func() bool { return len(pr.bytes()) >= len(msg) })
			got := f32Samples(t, pr.bytes())
			want := []float32{0.25, 0, 1, -0.5}
			if len(got) != len(want) {
				t.Fatalf("pipe holds %v, want %v", got, want)
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("pipe holds %v, want %v (unchanged but sanitised)", got, want)
				}
			}
			if testutil.ToFloat64(r.um.detected) != 0 {
				t.Errorf("a rate was detected")
			}
		})
	}
}

func TestParseUndeclared(t *testing.T) {
	for s, want := range map[string]Undeclared{"detect": {}, "passthrough": {Passthrough: true}, "48000": {Rate: 48000}, "11025": {Rate: 11025}} {
		got, err := ParseUndeclared(s)
		if err != nil || got != want || got.String() != s {
			t.Errorf("%q: %+v %v", s, got, err)
		}
	}
	for _, s := range []string{"48001", "auto", "0", "-44100"} {
		if _, err := ParseUndeclared(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

// A sender replaced during its detection takes its held audio with it; the
// newcomer's stream is detected afresh.
func TestRelayUndeclaredReplacementDetectsAfresh(t *testing.T) {
	fifoPath := makeFIFO(t)
	pr := readPipe(t, fifoPath)
	r := startRelay(t, fifoPath, func(c *Config) { c.Undeclared = Undeclared{} })
	first := dial(t, r, "")
	// 200 ms of a 1 kHz tone at 48000 Hz: still held when replaced.
	sendPaced(t, first, audiotest.Sine(1000, 48000, 0.5, 48000/5, 1), 48000, 1)
	second := dial(t, r, "")
	if code := closeCode(t, first); code != CloseReplaced {
		t.Fatalf("first sender closed with %d, want %d", code, CloseReplaced)
	}
	sendPaced(t, second, audiotest.Sine(440, 44100, 0.5, 44100, 1), 44100, 1)
	waitFor(t, "the newcomer's second of audio", func() bool { return len(pr.bytes()) >= 44100*4*97/100 })
	if got := testutil.ToFloat64(r.um.detected); got != 44100 {
		t.Errorf("detected %g, want the newcomer's 44100", got)
	}
	out := f32Samples(t, pr.bytes())
	if len(out) > 44100*103/100 {
		t.Errorf("%d samples in the pipe, want the newcomer's 44100 only", len(out))
	}
	if f := audiotest.DominantFrequency(out, 44100); math.Abs(f-440) > 4.4 {
		t.Errorf("tone at %.1f Hz in the pipe, want the newcomer's 440", f)
	}
}

// A sender whose audio thread loses time early (nothing captured for 80 ms,
// never caught up, as a starved browser does) looks slow over the hold; the
// longer watch corrects the rate, and the rest of the stream is right.
func TestRelayUndeclaredCorrectsEarlyLoss(t *testing.T) {
	fifoPath := makeFIFO(t)
	pr := readPipe(t, fifoPath)
	r := startRelay(t, fifoPath, func(c *Config) { c.Undeclared = Undeclared{} })
	c := dial(t, r, "")
	const rate, quantum = 48000, 128
	samples := audiotest.Sine(440, rate, 0.5, 3*rate, 1)
	period := time.Second * quantum / rate
	start := time.Now()
	for i := 0; len(samples) > 0; i++ {
		due := start.Add(time.Duration(i) * period)
		if i >= 40 {
			due = due.Add(80 * time.Millisecond)
		}
		time.Sleep(time.Until(due))
		n := min(quantum, len(samples))
		if err := c.WriteMessage(websocket.BinaryMessage, f32Bytes(samples[:n])); err != nil {
			t.Fatal(err)
		}
		samples = samples[n:]
	}
	waitFor(t, "a final rate", func() bool { return testutil.ToFloat64(r.um.detected) == rate })
	t.Logf("first decision 44100: %g, 48000: %g; corrected to 48000: %g",
		decisions(r, "44100", "detected"), decisions(r, "48000", "detected"), decisions(r, "48000", "corrected"))
	waitFor(t, "audio in the pipe", func() bool { return len(pr.bytes()) >= 44100*4*2 })
	out := f32Samples(t, pr.bytes())
	tail := out[len(out)-44100/2:]
	if f := audiotest.DominantFrequency(tail, 44100); math.Abs(f-440) > 4.4 {
		t.Errorf("the stream's last half second at %.1f Hz, want 440", f)
	}
}
