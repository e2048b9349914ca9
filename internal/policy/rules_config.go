package policy

import (
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

const (
	annBaseName   = "org.opencontainers.image.base.name"
	annBaseDigest = "org.opencontainers.image.base.digest"
)

func checkUser(s *subject, o *Options) []Violation {
	u := s.config.Config.User
	uid, _, err := parseUser(u)
	switch {
	case err != nil:
		return []Violation{{Field: "config.User", Message: err.Error()}}
	case uid == 0:
		return []Violation{{Field: "config.User", Message: fmt.Sprintf("config user %q is root", u)}}
	case o.WantUser != "" && u != o.WantUser:
		return []Violation{{Field: "config.User", Message: fmt.Sprintf("config user %q, want %q", u, o.WantUser)}}
	}
	return nil
}

// checkCreated: a created time near the moment of the check (or after it)
// means the build stamped its own wall clock, so two builds cannot agree.
func checkCreated(s *subject, o *Options) []Violation {
	c := s.config.Created.Time
	switch {
	case c.IsZero():
		return []Violation{{Field: "created", Message: "config has no created time"}}
	case !o.SourceDateEpoch.IsZero():
		if !c.Equal(o.SourceDateEpoch) {
			return []Violation{{Field: "created", Message: fmt.Sprintf("created %s, SOURCE_DATE_EPOCH is %s", c.UTC().Format(timeFormat), o.SourceDateEpoch.UTC().Format(timeFormat))}}
		}
		return nil
	case c.After(o.Now):
		return []Violation{{Field: "created", Message: fmt.Sprintf("created %s is in the future", c.UTC().Format(timeFormat))}}
	case o.Now.Sub(c) < o.WallClockWindow:
		return []Violation{{Field: "created", Message: fmt.Sprintf("created %s is within %s of now: the build's wall clock, not SOURCE_DATE_EPOCH", c.UTC().Format(timeFormat), o.WallClockWindow)}}
	}
	return nil
}

// checkBase: a base named only by tag cannot be rebuilt or audited later,
// because the tag moves.
func checkBase(s *subject, _ *Options) []Violation {
	name, field := lookup(s, annBaseName)
	digest, dfield := lookup(s, annBaseDigest)
	var out []Violation
	if digest != "" {
		if _, err := v1.NewHash(digest); err != nil {
			out = append(out, Violation{Field: dfield, Message: fmt.Sprintf("base digest %q: %v", digest, err)})
		}
	}
	if name != "" && digest == "" {
		msg := fmt.Sprintf("base %q is given by tag only; declare %s", name, annBaseDigest)
		if strings.Contains(name, "@") {
			msg = fmt.Sprintf("base %q carries a digest in its name but %s is missing", name, annBaseDigest)
		}
		out = append(out, Violation{Field: field, Message: msg})
	}
	return out
}

func checkLabels(s *subject, o *Options) []Violation {
	var out []Violation
	for _, k := range o.RequiredLabels {
		if v, _ := lookup(s, k); v == "" {
			out = append(out, Violation{Field: k, Message: "required label is missing from config labels and manifest annotations"})
		}
	}
	return out
}

// lookup finds an OCI annotation key in the manifest annotations or, as
// builds that only set labels do, the config labels. It returns where it
// was found, for the report.
func lookup(s *subject, key string) (value, field string) {
	if v := s.manifest.Annotations[key]; v != "" {
		return v, "manifest.annotations[" + key + "]"
	}
	if v := s.config.Config.Labels[key]; v != "" {
		return v, "config.Labels[" + key + "]"
	}
	return "", "manifest.annotations[" + key + "]"
}
