package imgdiff

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// WriteText prints r for a person: digests, then config fields, then files,
// one line per difference. Ignored differences are shown and marked.
func WriteText(w io.Writer, r *Result) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "A manifest %s config %s\n", r.A.Manifest, r.A.Config)
	fmt.Fprintf(bw, "B manifest %s config %s\n", r.B.Manifest, r.B.Config)
	if r.A.Manifest == r.B.Manifest {
		fmt.Fprintln(bw, "identical")
		return bw.Flush()
	}
	for _, f := range r.Config {
		fmt.Fprintf(bw, "config %s: %s -> %s%s\n", f.Field, orAbsent(f.A), orAbsent(f.B), ignoredMark(f.Ignored))
	}
	writeFiles(bw, "", r.Files)
	for _, l := range r.Layers {
		fmt.Fprintf(bw, "layer %d: %s -> %s\n", l.Index, orAbsent(l.A), orAbsent(l.B))
		writeFiles(bw, "  ", l.Files)
	}
	if r.Identical() {
		fmt.Fprintln(bw, "equivalent (only ignored differences)")
	} else {
		fmt.Fprintln(bw, "different")
	}
	return bw.Flush()
}

func writeFiles(w io.Writer, indent string, fs []FileDiff) {
	for _, f := range fs {
		switch f.Kind {
		case "added":
			fmt.Fprintf(w, "%s+ %s %s\n", indent, f.Path, describe(f.B))
		case "removed":
			fmt.Fprintf(w, "%s- %s %s\n", indent, f.Path, describe(f.A))
		default:
			parts := make([]string, 0, len(f.Changes))
			for _, c := range f.Changes {
				parts = append(parts, fmt.Sprintf("%s %s -> %s%s", c.Attr, orAbsent(c.A), orAbsent(c.B), ignoredMark(c.Ignored)))
			}
			fmt.Fprintf(w, "%s~ %s: %s\n", indent, f.Path, strings.Join(parts, ", "))
		}
	}
}

func describe(f *File) string {
	s := fmt.Sprintf("(%s %04o %d:%d", f.Type, f.Mode, f.UID, f.GID)
	switch {
	case f.Type == "file":
		s += fmt.Sprintf(" %d bytes sha256:%s", f.Size, f.SHA256)
	case f.Link != "":
		s += " -> " + f.Link
	}
	return s + ")"
}

func orAbsent(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func ignoredMark(ignored bool) string {
	if ignored {
		return " (ignored)"
	}
	return ""
}

// WriteJSON prints r for a machine, with the verdict alongside.
func WriteJSON(w io.Writer, r *Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		Identical bool `json:"identical"`
		*Result
	}{r.Identical(), r})
}

// Run is the diff subcommand once both images are open: it writes the
// result in format ("text" or "json") and returns the exit code.
func Run(a, b v1.Image, opts Options, format string, stdout io.Writer) (int, error) {
	write := WriteText
	switch format {
	case "", "text":
	case "json":
		write = WriteJSON
	default:
		return 2, fmt.Errorf("unknown format %q, want text or json", format)
	}
	r, err := Diff(a, b, opts)
	if err != nil {
		return 2, err
	}
	if err := write(stdout, r); err != nil {
		return 2, err
	}
	return r.ExitCode(), nil
}
