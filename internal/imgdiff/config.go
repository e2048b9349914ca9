package imgdiff

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// diffConfig compares the manifest and config fields a runtime or a reader
// of the image acts on.
func diffConfig(a, b v1.Image, opts Options) ([]FieldDiff, error) {
	ma, err := a.Manifest()
	if err != nil {
		return nil, fmt.Errorf("image A manifest: %w", err)
	}
	mb, err := b.Manifest()
	if err != nil {
		return nil, fmt.Errorf("image B manifest: %w", err)
	}
	ca, err := a.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image A config: %w", err)
	}
	cb, err := b.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image B config: %w", err)
	}
	var d fieldDiffer
	d.value("manifest.mediaType", ma.MediaType, mb.MediaType, false)
	d.value("manifest.config.mediaType", ma.Config.MediaType, mb.Config.MediaType, false)
	d.stringMap("manifest.annotations", ma.Annotations, mb.Annotations, false)
	d.value("manifest.layers.count", len(ma.Layers), len(mb.Layers), false)

	d.value("architecture", ca.Architecture, cb.Architecture, false)
	d.value("os", ca.OS, cb.OS, false)
	d.value("variant", ca.Variant, cb.Variant, false)
	d.value("os.version", ca.OSVersion, cb.OSVersion, false)
	d.value("author", ca.Author, cb.Author, false)
	d.value("created", ca.Created, cb.Created, opts.IgnoreTimestamps)

	ka, kb := ca.Config, cb.Config
	d.value("config.User", ka.User, kb.User, false)
	d.env(ka.Env, kb.Env)
	d.value("config.Entrypoint", ka.Entrypoint, kb.Entrypoint, false)
	d.value("config.Cmd", ka.Cmd, kb.Cmd, false)
	d.value("config.WorkingDir", ka.WorkingDir, kb.WorkingDir, false)
	d.value("config.ExposedPorts", ka.ExposedPorts, kb.ExposedPorts, false)
	d.value("config.Volumes", ka.Volumes, kb.Volumes, false)
	d.stringMap("config.Labels", ka.Labels, kb.Labels, false)
	d.value("config.Healthcheck", ka.Healthcheck, kb.Healthcheck, false)
	d.value("config.StopSignal", ka.StopSignal, kb.StopSignal, false)
	d.value("config.Shell", ka.Shell, kb.Shell, false)
	d.value("config.OnBuild", ka.OnBuild, kb.OnBuild, false)

	d.value("history.length", len(ca.History), len(cb.History), false)
	for i := 0; i < min(len(ca.History), len(cb.History)); i++ {
		ha, hb := ca.History[i], cb.History[i]
		p := fmt.Sprintf("history[%d].", i)
		d.value(p+"created", ha.Created, hb.Created, opts.IgnoreTimestamps)
		d.value(p+"created_by", ha.CreatedBy, hb.CreatedBy, false)
		d.value(p+"comment", ha.Comment, hb.Comment, false)
		d.value(p+"author", ha.Author, hb.Author, false)
		d.value(p+"empty_layer", ha.EmptyLayer, hb.EmptyLayer, false)
	}
	// Layer digests follow from the files, which are compared one by one;
	// with timestamps ignored a digest that moved only because of mtimes
	// must not count.
	ia, ib := ca.RootFS.DiffIDs, cb.RootFS.DiffIDs
	d.value("rootfs.diff_ids.length", len(ia), len(ib), false)
	for i := 0; i < min(len(ia), len(ib)); i++ {
		d.value(fmt.Sprintf("rootfs.diff_ids[%d]", i), ia[i].String(), ib[i].String(), opts.IgnoreTimestamps)
	}
	return d.out, d.err
}

// fieldDiffer collects differences; the first encoding error sticks.
type fieldDiffer struct {
	out []FieldDiff
	err error
}

func (d *fieldDiffer) value(field string, a, b any, ignored bool) {
	ja, err := render(a)
	if err != nil && d.err == nil {
		d.err = fmt.Errorf("%s: %w", field, err)
	}
	jb, err := render(b)
	if err != nil && d.err == nil {
		d.err = fmt.Errorf("%s: %w", field, err)
	}
	if ja != jb {
		d.out = append(d.out, FieldDiff{Field: field, A: ja, B: jb, Ignored: ignored})
	}
}

// stringMap reports per key, so one changed label reads as one line.
func (d *fieldDiffer) stringMap(field string, a, b map[string]string, ignored bool) {
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		va, inA := a[k]
		vb, inB := b[k]
		if va != vb || inA != inB {
			d.out = append(d.out, FieldDiff{Field: field + "[" + k + "]", A: quoteIf(va, inA), B: quoteIf(vb, inB), Ignored: ignored})
		}
	}
}

// env compares variables by name, and their order only when the sets agree:
// order matters to nobody but a byte-for-byte comparison.
func (d *fieldDiffer) env(a, b []string) {
	ma, mb := envMap(a), envMap(b)
	before := len(d.out)
	d.stringMap("config.Env", ma, mb, false)
	if len(d.out) == before && strings.Join(a, "\x00") != strings.Join(b, "\x00") {
		d.value("config.Env(order)", a, b, false)
	}
}

func envMap(env []string) map[string]string {
	m := make(map[string]string, len(env))
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

func quoteIf(v string, present bool) string {
	if !present {
		return ""
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// render gives absent and empty values the same text, so a nil slice and an
// empty one are not reported as a difference.
func render(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	switch s := string(b); s {
	case "null", `""`, "[]", "{}", "0", "false":
		return "", nil
	default:
		return s, nil
	}
}
