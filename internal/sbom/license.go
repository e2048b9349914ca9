package sbom

import (
	"regexp"
	"sort"
	"strings"

	"github.com/pulse-sidecar/pulse-sidecar/internal/debian"
)

const noAssertion = "NOASSERTION"

// licenseInfo is what a Debian copyright file says about licensing.
type licenseInfo struct {
	// Expression is an SPDX license expression, or NOASSERTION.
	Expression string
	// Refs maps each LicenseRef-… in Expression to the text that defines
	// it, when the file carries one.
	Refs map[string]string
}

// parseCopyright reads a DEP-5 machine-readable copyright file. Files in
// free form cannot be read reliably, so they yield NOASSERTION rather than
// a guess.
func parseCopyright(pkg string, data []byte) licenseInfo {
	none := licenseInfo{Expression: noAssertion}
	if len(data) == 0 {
		return none
	}
	var paras []debian.Paragraph
	err := debian.ParseParagraphs(pkg+" copyright", string(data), func(p debian.Paragraph) error {
		paras = append(paras, append(debian.Paragraph(nil), p...))
		return nil
	})
	if err != nil || len(paras) == 0 || !strings.Contains(paras[0].Value("Format"), "copyright-format") {
		return none
	}
	texts := map[string]string{} // Debian short name -> stand-alone license text
	var used []string
	for i, p := range paras {
		lic, ok := p.Get("License")
		if !ok {
			continue
		}
		name, text, _ := strings.Cut(lic, "\n")
		name = strings.TrimSpace(name)
		_, hasFiles := p.Get("Files")
		switch {
		case hasFiles || i == 0:
			// The header's License covers the whole package.
			if name != "" {
				used = append(used, name)
			}
			if text != "" && texts[name] == "" {
				texts[name] = unfold(text)
			}
		case name != "":
			texts[name] = unfold(text)
		}
	}
	if len(used) == 0 {
		return none
	}
	info := licenseInfo{Refs: map[string]string{}}
	seen := map[string]bool{}
	var terms []string
	for _, name := range used {
		expr, refs := convertExpression(name)
		for ref, short := range refs {
			text := texts[short]
			if text == "" {
				text = "License named \"" + short + "\" in the Debian copyright file of " + pkg + "; the file carries no text for it."
			}
			info.Refs[ref] = text
		}
		// A conjunction is a list of licenses that all apply; split it so
		// a license named in several Files paragraphs appears once.
		atoms := []string{expr}
		if !strings.Contains(expr, " OR ") {
			atoms = strings.Split(expr, " AND ")
		}
		for _, a := range atoms {
			if !seen[a] {
				seen[a] = true
				terms = append(terms, a)
			}
		}
	}
	sort.Strings(terms)
	if len(terms) > 1 {
		for i, t := range terms {
			if strings.Contains(t, " OR ") {
				terms[i] = "(" + t + ")"
			}
		}
	}
	info.Expression = strings.Join(terms, " AND ")
	return info
}

// unfold turns a deb822 multi-line value back into text: a lone "." is an
// empty line.
func unfold(v string) string {
	lines := strings.Split(v, "\n")
	for i, l := range lines {
		l = strings.TrimSpace(l)
		if l == "." {
			l = ""
		}
		lines[i] = l
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
}

// convertExpression turns a Debian license short-name expression
// ("GPL-2+ or Artistic") into SPDX ("GPL-2.0-or-later OR Artistic-1.0-Perl").
// refs maps each LicenseRef it had to invent to the Debian name it stands for.
// An operand of several words ("GPL-2+ with OpenSSL exception") has no SPDX
// 2.3 form for free-text exceptions, so it becomes one LicenseRef.
func convertExpression(debianExpr string) (expr string, refs map[string]string) {
	refs = map[string]string{}
	var out, operand []string
	flush := func() {
		if len(operand) == 0 {
			return
		}
		name := strings.Join(operand, " ")
		id, known := spdxID(name)
		if len(operand) > 1 {
			id, known = licenseRef(name), false
		}
		if !known {
			refs[id] = name
		}
		out = append(out, id)
		operand = operand[:0]
	}
	for _, f := range strings.Fields(strings.ReplaceAll(debianExpr, ",", " ")) {
		switch strings.ToLower(f) {
		case "or", "and":
			flush()
			out = append(out, strings.ToUpper(f))
		default:
			operand = append(operand, f)
		}
	}
	flush()
	return strings.Join(out, " "), refs
}

var gnuRE = regexp.MustCompile(`^(?i)(a|l)?(gpl|gfdl)-?(\d)(?:\.(\d))?(\+)?$`)

// spdxID maps one Debian short name to an SPDX license ID; known is false
// for a LicenseRef made up from the name.
func spdxID(name string) (id string, known bool) {
	if m := gnuRE.FindStringSubmatch(name); m != nil {
		minor := m[4]
		if minor == "" {
			minor = "0"
		}
		suffix := "-only"
		if m[5] != "" {
			suffix = "-or-later"
		}
		return strings.ToUpper(m[1]+m[2]) + "-" + m[3] + "." + minor + suffix, true
	}
	if base, plus := strings.CutSuffix(name, "+"); plus {
		if id, known := spdxID(base); known {
			return id + "+", true
		}
	}
	switch strings.ToLower(name) {
	case "expat", "mit":
		return "MIT", true
	case "bsd-2-clause":
		return "BSD-2-Clause", true
	case "bsd-3-clause":
		return "BSD-3-Clause", true
	case "bsd-4-clause":
		return "BSD-4-Clause", true
	case "isc":
		return "ISC", true
	case "zlib":
		return "Zlib", true
	case "apache-2.0":
		return "Apache-2.0", true
	case "mpl-1.1":
		return "MPL-1.1", true
	case "mpl-2.0":
		return "MPL-2.0", true
	case "artistic", "artistic-1.0":
		return "Artistic-1.0-Perl", true
	case "artistic-2.0":
		return "Artistic-2.0", true
	case "cc0-1.0", "cc0":
		return "CC0-1.0", true
	case "boost-1.0", "bsl-1.0":
		return "BSL-1.0", true
	case "openssl":
		return "OpenSSL", true
	case "x11":
		return "X11", true
	case "curl":
		return "curl", true
	case "ftl":
		return "FTL", true
	case "libpng":
		return "Libpng", true
	case "ijg":
		return "IJG", true
	case "unicode-dfs-2016":
		return "Unicode-DFS-2016", true
	case "psf-2":
		return "PSF-2.0", true
	}
	return licenseRef(name), false
}

var refUnsafeRE = regexp.MustCompile(`[^A-Za-z0-9.-]+`)

// licenseRef names an unknown license with the characters SPDX allows.
func licenseRef(name string) string {
	return "LicenseRef-" + strings.Trim(refUnsafeRE.ReplaceAllString(name, "-"), "-")
}
