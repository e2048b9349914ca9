package config

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// The issue 13 flags: defaults, accepted values, and errors naming the flag.
func TestOpusFlags(t *testing.T) {
	clearEnv(t)
	c, err := Parse("pulse-sidecar", nil, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.OpusBitrate != 96000 || c.OpusFrame != 10*time.Millisecond || !c.ClientPage {
		t.Errorf("defaults: bitrate %d, frame %v, client page %v; want 96000, 10ms, true", c.OpusBitrate, c.OpusFrame, c.ClientPage)
	}
	for _, f := range []string{"2.5ms", "5ms", "10ms", "20ms"} {
		c, err := Parse("pulse-sidecar", []string{"--opus-frame", f, "--client-page=false", "--opus-bitrate", "32000"}, &bytes.Buffer{})
		if err != nil {
			t.Errorf("--opus-frame %s: %v", f, err)
			continue
		}
		if c.ClientPage || c.OpusBitrate != 32000 {
			t.Errorf("--client-page=false --opus-bitrate 32000: got %v, %d", c.ClientPage, c.OpusBitrate)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--opus-frame", "3ms"}, "--opus-frame"},
		{[]string{"--opus-frame", "40ms"}, "--opus-frame"},
		{[]string{"--opus-bitrate", "1000"}, "--opus-bitrate"},
		{[]string{"--opus-bitrate", "600000"}, "--opus-bitrate"},
	} {
		_, err := Parse("pulse-sidecar", tc.args, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one naming %s", tc.args, err, tc.want)
		}
	}
}
