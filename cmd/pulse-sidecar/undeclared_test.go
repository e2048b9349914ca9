package main

import (
	"context"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pulse-sidecar/pulse-sidecar/internal/audiotest"
)

// TestDaemonUndeclaredMicrophone sends what abcdesktop's client sends (float32
// mono in 128-sample messages, no query parameters but the token) at the
// usual device rates and arrival patterns into the real daemon, and records
// PulseAudio's microphone source: the tone keeps its pitch and its length,
// from the first message on, although the relay had to find the rate.
func TestDaemonUndeclaredMicrophone(t *testing.T) {
	if testing.Short() {
		t.Skip("real-time test")
	}
	d := startDaemon(t, buildDaemon(t), nil, nil)
	const quantum = 128
	for _, tc := range []struct {
		name string
		rate int
		// due is when message i (from 0) leaves, after the start.
		due func(i int, rng *rand.Rand) time.Duration
	}{
		{"48000 paced", 48000, paced(48000, 1, 0)},
		{"44100 paced", 44100, paced(44100, 1, 0)},
		// Each message 0-10 ms late, as over a busy network path.
		{"48000 jittered", 48000, paced(48000, 1, 10*time.Millisecond)},
		// A busy main thread: 8 messages at once every ~21 ms.
		{"48000 bursty", 48000, paced(48000, 8, 0)},
		{"44100 bursty and jittered", 44100, paced(44100, 8, 5*time.Millisecond)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(tc.rate), 1))
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			stopRecording := d.recordMicrophone(ctx, t)
			droppedBefore := d.metric("pulse_sidecar_microphone_bytes_dropped_total")
			conn, _, err := websocket.DefaultDialer.Dial("ws://"+d.mic+"/?jwt_token=x", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			const secs = 2
			tone := audiotest.F32LEBytes(audiotest.Sine(440, float64(tc.rate), 0.5, tc.rate*secs, 1))
			start := time.Now()
			for off, i := 0, 0; off < len(tone); off, i = off+quantum*4, i+1 {
				time.Sleep(time.Until(start.Add(tc.due(i, rng))))
				if err := conn.WriteMessage(websocket.BinaryMessage, tone[off:min(off+quantum*4, len(tone))]); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(700 * time.Millisecond)
			pcm := stopRecording()
			if got := d.metric("pulse_sidecar_microphone_detected_rate_hz"); got != float64(tc.rate) {
				t.Errorf("detected rate metric %g, want %d", got, tc.rate)
			}
			s, e, ok := audiotest.Loud(pcm, 44100, 0.05)
			if !ok {
				t.Fatalf("no tone recorded (%d samples)", len(pcm))
			}
			got := audiotest.DominantFrequency(pcm[s:e], 44100)
			dur := float64(e-s) / 44100
			// The pipe holds at most ~50 ms: when this loaded machine does
			// not schedule PulseAudio in time, the relay drops audio, as it
			// does for declared streams. What it dropped counts towards the
			// length sent; a wrong rate would still be 8.8 % off.
			dropped := (d.metric("pulse_sidecar_microphone_bytes_dropped_total") - droppedBefore) / (44100 * 4)
			t.Logf("recorded %.3f s of tone at %.2f Hz; %.3f s dropped at the pipe", dur, got, dropped)
			if math.Abs(got-440)/440 > 0.01 {
				t.Errorf("recorded %.2f Hz, want 440 Hz within 1%%", got)
			}
			// 3 %, and the 10 ms windows of Loud at either end.
			if math.Abs(dur+dropped-secs) > secs*0.03+0.02 {
				t.Errorf("recorded tone lasts %.3f s (+ %.3f s dropped at the pipe), sent %d s", dur, dropped, secs)
			}
			if dropped > 0.1*secs {
				t.Errorf("%.3f s dropped at the pipe, more than PulseAudio's scheduling explains", dropped)
			}
		})
	}
	log := d.stderr.String()
	if !strings.Contains(log, "microphone rate of undeclared stream") {
		t.Errorf("the detected rate is not logged:\n%s", log)
	}
	// The hold's audio itself is never cut.
	if strings.Contains(log, "microphone held audio dropped") {
		t.Errorf("held audio was dropped:\n%s", log)
	}
}

// paced sends burst messages of 128 samples at a time in real time at rate,
// each burst up to jitter late.
func paced(rate, burst int, jitter time.Duration) func(int, *rand.Rand) time.Duration {
	return func(i int, rng *rand.Rand) time.Duration {
		due := time.Duration(i/burst*burst) * 128 * time.Second / time.Duration(rate)
		if jitter > 0 && i%burst == 0 {
			due += time.Duration(rng.Int64N(int64(jitter)))
		}
		return due
	}
}
