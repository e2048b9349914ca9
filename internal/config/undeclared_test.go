package config

import (
	"bytes"
	"strings"
	"testing"
)

func TestMicUndeclared(t *testing.T) {
	clearEnv(t)
	c, err := Parse("pulse-sidecar", nil, &bytes.Buffer{})
	if err != nil || c.MicUndeclared != "detect" {
		t.Fatalf("default: %q, %v; want detect", c.MicUndeclared, err)
	}
	for _, ok := range []string{"detect", "passthrough", "48000", "44100", "8000"} {
		if c, err := Parse("pulse-sidecar", []string{"--mic-undeclared", ok}, &bytes.Buffer{}); err != nil || c.MicUndeclared != ok {
			t.Errorf("--mic-undeclared %s: %q, %v", ok, c.MicUndeclared, err)
		}
	}
	t.Setenv("PULSE_SIDECAR_MIC_UNDECLARED", "16000")
	if c, err := Parse("pulse-sidecar", nil, &bytes.Buffer{}); err != nil || c.MicUndeclared != "16000" {
		t.Errorf("from the environment: %q, %v", c.MicUndeclared, err)
	}
	for _, bad := range []string{"44101", "auto", "-1", "48k"} {
		_, err := Parse("pulse-sidecar", []string{"--mic-undeclared", bad}, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), "--mic-undeclared") || strings.Contains(err.Error(), "\n") {
			t.Errorf("--mic-undeclared %s: %v, want one line naming the flag", bad, err)
		}
	}
}
