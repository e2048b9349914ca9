package bench

import (
	"bytes"
	"testing"
	"time"

	"github.com/pulse-sidecar/pulse-sidecar/internal/ogg"
)

// pageMap maps a decoded sample back to the page that carried it, by the
// packets' durations less the pre-skip, whatever the granules say.
func TestPageMapArrival(t *testing.T) {
	var stream bytes.Buffer
	w, err := ogg.NewOpusWriter(&stream, 7, ogg.OpusHead{Channels: 1, PreSkip: 312, InputRate: 48000}, "test")
	if err != nil {
		t.Fatal(err)
	}
	// TOC 0xf0: CELT fullband 10 ms, mono, one frame: 480 samples.
	for range 10 {
		if err := w.WritePacket([]byte{0xf0, 1, 2, 3}); err != nil {
			t.Fatal(err)
		}
	}
	rd := ogg.NewReader(&stream)
	var m pageMap
	t0 := time.Unix(1000, 0)
	for k := 0; ; k++ {
		p, err := rd.Next()
		if err != nil {
			break
		}
		// One page per message, 10 ms apart.
		m.add(p.Raw, t0.Add(time.Duration(k)*10*time.Millisecond))
	}
	for _, c := range []struct {
		sample int64
		page   int // index among all pages, headers included
	}{
		{0, 2}, {167, 2}, {168, 3}, {168 + 479, 3}, {168 + 480, 4}, {168 + 8*480 - 1, 10}, {168 + 9*480 - 1, 11},
	} {
		at, ok := m.arrival(c.sample)
		want := t0.Add(time.Duration(c.page) * 10 * time.Millisecond)
		if !ok || !at.Equal(want) {
			t.Errorf("sample %d: page arriving at %v (%v), want page %d at %v", c.sample, at.Sub(t0), ok, c.page, want.Sub(t0))
		}
	}
	if _, ok := m.arrival(168 + 9*480); ok {
		t.Errorf("a sample past the last page mapped to a page")
	}
}
