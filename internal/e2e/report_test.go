package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// reportEnv names the file the measurements go to, for docs/BENCHMARKS.md.
const reportEnv = "E2E_REPORT"

// report collects what the tests measured. Figures are reported, never
// asserted tightly: a loaded CI machine says little about the product.
type report struct {
	mu      sync.Mutex
	figures map[string]figure
}

type figure struct {
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
	Note  string  `json:"note,omitempty"`
}

func newReport(t *testing.T) *report {
	r := &report{figures: map[string]figure{}}
	t.Cleanup(func() { r.write(t) })
	return r
}

// add logs a figure and keeps it for the report file.
func (r *report) add(t *testing.T, name string, value float64, unit, note string) {
	t.Helper()
	t.Logf("measured %s = %.1f %s (%s)", name, value, unit, note)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.figures[name] = figure{Value: value, Unit: unit, Note: note}
}

func (r *report) write(t *testing.T) {
	path := os.Getenv(reportEnv)
	if path == "" {
		return
	}
	r.mu.Lock()
	doc := struct {
		Command  string            `json:"command"`
		Date     string            `json:"date"`
		Machine  string            `json:"machine"`
		Figures  map[string]figure `json:"figures"`
		Complete bool              `json:"complete"`
	}{
		Command:  "E2E_REPORT=FILE go test -count=1 -run TestImage ./internal/e2e",
		Date:     time.Now().UTC().Format(time.RFC3339),
		Machine:  runtime.GOOS + "/" + runtime.GOARCH + ", " + strconv.Itoa(runtime.NumCPU()) + " CPUs",
		Figures:  r.figures,
		Complete: !t.Failed(),
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	r.mu.Unlock()
	if err != nil {
		t.Errorf("%s: %v", reportEnv, err)
		return
	}
	// Temp file and rename: a reader never sees half a report.
	tmp, err := os.CreateTemp(filepath.Dir(path), ".e2e-report-*")
	if err != nil {
		t.Errorf("%s: %v", reportEnv, err)
		return
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		t.Errorf("%s: writing %s: %v", reportEnv, tmp.Name(), err)
		return
	}
	if err := tmp.Close(); err != nil {
		t.Errorf("%s: %v", reportEnv, err)
		return
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		t.Errorf("%s: %v", reportEnv, err)
		return
	}
	t.Logf("measurements written to %s", path)
}
