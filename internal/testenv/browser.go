package testenv

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Chromium returns the browser the headless tests drive: $E2E_CHROMIUM, or
// Debian's /usr/bin/chromium. Missing, it fails the test in CI and skips it
// elsewhere.
func Chromium(t testing.TB) string {
	t.Helper()
	p := os.Getenv("E2E_CHROMIUM")
	if p == "" {
		p = "/usr/bin/chromium"
	}
	if _, err := os.Stat(p); err != nil {
		if CI() {
			t.Fatalf("chromium is required in CI: %v", err)
		}
		t.Skipf("chromium not installed: %v", err)
	}
	return p
}

// Playwright returns the path of playwright-core's module as `npm ci`
// installs it in dir (internal/e2e/browser, from its committed lock). CI
// installs it beforehand, so there a missing one fails; elsewhere the
// first test to need it runs `npm ci`.
func Playwright(t testing.TB, dir string) string {
	t.Helper()
	mod, err := filepath.Abs(filepath.Join(dir, "node_modules", "playwright-core", "index.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(mod); err == nil {
		return mod
	}
	if CI() {
		t.Fatalf("playwright-core missing (run `npm ci` in %s): %s", dir, mod)
	}
	npm := Tool(t, "npm")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
	}
	return mod
}
