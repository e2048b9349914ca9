package e2e

import (
	"net/url"
	"testing"
	"time"

	"github.com/pulse-sidecar/pulse-sidecar/internal/webclienttest"
)

// webclientPage is the built-in client as the container's speaker port
// serves it on 127.0.0.1 (a secure context), told where the published
// microphone port is: the page would otherwise guess 29789 of its host.
func webclientPage(p *pod) string {
	return "http://" + p.speaker + "/?" + url.Values{"jwt_token": {"tok"}, "microphone": {"ws://" + p.microphone + "/"}}.Encode()
}

// Case 8 (issue 13): the page served by the image's speaker port plays
// ?codec=opus through WebCodecs, and its tapped output holds the 1 kHz tone
// the desktop plays inside the pod once the page taps.
func testWebclientOpusSpeaker(t *testing.T, p *pod) {
	const toneSeconds = 1.5
	sine := tone(1000)
	prog := func(i int) float32 {
		if i < int(toneSeconds*playRate) {
			return sine(i)
		}
		return 0
	}
	var pl *player
	r := webclienttest.Run(t, webclienttest.Options{
		Page: webclientPage(p), BrowserDir: browserDir,
		// Starting paplay through podman exec takes a while on a loaded
		// machine: the tap lasts long enough for the tone to pass.
		TapSeconds: 6,
	}, func(signal string) {
		if signal == "tap" && pl == nil {
			pl = startPlayer(t, p, prog, toneSeconds+0.5, false)
		}
	})
	if pl == nil {
		t.Fatal("the page never asked for the tone")
	}
	if !pl.reached(int(toneSeconds*playRate) - 1) {
		t.Errorf("the desktop had not played the whole tone when the page stopped tapping")
	}
	webclienttest.CheckSpeaker(t, r, pl.writtenAt(0))
}

// Case 8 (issue 13): the page's microphone, Chromium's fake capture of a
// 440 Hz file with audio processing off through the module's constraints,
// goes out as WebCodecs Opus with ?format=opus and is recorded from the
// source "microphone" in the desktop container at PulseAudio's 44.1 kHz.
func testWebclientOpusMicrophone(t *testing.T, p *pod) {
	rec := startRecorder(t, p)
	r := webclienttest.Run(t, webclienttest.Options{
		Page: webclientPage(p), BrowserDir: browserDir,
		// The sidecar's decoder (an ffmpeg in the container) takes up to
		// seconds to start on a loaded machine and drops what came before
		// it: the tone comes 3 s after the page opens the microphone and
		// the page sends until well after it.
		MicLead: 3, MicSeconds: 7,
	}, func(string) {})
	// What the sidecar still held when the page closed reaches the source.
	time.Sleep(time.Second)
	webclienttest.CheckMicrophone(t, r, rec.stop(t), playRate)
}
