package debian

import (
	"fmt"
	"strings"
)

// Field is one field of a deb822 paragraph. Value keeps continuation lines
// with their line breaks and leading space, because folded fields (Depends)
// and multiline fields (SHA256, Description) want different treatment and
// only the reader of the field knows which it is.
type Field struct {
	Name  string
	Value string
}

// Paragraph is a deb822 stanza in file order.
type Paragraph []Field

// Get returns the value of the named field (case-insensitive, as deb822
// field names are) and whether it was present.
func (p Paragraph) Get(name string) (string, bool) {
	for _, f := range p {
		if strings.EqualFold(f.Name, name) {
			return f.Value, true
		}
	}
	return "", false
}

// Value returns the named field or "".
func (p Paragraph) Value(name string) string {
	v, _ := p.Get(name)
	return v
}

// ParseParagraphs calls fn for every paragraph of a deb822 document. The
// paragraph's slice is reused between calls so a 60k-paragraph index costs
// one field slice, not 60k; fn must copy it if it keeps it. Field names and
// values, continuation lines included, are substrings of doc, so parsing
// allocates nothing per field.
//
// where names the document in errors ("bookworm main/binary-amd64/Packages").
func ParseParagraphs(where, doc string, fn func(Paragraph) error) error {
	var para Paragraph
	valueStart := 0 // offset in doc of the last field's value
	flush := func() error {
		if len(para) == 0 {
			return nil
		}
		err := fn(para)
		para = para[:0]
		return err
	}
	lineNo := 0
	for pos := 0; pos < len(doc); {
		end := len(doc)
		next := len(doc)
		if i := strings.IndexByte(doc[pos:], '\n'); i >= 0 {
			end, next = pos+i, pos+i+1
		}
		line := strings.TrimSuffix(doc[pos:end], "\r")
		lineNo++
		switch {
		case strings.TrimSpace(line) == "":
			if err := flush(); err != nil {
				return err
			}
		case line[0] == '#':
			// Comments are allowed in deb822 files written by hand
			// (sources, control); archive indexes never contain them.
		case line[0] == ' ' || line[0] == '\t':
			if len(para) == 0 {
				return fmt.Errorf("%s line %d: continuation line outside a field", where, lineNo)
			}
			// The value grows to the end of this line, so the
			// continuation costs no copy.
			para[len(para)-1].Value = strings.TrimSpace(doc[valueStart:end])
		default:
			colon := strings.IndexByte(line, ':')
			if colon <= 0 {
				return fmt.Errorf("%s line %d: %q is not a field", where, lineNo, line)
			}
			valueStart = pos + colon + 1
			para = append(para, Field{
				Name:  line[:colon],
				Value: strings.TrimSpace(line[colon+1:]),
			})
		}
		pos = next
	}
	return flush()
}

// ParseControl parses a document expected to hold exactly one paragraph.
func ParseControl(where, doc string) (Paragraph, error) {
	var out Paragraph
	n := 0
	err := ParseParagraphs(where, doc, func(p Paragraph) error {
		n++
		out = append(Paragraph(nil), p...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if n != 1 {
		return nil, fmt.Errorf("%s: %d paragraphs, want 1", where, n)
	}
	return out, nil
}
