package testenv

import (
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestSyncBufferConcurrentWrites(t *testing.T) {
	var b SyncBuffer
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				b.Write([]byte("ab"))
				_ = b.String()
			}
		}()
	}
	wg.Wait()
	if got := b.String(); len(got) != 800 || strings.Trim(got, "ab") != "" || strings.Contains(got, "aa") {
		t.Fatalf("writes interleaved or lost: %d bytes %q...", len(got), got[:min(len(got), 20)])
	}
}

func TestPulseAudioLoadsLines(t *testing.T) {
	p := PulseAudio(t, "load-module module-null-sink sink_name=probe", "set-default-sink probe")
	c := exec.Command(Tool(t, "pactl"), "-s", p.Server, "get-default-sink")
	c.Env = p.Env()
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("pactl get-default-sink: %v: %s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "probe" {
		t.Fatalf("default sink %q, want the script's %q", got, "probe")
	}
}

func TestDockerRegistryServesAPI(t *testing.T) {
	addr := DockerRegistry(t)
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v2/ on %s: %s, want 200", addr, resp.Status)
	}
}
