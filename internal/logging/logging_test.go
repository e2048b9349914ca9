package logging

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestJSONAndLevel(t *testing.T) {
	var buf bytes.Buffer
	log, c := New(Options{Format: "json", Level: slog.LevelWarn, Stderr: &buf})
	defer c.Close()
	log.Info("hidden")
	log.Warn("shown", "k", 1)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("lines %q", lines)
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil || rec["msg"] != "shown" {
		t.Errorf("record %q: %v", lines[0], err)
	}
}

func TestFileIsCappedAndRotated(t *testing.T) {
	dir := t.TempDir()
	var stderr bytes.Buffer
	log, c := New(Options{Format: "text", Stderr: &stderr, Dir: dir, MaxBytes: 2000})
	for i := 0; i < 100; i++ {
		log.Info("a line of some length to fill the file", "i", i)
	}
	c.Close()
	cur, err := os.Stat(filepath.Join(dir, "pulse-sidecar.log"))
	if err != nil {
		t.Fatal(err)
	}
	old, err := os.Stat(filepath.Join(dir, "pulse-sidecar.log.1"))
	if err != nil {
		t.Fatal(err)
	}
	if cur.Size() > 2000 || old.Size() > 2000 {
		t.Errorf("sizes %d and %d exceed the cap", cur.Size(), old.Size())
	}
	if cur.Mode().Perm() != 0o640 {
		t.Errorf("log file mode %v", cur.Mode())
	}
	if !strings.Contains(stderr.String(), "i=99") {
		t.Error("stderr lost records")
	}
}

// A log directory the daemon cannot write (read-only container, no volume)
// costs one warning, not the start.
func TestUnwritableDirFallsBackToStderr(t *testing.T) {
	root := t.TempDir()
	notDir := filepath.Join(root, "file")
	os.WriteFile(notDir, nil, 0o600)
	var buf bytes.Buffer
	log, c := New(Options{Format: "text", Level: slog.LevelInfo, Stderr: &buf, Dir: filepath.Join(notDir, "log")})
	defer c.Close()
	log.Info("still logging")
	out := buf.String()
	if strings.Count(out, "log directory not writable") != 1 || !strings.Contains(out, "level=WARN") || !strings.Contains(out, "still logging") {
		t.Errorf("stderr:\n%s", out)
	}
}
