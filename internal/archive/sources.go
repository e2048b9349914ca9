package archive

import (
	"bufio"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/pulse-sidecar/pulse-sidecar/internal/debian"
)

// aptSource is one (URI, suite) pair of an apt "deb" entry.
type aptSource struct {
	uri, suite, file string
	components       []string
}

// Mirrors merges explicit base URLs (archive name to URL, empty values
// ignored) over the ones root's apt sources configure for suites. The apt
// sources are read only when an archive of suites has no explicit URL, so
// an explicit configuration works on machines without apt.
func Mirrors(root string, suites []debian.SuiteRef, explicit map[string]string) (map[string]string, error) {
	out := map[string]string{}
	missing := false
	for _, s := range suites {
		if explicit[s.Archive] == "" {
			missing = true
		}
	}
	if missing {
		if root == "" {
			root = "/"
		}
		apt, err := aptMirrors(root, suites)
		if err != nil {
			return nil, fmt.Errorf("reading apt sources for the default mirrors (or pass --mirror and --security-mirror): %w", err)
		}
		out = apt
	}
	for archive, url := range explicit {
		if url != "" {
			out[archive] = strings.TrimSuffix(url, "/")
		}
	}
	return out, nil
}

// aptMirrors returns the base URL per archive ("debian", "debian-security") of suites
// configured in root's apt sources. An entry counts for an archive only
// when it is a "deb" entry with an http or https URI (cdrom:, file: and
// mirror+ methods name no base URL to fetch from), one of the archive's
// suites and the main component: a machine's sources routinely include
// third-party repositories for the same codename.
//
// Of several matching URIs the one that looks like the archive wins: its
// path ends in /<archive> (or /<archive>/<snapshot timestamp>), then the
// one configured for more of the archive's suites, then the first in the
// order apt reads: sources.list, then sources.list.d's *.list and
// *.sources files together in file name order.
func aptMirrors(root string, suites []debian.SuiteRef) (map[string]string, error) {
	srcs, err := readAptSources(root)
	if err != nil {
		return nil, err
	}
	archiveOf := map[string]string{}
	for _, s := range suites {
		archiveOf[s.Suite] = s.Archive
	}
	type candidate struct {
		uri    string
		first  int // position in apt's reading order
		suites map[string]bool
	}
	byArchive := map[string]map[string]*candidate{}
	for i, s := range srcs {
		archive, ok := archiveOf[s.suite]
		if !ok || !httpURI(s.uri) || !slices.Contains(s.components, "main") {
			continue
		}
		uri := strings.TrimSuffix(s.uri, "/")
		if byArchive[archive] == nil {
			byArchive[archive] = map[string]*candidate{}
		}
		c, ok := byArchive[archive][uri]
		if !ok {
			c = &candidate{uri: uri, first: i, suites: map[string]bool{}}
			byArchive[archive][uri] = c
		}
		c.suites[s.suite] = true
	}
	out := map[string]string{}
	for archive, cands := range byArchive {
		var best *candidate
		for _, c := range cands {
			if best == nil || betterMirror(archive, c.uri, len(c.suites), c.first, best.uri, len(best.suites), best.first) {
				best = c
			}
		}
		out[archive] = best.uri
	}
	return out, nil
}

// betterMirror orders candidate URIs for archive: archive-shaped path,
// then suite coverage, then apt's reading order. It is a strict order, so
// the pick does not depend on map iteration.
func betterMirror(archive, uri string, suites, first int, bestURI string, bestSuites, bestFirst int) bool {
	if a, b := pathNamesArchive(uri, archive), pathNamesArchive(bestURI, archive); a != b {
		return a
	}
	if suites != bestSuites {
		return suites > bestSuites
	}
	return first < bestFirst
}

// pathNamesArchive reports whether uri's path ends in the archive's name,
// directly or followed by a snapshot timestamp, as Debian mirrors and the
// snapshot archive lay archives out.
func pathNamesArchive(uri, archive string) bool {
	u, err := url.Parse(uri)
	if err != nil {
		return false
	}
	segs := strings.Split(strings.Trim(u.Path, "/"), "/")
	n := len(segs)
	return segs[n-1] == archive || (n >= 2 && segs[n-2] == archive && snapshotStamp(segs[n-1]))
}

// snapshotStamp matches YYYYMMDDTHHMMSSZ.
func snapshotStamp(s string) bool {
	if len(s) != 16 || s[8] != 'T' || s[15] != 'Z' {
		return false
	}
	for i, c := range s {
		if i != 8 && i != 15 && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

func httpURI(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// aptSourceFiles lists root's apt source files in the order apt reads
// them: sources.list first, then sources.list.d's *.list and *.sources
// files interleaved by name. Like apt, names with characters other than
// letters, digits, "_", "-" and "." are ignored.
func aptSourceFiles(root string) ([]string, error) {
	var files []string
	list := filepath.Join(root, "etc/apt/sources.list")
	if _, err := os.Stat(list); err == nil {
		files = append(files, list)
	} else if !os.IsNotExist(err) {
		return nil, err
	}
	dir := filepath.Join(root, "etc/apt/sources.list.d")
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return files, nil
	}
	if err != nil {
		return nil, err
	}
	// ReadDir sorts by name.
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !aptFileName(name) || (!strings.HasSuffix(name, ".list") && !strings.HasSuffix(name, ".sources")) {
			continue
		}
		files = append(files, filepath.Join(dir, name))
	}
	return files, nil
}

func aptFileName(name string) bool {
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func readAptSources(root string) ([]aptSource, error) {
	files, err := aptSourceFiles(root)
	if err != nil {
		return nil, err
	}
	var out []aptSource
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		parse := parseOneLineSources
		if strings.HasSuffix(f, ".sources") {
			parse = parseDeb822Sources
		}
		srcs, err := parse(f, string(b))
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
		out = append(out, aptSource{uri: f[0], suite: f[1], components: f[2:], file: file})
	}
	return out, nil
}

// parseDeb822Sources reads the deb822 sources format.
func parseDeb822Sources(file, text string) ([]aptSource, error) {
	var out []aptSource
	err := debian.ParseParagraphs(file, text, func(p debian.Paragraph) error {
		if strings.EqualFold(p.Value("Enabled"), "no") {
			return nil
		}
		if !slices.Contains(strings.Fields(p.Value("Types")), "deb") {
			return nil
		}
		uris, suites := strings.Fields(p.Value("URIs")), strings.Fields(p.Value("Suites"))
		if len(uris) == 0 || len(suites) == 0 {
			return fmt.Errorf("%s: entry without URIs or Suites", file)
		}
		components := strings.Fields(p.Value("Components"))
		for _, u := range uris {
			for _, s := range suites {
				out = append(out, aptSource{uri: u, suite: s, components: components, file: file})
			}
		}
		return nil
	})
	return out, err
}

// SnapshotBaseFromAptSources finds a snapshot archive in comments of root's
// apt sources, such as "# http://host/archive/debian/20250520T000000Z"
// (images built from a snapshot often keep it there), and returns the part
// before "/archive/". It returns "" when there is none; callers let a flag
// or environment variable take precedence.
func SnapshotBaseFromAptSources(root string) (string, error) {
	files, err := aptSourceFiles(root)
	if err != nil {
		return "", err
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
