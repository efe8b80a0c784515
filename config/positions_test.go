package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

func TestScanPositions(t *testing.T) {
	text := `# [not.a.table] = "comment"
a = 1
"quoted.key" = 'x'
s = """
not = "a key" # [fake]
\"""
"""
b.c.d = true
lit = '''
[[fake]]
x = '''
after = 2
arr = [
  1,
  [2,
   3],
  { x = 1, y = "}" },
  "a,b]", # comment, ]
]
esc = "a \" # still string"
[t]
k = 1979-05-27 07:32:00Z
[[u]]
n = 1
[[u.v]]
w = 1
[[u]]
n = 2
[[ u.v ]]
[u.sub]
x = { in = { deep = 1 }, "q k" = 2 }
[ 't'.more ]
z = """a"""""
last = 0
`
	var m map[string]any
	if _, err := toml.Decode(text, &m); err != nil {
		t.Fatalf("test document is not valid TOML: %v", err)
	}
	// path -> a substring found only on its line.
	want := map[string]string{
		"a":                  "a = 1",
		`"quoted.key"`:       `"quoted.key"`,
		"s":                  `s = """`,
		"b":                  "b.c.d",
		"b.c":                "b.c.d",
		"b.c.d":              "b.c.d",
		"lit":                "lit =",
		"after":              "after = 2",
		"arr":                "arr = [",
		"arr[0]":             "  1,",
		"arr[1]":             "  [2,",
		"arr[1][0]":          "  [2,",
		"arr[1][1]":          "   3],",
		"arr[2]":             "{ x = 1",
		"arr[2].x":           "{ x = 1",
		"arr[2].y":           "{ x = 1",
		"arr[3]":             `"a,b]"`,
		"esc":                "esc =",
		"t":                  "[t]",
		"t.k":                "k = 1979",
		"u":                  "[[u]]\nn = 1",
		"u[0]":               "[[u]]\nn = 1",
		"u[0].n":             "n = 1",
		"u[0].v":             "[[u.v]]",
		"u[0].v[0]":          "[[u.v]]",
		"u[0].v[0].w":        "w = 1",
		"u[1]":               "[[u]]\nn = 2",
		"u[1].n":             "n = 2",
		"u[1].v[0]":          "[[ u.v ]]",
		"u[1].sub":           "[u.sub]",
		"u[1].sub.x":         "x = { in",
		"u[1].sub.x.in":      "x = { in",
		"u[1].sub.x.in.deep": "x = { in",
		`u[1].sub.x."q k"`:   "x = { in",
		"t.more":             "[ 't'.more ]",
		"t.more.z":           "z = ",
		"t.more.last":        "last = 0",
	}
	pos := scanPositions(text)
	for path, mark := range want {
		if got, want := pos[path], lineOf(t, text, mark); got != want {
			t.Errorf("line of %s = %d, want %d", path, got, want)
		}
	}
	for _, fake := range []string{"not", "fake", "x", "not.a.table"} {
		if l, ok := pos[fake]; ok {
			t.Errorf("%q, inside a string or comment, was taken for a key on line %d", fake, l)
		}
	}
	// A missing key falls back to its nearest ancestor.
	if got, want := pos.line("u[1].sub.x.nothere"), lineOf(t, text, "x = { in"); got != want {
		t.Errorf("line of a missing key = %d, want its table's %d", got, want)
	}
	if got := pos.line("nothere"); got != 0 {
		t.Errorf("line of a missing top-level key = %d, want 0", got)
	}
}

func TestParentPath(t *testing.T) {
	for in, want := range map[string]string{
		"a":                  "",
		"a.b":                "a",
		"a[2]":               "a",
		"a[2].b":             "a[2]",
		"a[2][3]":            "a[2]",
		`a."b.c"`:            "a",
		`a."b.c".d`:          `a."b.c"`,
		`"x[1]"`:             "",
		`zone[0].records[1]`: "zone[0].records",
	} {
		if got := parentPath(in); got != want {
			t.Errorf("parentPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzParse checks that Parse never panics or hangs, and that every
// problem it reports names the file and a line inside it.
func FuzzParse(f *testing.F) {
	f.Add([]byte(base + unikernel("a", "2")))
	f.Add([]byte("[dns]\nlisten = [\n\"127.0.0.1:53\",\n 5]\n"))
	f.Add([]byte("x = { a = [1, { b = '''\n]''' }] }\n[[y.z]]\n"))
	if data, err := os.ReadFile(filepath.Join("..", "examples", "jitsu.toml")); err == nil {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.toml", data)
		if err == nil {
			if c == nil {
				t.Fatal("nil config without an error")
			}
			return
		}
		if c != nil {
			t.Fatal("config returned with an error")
		}
		var es *Errors
		if !errors.As(err, &es) || len(es.List) == 0 {
			t.Fatalf("error %T %v is not a non-empty *Errors", err, err)
		}
		lines := strings.Count(string(data), "\n") + 1
		for _, e := range es.List {
			if e.File != "fuzz.toml" || e.Line < 0 || e.Line > lines {
				t.Fatalf("error %v: line out of the file's %d lines", e, lines)
			}
		}
	})
}
