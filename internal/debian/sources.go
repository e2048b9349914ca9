package debian

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// aptSource is one (URI, suite) pair of an apt source entry.
type aptSource struct {
	uri, suite, file string
}

// archiveForSuite maps a suite name to the archive that serves it: security
// updates live in their own archive, everything else in the main one.
func archiveForSuite(suite string) string {
	if strings.HasSuffix(suite, "-security") || strings.HasSuffix(suite, "/updates") {
		return "debian-security"
	}
	return "debian"
}

// MirrorsFromAptSources returns the base URL per archive ("debian",
// "debian-security") configured in root's apt sources: the deb822
// sources.list.d/*.sources files and the one-line sources.list. Only "deb"
// entries count; disabled deb822 entries (Enabled: no) are skipped. When two
// entries disagree on an archive's URL, the first in file name order wins,
// the order apt reads them in.
func MirrorsFromAptSources(root string) (map[string]string, error) {
	srcs, err := readAptSources(root)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, s := range srcs {
		a := archiveForSuite(s.suite)
		if _, ok := out[a]; !ok {
			out[a] = strings.TrimSuffix(s.uri, "/")
		}
	}
	return out, nil
}

func readAptSources(root string) ([]aptSource, error) {
	var out []aptSource
	list := filepath.Join(root, "etc/apt/sources.list")
	if b, err := os.ReadFile(list); err == nil {
		srcs, err := parseOneLineSources(list, string(b))
		if err != nil {
			return nil, err
		}
		out = append(out, srcs...)
	} else if !os.IsNotExist(err) {
		return nil, err
	}
	files, err := filepath.Glob(filepath.Join(root, "etc/apt/sources.list.d/*.sources"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		srcs, err := parseDeb822Sources(f, string(b))
		if err != nil {
			return nil, err
		}
		out = append(out, srcs...)
	}
	lists, err := filepath.Glob(filepath.Join(root, "etc/apt/sources.list.d/*.list"))
	if err != nil {
		return nil, err
	}
	sort.Strings(lists)
	for _, f := range lists {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		srcs, err := parseOneLineSources(f, string(b))
		if err != nil {
			return nil, err
		}
		out = append(out, srcs...)
	}
	return out, nil
}

// parseOneLineSources reads "deb [opt=val ...] uri suite component..." lines.
func parseOneLineSources(file, text string) ([]aptSource, error) {
	var out []aptSource
	for n, line := range strings.Split(text, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "deb" {
			continue // deb-src and blank lines
		}
		f = f[1:]
		if len(f) > 0 && strings.HasPrefix(f[0], "[") {
			// Options may contain spaces: skip to the closing bracket.
			for len(f) > 0 && !strings.HasSuffix(f[0], "]") {
				f = f[1:]
			}
			if len(f) == 0 {
				return nil, fmt.Errorf("%s line %d: unterminated [options]", file, n+1)
			}
			f = f[1:]
		}
		if len(f) < 2 {
			return nil, fmt.Errorf("%s line %d: want \"deb URI SUITE [COMPONENT...]\"", file, n+1)
		}
		out = append(out, aptSource{uri: f[0], suite: f[1], file: file})
	}
	return out, nil
}

// parseDeb822Sources reads the deb822 sources format.
func parseDeb822Sources(file, text string) ([]aptSource, error) {
	var out []aptSource
	err := ParseParagraphs(file, text, func(p Paragraph) error {
		if strings.EqualFold(p.Value("Enabled"), "no") {
			return nil
		}
		if !containsField(p.Value("Types"), "deb") {
			return nil
		}
		uris, suites := strings.Fields(p.Value("URIs")), strings.Fields(p.Value("Suites"))
		if len(uris) == 0 || len(suites) == 0 {
			return fmt.Errorf("%s: entry without URIs or Suites", file)
		}
		for _, u := range uris {
			for _, s := range suites {
				out = append(out, aptSource{uri: u, suite: s, file: file})
			}
		}
		return nil
	})
	return out, err
}

func containsField(list, want string) bool {
	for _, f := range strings.Fields(list) {
		if f == want {
			return true
		}
	}
	return false
}

// SnapshotBaseFromAptSources finds a snapshot archive in comments of root's
// apt sources, such as "# http://host/archive/debian/20250520T000000Z"
// (images built from a snapshot often keep it there), and returns the part
// before "/archive/". It returns "" when there is none; callers let a flag
// or environment variable take precedence.
func SnapshotBaseFromAptSources(root string) (string, error) {
	var files []string
	for _, pattern := range []string{"etc/apt/sources.list", "etc/apt/sources.list.d/*.sources", "etc/apt/sources.list.d/*.list"} {
		m, err := filepath.Glob(filepath.Join(root, pattern))
		if err != nil {
			return "", err
		}
		sort.Strings(m)
		files = append(files, m...)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return "", err
		}
		if base := snapshotBaseIn(string(b)); base != "" {
			return base, nil
		}
	}
	return "", nil
}

func snapshotBaseIn(text string) string {
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "#") {
			continue
		}
		for _, word := range strings.Fields(strings.TrimPrefix(line, "#")) {
			if !strings.HasPrefix(word, "http://") && !strings.HasPrefix(word, "https://") {
				continue
			}
			if base, _, ok := strings.Cut(word, "/archive/"); ok {
				return base
			}
		}
	}
	return ""
}
