package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// DockerRegistry starts the distribution registry (docker-registry) on a free
// loopback port with its storage in a temp dir, stops it when the test ends,
// and returns its host:port.
func DockerRegistry(t testing.TB) (addr string) {
	t.Helper()
	bin := Tool(t, "docker-registry")
	addr = FreeAddr(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yml")
	text := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n",
		filepath.Join(dir, "data"), addr)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	var log SyncBuffer
	exited := startProcess(t, "docker-registry", exec.Command(bin, "serve", cfg), &log)
	waitUntil(t, "docker-registry on "+addr, exited, &log, 30*time.Second, func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
	return addr
}
