package debian

import "testing"

func TestCompareVersions(t *testing.T) {
	// Each case is "a < b"; the test also checks the reverse and that
	// each version equals itself.
	less := [][2]string{
		{"1.0~rc1", "1.0"},
		{"1.0~rc1", "1.0~rc2"},
		{"1.0~~", "1.0~"},
		{"1.0~~a", "1.0~"},
		{"1.0~", "1.0"},
		{"1.0", "1.0a"},
		{"1.0a", "1.0+"},      // letters sort before non-letters
		{"1.0+dfsg", "1.0.1"}, // '+' sorts before '.'
		{"1.0-1", "1.0-1+deb12u1"},
		{"1.0-1+deb12u1", "1.0-1+deb12u2"},
		{"1.0-1+deb12u9", "1.0-1+deb12u10"}, // digits compare numerically
		{"2.0", "1:0.1"},                    // epoch wins
		{"1:2.0", "2:0"},
		{"1.2", "1.10"},
		{"1.09", "1.10"},
		{"9", "10"},
		{"1.0", "1.0-0.1"},
		{"1.0-1", "1.0-2"},
		{"1.0-9", "1.0-10"},
		{"1.0-1", "1.0.1-1"},
		{"0.9-1", "1.0~rc1-1"},
		{"2.36-9+deb12u9", "2.36-9+deb12u10"},
		{"1.2.3", "1.2.3.0"},
		{"1a", "1b"},
		{"1A", "1a"}, // ASCII order among letters
		{"1.0+b1", "1.0.0"},
		{"7:5.1.6-0+deb12u1", "7:5.1.7-0+deb12u1"},
		{"20230101", "20240101"},
		{"99999999999999999999", "100000000000000000000"}, // beyond int64
		{"1.0-1~bpo12+1", "1.0-1"},
		{"1.0", "1.0-1"},
	}
	for _, c := range less {
		if got := CompareVersions(c[0], c[1]); got != -1 {
			t.Errorf("compare(%q, %q) = %d, want -1", c[0], c[1], got)
		}
		if got := CompareVersions(c[1], c[0]); got != 1 {
			t.Errorf("compare(%q, %q) = %d, want 1", c[1], c[0], got)
		}
		for _, v := range c {
			if got := CompareVersions(v, v); got != 0 {
				t.Errorf("compare(%q, %q) = %d, want 0", v, v, got)
			}
		}
	}
	equal := [][2]string{
		{"0:1.0", "1.0"},
		{"1.0", "1.00"},
		{"1.0-0", "1.0"}, // a missing revision counts as "0"
		{"1.001", "1.1"},
	}
	for _, c := range equal {
		if got := CompareVersions(c[0], c[1]); got != 0 {
			t.Errorf("compare(%q, %q) = %d, want 0", c[0], c[1], got)
		}
	}
}

func TestParseVersion(t *testing.T) {
	cases := []struct {
		in   string
		want Version
	}{
		{"1.0", Version{Upstream: "1.0"}},
		{"1:2.3-4", Version{Epoch: 1, Upstream: "2.3", Revision: "4"}},
		{"2.3-4-5", Version{Upstream: "2.3-4", Revision: "5"}}, // last hyphen splits
		{"1:2:3", Version{Epoch: 1, Upstream: "2:3"}},          // first colon splits
	}
	for _, c := range cases {
		got, err := ParseVersion(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseVersion(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
		if got.String() != c.in {
			t.Errorf("%+v.String() = %q, want %q", got, got.String(), c.in)
		}
	}
	for _, bad := range []string{"", "a:1.0", "-1:1.0", "1:", "-1"} {
		if _, err := ParseVersion(bad); err == nil {
			t.Errorf("ParseVersion(%q) accepted", bad)
		}
	}
}

func BenchmarkCompareVersions(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		CompareVersions("7:5.1.6-0+deb12u1", "7:5.1.6-0+deb12u1~bpo1")
	}
}
