package debian

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/ulikunitz/xz"
)

// Package is one binary package paragraph of a Packages index. Relation
// fields stay unparsed: the resolver touches a few hundred of 60k packages,
// so parsing them all up front would be wasted work.
type Package struct {
	Name          string
	Version       string
	Architecture  string
	MultiArch     string // "", "same", "foreign", "allowed" or "no"
	Essential     bool
	Priority      string
	Source        string // source package name, defaulting to Name
	SourceVersion string // defaulting to Version
	Depends       string
	PreDepends    string
	Provides      string
	Filename      string
	Size          int64
	SHA256        string
}

// ParsePackages parses an uncompressed Packages index. where names the index
// in errors. Every paragraph must carry the fields a lock needs, so a broken
// index is refused here rather than producing an unusable lock later.
func ParsePackages(where string, index []byte) ([]Package, error) {
	// One conversion for the whole index: every field below is a substring
	// of it, which keeps parsing at one allocation per package.
	doc := string(index)
	pkgs := make([]Package, 0, strings.Count(doc, "\nPackage: ")+1)
	err := ParseParagraphs(where, doc, func(para Paragraph) error {
		p, err := packageFromParagraph(para)
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		pkgs = append(pkgs, p)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return pkgs, nil
}

func packageFromParagraph(para Paragraph) (Package, error) {
	var p Package
	var size string
	for _, f := range para {
		// Field names in archive indexes are canonically capitalised;
		// a switch on exact names is what makes a 60k-paragraph index
		// parse in tens of milliseconds.
		switch f.Name {
		case "Package":
			p.Name = f.Value
		case "Version":
			p.Version = f.Value
		case "Architecture":
			p.Architecture = f.Value
		case "Multi-Arch":
			p.MultiArch = f.Value
		case "Essential":
			p.Essential = f.Value == "yes"
		case "Priority":
			p.Priority = f.Value
		case "Source":
			p.Source = f.Value
		case "Depends":
			p.Depends = f.Value
		case "Pre-Depends":
			p.PreDepends = f.Value
		case "Provides":
			p.Provides = f.Value
		case "Filename":
			p.Filename = f.Value
		case "Size":
			size = f.Value
		case "SHA256":
			p.SHA256 = f.Value
		}
	}
	if p.Name == "" {
		return p, fmt.Errorf("paragraph without Package field")
	}
	if p.Version == "" || p.Architecture == "" || p.Filename == "" || size == "" || p.SHA256 == "" {
		return p, fmt.Errorf("package %s: Version, Architecture, Filename, Size and SHA256 are required", p.Name)
	}
	n, err := strconv.ParseInt(size, 10, 64)
	if err != nil || n <= 0 {
		return p, fmt.Errorf("package %s %s: bad Size %q", p.Name, p.Version, size)
	}
	p.Size = n
	if !validSHA256(p.SHA256) {
		return p, fmt.Errorf("package %s %s: SHA256 %q is not 64 hex digits", p.Name, p.Version, p.SHA256)
	}
	p.Source, p.SourceVersion = splitSource(p.Source, p.Name, p.Version)
	return p, nil
}

// splitSource reads "name" or "name (version)"; the version is given only
// when it differs from the binary's (binNMUs, binaries built from another
// source version).
func splitSource(field, name, version string) (string, string) {
	if field == "" {
		return name, version
	}
	src, ver, ok := strings.Cut(field, "(")
	src = strings.TrimSpace(src)
	if !ok {
		return src, version
	}
	return src, strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(ver), ")"))
}

// Decompress undoes an index file's compression, chosen by its name, and
// caps the output at limit bytes so a hostile index cannot exhaust memory.
func Decompress(name string, data []byte, limit int64) ([]byte, error) {
	var r io.Reader
	switch {
	case strings.HasSuffix(name, ".xz"):
		xr, err := xz.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		r = xr
	case strings.HasSuffix(name, ".gz"):
		gr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		defer gr.Close()
		r = gr
	default:
		return data, nil
	}
	out, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if int64(len(out)) > limit {
		return nil, fmt.Errorf("%s: decompresses to more than %d bytes", name, limit)
	}
	return out, nil
}

// VerifyIndexFile compares an index file's bytes with its signed Release
// entry. Nothing of an index is parsed before this passes.
func VerifyIndexFile(suite string, want IndexFile, data []byte) error {
	if int64(len(data)) != want.Size {
		return fmt.Errorf("suite %s: %s is %d bytes, the signed Release says %d", suite, want.Path, len(data), want.Size)
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != want.SHA256 {
		return fmt.Errorf("suite %s: %s has SHA256 %s, the signed Release says %s", suite, want.Path, got, want.SHA256)
	}
	return nil
}
