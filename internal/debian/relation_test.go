package debian

import (
	"reflect"
	"testing"
)

func TestParseRelations(t *testing.T) {
	got, err := ParseRelations("a (>= 1.2) | b:any, c [amd64],\n d (<< 2:1.0~rc1) [!arm64 !i386] <!nocheck> <stage1 cross>, e:native (= 1), f (>> 1), g (<= 3), h (< 4), i (> 5),")
	if err != nil {
		t.Fatal(err)
	}
	want := []Relation{
		{{Name: "a", Op: OpGE, Version: "1.2"}, {Name: "b", ArchQual: "any"}},
		{{Name: "c", Archs: []string{"amd64"}}},
		{{Name: "d", Op: OpLT, Version: "2:1.0~rc1", Archs: []string{"!arm64", "!i386"}, Profiles: [][]string{{"!nocheck"}, {"stage1", "cross"}}}},
		{{Name: "e", ArchQual: "native", Op: OpEQ, Version: "1"}},
		{{Name: "f", Op: OpGT, Version: "1"}},
		{{Name: "g", Op: OpLE, Version: "3"}},
		{{Name: "h", Op: OpLE, Version: "4"}}, // obsolete "<" means "<="
		{{Name: "i", Op: OpGE, Version: "5"}}, // obsolete ">" means ">="
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %#v\nwant %#v", got, want)
	}
	if s := got[0].String(); s != "a (>= 1.2) | b:any" {
		t.Errorf("String() = %q", s)
	}
}

func TestParseRelationsErrors(t *testing.T) {
	for _, bad := range []string{
		"a (>= )",
		"a (~= 1)",
		"a (>= 1",
		"a [amd64",
		"a [amd64 !arm64]",
		"a <nocheck",
		"| b",
		"a:",
		"a (>= 1) junk",
		"a (>= x:1)",
	} {
		if _, err := ParseRelations(bad); err == nil {
			t.Errorf("ParseRelations(%q) accepted", bad)
		}
	}
	if rels, err := ParseRelations(""); err != nil || len(rels) != 0 {
		t.Errorf("empty field: %v, %v", rels, err)
	}
}

func TestAppliesTo(t *testing.T) {
	cases := []struct {
		field string
		arch  string
		want  bool
	}{
		{"a", "amd64", true},
		{"a [amd64]", "amd64", true},
		{"a [amd64]", "arm64", false},
		{"a [!amd64]", "amd64", false},
		{"a [!amd64]", "arm64", true},
		{"a [linux-any]", "arm64", true},
		{"a [any-arm64]", "arm64", true},
		{"a [!linux-any]", "arm64", false},
		{"a <!nocheck>", "amd64", true},
		{"a <nocheck>", "amd64", false},
		{"a <nocheck> <!stage1>", "amd64", true},
		{"a <!nocheck stage1>", "amd64", false},
	}
	for _, c := range cases {
		rels, err := ParseRelations(c.field)
		if err != nil {
			t.Fatal(err)
		}
		if got := rels[0][0].AppliesTo(c.arch); got != c.want {
			t.Errorf("%q on %s: %v, want %v", c.field, c.arch, got, c.want)
		}
	}
}

func TestOpSatisfies(t *testing.T) {
	cases := []struct {
		have string
		op   Op
		want string
		ok   bool
	}{
		{"1.0", OpLT, "1.1", true},
		{"1.1", OpLT, "1.1", false},
		{"1.1", OpLE, "1.1", true},
		{"1.1", OpEQ, "1.1", true},
		{"1:1.1", OpEQ, "1.1", false},
		{"1.1", OpGE, "1.1", true},
		{"1.1", OpGT, "1.1", false},
		{"1.1+b1", OpGT, "1.1", true},
		{"anything", OpNone, "", true},
	}
	for _, c := range cases {
		if got := c.op.Satisfies(c.have, c.want); got != c.ok {
			t.Errorf("%s %s %s = %v", c.have, c.op, c.want, got)
		}
	}
}
