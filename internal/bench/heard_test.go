package bench

import (
	"testing"
	"time"
)

// The sidecar's page is its speaker websocket's address over http(s), with
// the trailing slash its relative URLs need behind a router's prefix.
func TestClientPage(t *testing.T) {
	for ws, want := range map[string]string{
		"ws://127.0.0.1:29788/":                "http://127.0.0.1:29788/",
		"ws://127.0.0.1:29788":                 "http://127.0.0.1:29788/",
		"wss://desk.example/sound?jwt_token=a": "https://desk.example/sound/?jwt_token=a",
	} {
		if got, err := ClientPage(ws); err != nil || got != want {
			t.Errorf("ClientPage(%q) = %q, %v; want %q", ws, got, err, want)
		}
	}
	if _, err := ClientPage("http://127.0.0.1:29788/"); err == nil {
		t.Errorf("ClientPage of an http URL: no error")
	}
}

// Each burst gets the first onset of each tap within its window; the proof
// is the delayed tap minus the direct one, over the bursts both heard.
func TestHeardSummaries(t *testing.T) {
	t0 := time.Unix(1000, 0)
	bs := []BurstTiming{{Played: t0}, {Played: t0.Add(time.Second)}, {Played: t0.Add(2 * time.Second)}}
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	fill(bs, []time.Time{at(-time.Millisecond), at(200 * time.Millisecond), at(300 * time.Millisecond), at(1250 * time.Millisecond)},
		time.Second, func(b *BurstTiming, d time.Duration) { b.Heard = d })
	fill(bs, []time.Time{at(300 * time.Millisecond), at(1350 * time.Millisecond), at(2300 * time.Millisecond)},
		time.Second+100*time.Millisecond, func(b *BurstTiming, d time.Duration) { b.HeardDelayed = d })
	heard, added := heardSummaries(bs)
	if heard == nil || heard.N != 2 || heard.Max != 250*time.Millisecond {
		t.Errorf("heard %+v: want 2 bursts, the latest 250 ms", heard)
	}
	if added == nil || added.N != 2 || added.P50 != 100*time.Millisecond || added.Max != 100*time.Millisecond {
		t.Errorf("added %+v: want 100 ms for both bursts heard twice", added)
	}
	if h, a := heardSummaries(nil); h != nil || a != nil {
		t.Errorf("no bursts: %v, %v", h, a)
	}
}
