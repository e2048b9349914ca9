package origin

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func request(origin string) *http.Request {
	req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1/", nil)
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	return req
}

func TestChecker(t *testing.T) {
	for _, tc := range []struct {
		name    string
		allowed []string
		origin  string
		want    bool
	}{
		{"empty list allows any", nil, "https://evil.example", true},
		{"list of blanks allows any", []string{"", " "}, "https://evil.example", true},
		{"no Origin header", []string{"https://desktop.example"}, "", true},
		{"exact", []string{"https://desktop.example"}, "https://desktop.example", true},
		{"configured with trailing slash", []string{"https://desktop.example/"}, "https://desktop.example", true},
		{"configured in upper case", []string{"HTTPS://Desktop.Example"}, "https://desktop.example", true},
		{"header in upper case", []string{"https://desktop.example"}, "https://DESKTOP.example", true},
		{"with port", []string{"https://desktop.example:8443/"}, "https://desktop.example:8443", true},
		{"second of several", []string{"https://a.example", "https://desktop.example"}, "https://desktop.example", true},
		{"foreign host", []string{"https://desktop.example"}, "https://evil.example", false},
		{"other scheme", []string{"https://desktop.example"}, "http://desktop.example", false},
		{"other port", []string{"https://desktop.example"}, "https://desktop.example:8443", false},
		{"suffix is not a match", []string{"https://desktop.example"}, "https://desktop.example.evil", false},
		{"opaque origin", []string{"https://desktop.example"}, "null", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Checker(tc.allowed)(request(tc.origin)); got != tc.want {
				t.Errorf("Checker(%q) on Origin %q = %v, want %v", tc.allowed, tc.origin, got, tc.want)
			}
		})
	}
}

func BenchmarkChecker(b *testing.B) {
	check := Checker([]string{"https://a.example", "https://desktop.example/"})
	req := request("https://Desktop.example")
	b.ReportAllocs()
	for b.Loop() {
		if !check(req) {
			b.Fatal("refused an allowed origin")
		}
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		origin string
		ok     bool
	}{
		{"https://desktop.example", true},
		{"https://desktop.example/", true},
		{"http://127.0.0.1:8080", true},
		{"", true},
		{"https://desktop.example/sound", false},
		{"https://desktop.example:443", false},
		{"http://desktop.example:80", false},
		{"https://desktop.example?x=1", false},
		{"https://user@desktop.example", false},
		{"ftp://desktop.example", false},
		{"desktop.example", false},
	} {
		err := Validate([]string{tc.origin})
		if (err == nil) != tc.ok {
			t.Errorf("Validate(%q) = %v, want ok=%v", tc.origin, err, tc.ok)
		}
	}
}
