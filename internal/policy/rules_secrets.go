package policy

import (
	"fmt"
	"regexp"
	"strings"
)

// isSecretWord tells the key name components that announce a secret.
// Matching whole components keeps XKB_KEYMAP or KEYBOARD from counting as KEY.
func isSecretWord(part string) bool {
	switch part {
	case "COOKIE", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "KEY", "APIKEY", "CREDENTIAL", "CREDENTIALS", "PRIVATE":
		return true
	}
	return false
}

var (
	digestRE     = regexp.MustCompile(`sha(256|512):[0-9a-fA-F]+`)
	hexRunRE     = regexp.MustCompile(`[0-9a-fA-F]{32,}`)
	base64RunRE  = regexp.MustCompile(`[A-Za-z0-9+/_-]{40,}={0,2}`)
	assignmentRE = regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|'[^']*'|\S+)`)
)

func checkEnvSecrets(s *subject, _ *Options) []Violation {
	var out []Violation
	for i, kv := range s.config.Config.Env {
		k, v, _ := strings.Cut(kv, "=")
		if why := secretReason(k, v); why != "" {
			out = append(out, Violation{Field: fmt.Sprintf("config.Env[%s]", k), Message: fmt.Sprintf("env entry %d %s", i, why)})
		}
	}
	return out
}

// checkHistorySecrets: build arguments and ENV lines end up verbatim in
// history, which every puller can read.
func checkHistorySecrets(s *subject, _ *Options) []Violation {
	var out []Violation
	for i, h := range s.config.History {
		for _, text := range []struct{ field, value string }{
			{fmt.Sprintf("history[%d].created_by", i), h.CreatedBy},
			{fmt.Sprintf("history[%d].comment", i), h.Comment},
		} {
			if why := textSecretReason(text.value); why != "" {
				out = append(out, Violation{Field: text.field, Message: why})
			}
		}
	}
	return out
}

// secretReason says why key=value looks like a secret, or "".
func secretReason(key, value string) string {
	if value == "" {
		return ""
	}
	for _, part := range strings.FieldsFunc(strings.ToUpper(key), func(r rune) bool { return r == '_' || r == '-' || r == '.' }) {
		if isSecretWord(part) {
			return fmt.Sprintf("%s has a value and its name says it is a secret", key)
		}
	}
	if why := tokenReason(value); why != "" {
		return fmt.Sprintf("%s holds %s", key, why)
	}
	return ""
}

func textSecretReason(text string) string {
	for _, m := range assignmentRE.FindAllStringSubmatch(text, -1) {
		if why := secretReason(m[1], strings.Trim(m[2], `"'`)); why != "" {
			return why
		}
	}
	if why := tokenReason(text); why != "" {
		return "holds " + why
	}
	return ""
}

// tokenReason spots values shaped like keys: long hex (a PulseAudio cookie
// is 32 hex digits) or long base64 with mixed case and digits. Content
// digests are the one long hex run images legitimately carry.
func tokenReason(v string) string {
	v = digestRE.ReplaceAllString(v, "")
	if hexRunRE.MatchString(v) {
		return "a long hexadecimal value"
	}
	for _, tok := range base64RunRE.FindAllString(v, -1) {
		if strings.ContainsAny(tok, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") &&
			strings.ContainsAny(tok, "abcdefghijklmnopqrstuvwxyz") &&
			strings.ContainsAny(tok, "0123456789") {
			return "a long base64-like value"
		}
	}
	return ""
}
