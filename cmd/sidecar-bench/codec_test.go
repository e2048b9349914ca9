package main

import (
	"bytes"
	"context"
	"testing"
)

func TestBadCodec(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"latency", "--codec", "aac"}, &out, &errb); err == nil {
		t.Errorf("--codec aac: no error")
	}
}
