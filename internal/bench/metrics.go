package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// Metrics maps a series, its name followed by its labels exactly as the
// exposition wrote them (e.g. `go_goroutines` or `x_total{code="200"}`),
// to its value.
type Metrics map[string]float64

// ParseMetrics reads the Prometheus text exposition format. Only what the
// benchmark needs is supported: comments are skipped, a trailing timestamp is
// ignored, label values must not contain spaces.
func ParseMetrics(r io.Reader) (Metrics, error) {
	m := Metrics{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || text[0] == '#' {
			continue
		}
		// The series ends at the closing brace, if any, else at a space.
		end := strings.IndexByte(text, ' ')
		if b := strings.IndexByte(text, '{'); b >= 0 && (end < 0 || b < end) {
			c := strings.IndexByte(text[b:], '}')
			if c < 0 {
				return nil, fmt.Errorf("bench: metrics line %d: unclosed label set: %q", line, text)
			}
			end = b + c + 1
		}
		if end < 0 || end >= len(text) {
			return nil, fmt.Errorf("bench: metrics line %d: no value: %q", line, text)
		}
		f := strings.Fields(text[end:])
		if len(f) < 1 || len(f) > 2 {
			return nil, fmt.Errorf("bench: metrics line %d: want a value and an optional timestamp: %q", line, text)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return nil, fmt.Errorf("bench: metrics line %d: value %q: %w", line, f[0], err)
		}
		m[text[:end]] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("bench: reading metrics: %w", err)
	}
	return m, nil
}

// Scrape fetches and parses a /metrics URL.
func Scrape(ctx context.Context, c *http.Client, url string) (Metrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("bench: metrics URL %q: %w", url, err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("bench: scraping %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("bench: scraping %s: %s", url, resp.Status)
	}
	m, err := ParseMetrics(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%w (from %s)", err, url)
	}
	return m, nil
}
