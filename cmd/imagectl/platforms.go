package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	"github.com/pulse-sidecar/pulse-sidecar/internal/oci/source"
)

// platformPair is one platform as two sources hold it; a or b is nil when
// only the other has it.
type platformPair struct {
	name string
	a, b *source.PlatformImage
}

// pairPlatforms matches two sources' images by platform, in a's order then
// b's. One image against an index is compared with the index's image of its
// platform alone: a front end's single-platform build against the index.
func pairPlatforms(a, b *source.Artifact) []platformPair {
	var out []platformPair
	index := map[string]int{}
	onlyOne := (a.Index == nil) != (b.Index == nil)
	for i := range a.Platforms {
		index[a.Platforms[i].Name()] = len(out)
		out = append(out, platformPair{name: a.Platforms[i].Name(), a: &a.Platforms[i]})
	}
	for i := range b.Platforms {
		if j, ok := index[b.Platforms[i].Name()]; ok {
			out[j].b = &b.Platforms[i]
			continue
		}
		out = append(out, platformPair{name: b.Platforms[i].Name(), b: &b.Platforms[i]})
	}
	if !onlyOne {
		return out
	}
	var kept []platformPair
	for _, p := range out {
		if p.a != nil && p.b != nil || (a.Index == nil && p.a != nil) || (b.Index == nil && p.b != nil) {
			kept = append(kept, p)
		}
	}
	return kept
}

// perPlatform runs check on each platform and writes its reports: in text
// under a "== <platform>" heading each, in JSON as one object keyed by
// platform. The exit code is the worst platform's.
func perPlatform(format string, w io.Writer, names []string, check func(i int, w io.Writer) (int, error)) (int, error) {
	code := exitOK
	reports := map[string]json.RawMessage{}
	for i, n := range names {
		var buf bytes.Buffer
		c, err := check(i, &buf)
		if err != nil {
			return exitError, fmt.Errorf("%s: %w", n, err)
		}
		code = max(code, c)
		if format == "json" {
			reports[n] = json.RawMessage(bytes.TrimSpace(buf.Bytes()))
			continue
		}
		fmt.Fprintf(w, "== %s\n", n)
		w.Write(buf.Bytes())
	}
	if format == "json" {
		b, err := json.MarshalIndent(map[string]any{"platforms": reports}, "", "  ")
		if err != nil {
			return exitError, err
		}
		fmt.Fprintf(w, "%s\n", b)
	}
	return code, nil
}
