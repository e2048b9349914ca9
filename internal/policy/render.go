package policy

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// WriteText prints one violation per line, then a verdict.
func WriteText(w io.Writer, vs []Violation) error {
	bw := bufio.NewWriter(w)
	for _, v := range vs {
		fmt.Fprintln(bw, v.String())
	}
	if len(vs) == 0 {
		fmt.Fprintln(bw, "policy: pass")
	} else {
		fmt.Fprintf(bw, "policy: %d violations\n", len(vs))
	}
	return bw.Flush()
}

// WriteJSON prints {"pass": bool, "violations": [...]}; violations is
// always an array so consumers need no null check.
func WriteJSON(w io.Writer, vs []Violation) error {
	if vs == nil {
		vs = []Violation{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		Pass       bool        `json:"pass"`
		Violations []Violation `json:"violations"`
	}{len(vs) == 0, vs})
}

// Run is the policy subcommand once the image is open: it writes the report
// in format ("text" or "json") and returns 0 on pass, 1 on violations.
func Run(img v1.Image, opts Options, format string, stdout io.Writer) (int, error) {
	write := WriteText
	switch format {
	case "", "text":
	case "json":
		write = WriteJSON
	default:
		return 2, fmt.Errorf("unknown format %q, want text or json", format)
	}
	vs, err := Check(img, opts)
	if err != nil {
		return 2, err
	}
	if err := write(stdout, vs); err != nil {
		return 2, err
	}
	if len(vs) > 0 {
		return 1, nil
	}
	return 0, nil
}
