package initramfs

import (
	"bytes"
	"strings"
	"testing"
	"testing/fstest"
)

func TestWriterRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.CharDev("dev/console", 0o600, 5, 1))
	must(w.File("init", 0o755, []byte("\x7fELF...")))
	must(w.File("www/a/b/c.html", 0o644, []byte("abc"))) // parents implied
	must(w.File("www/odd", 0o644, []byte("12345")))      // needs padding
	must(w.File("www/empty", 0o644, nil))
	must(w.Symlink("www/index.html", "a/b/c.html"))
	must(w.Close())

	if buf.Len()%512 != 0 {
		t.Errorf("archive length %d is not a multiple of 512", buf.Len())
	}
	got, err := Read(&buf)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	want := []Entry{
		{Name: "dev", Mode: TypeDir | 0o755, Nlink: 2},
		{Name: "dev/console", Mode: TypeChar | 0o600, Nlink: 1, Major: 5, Minor: 1},
		{Name: "init", Mode: TypeRegular | 0o755, Nlink: 1, Data: []byte("\x7fELF...")},
		{Name: "www", Mode: TypeDir | 0o755, Nlink: 2},
		{Name: "www/a", Mode: TypeDir | 0o755, Nlink: 2},
		{Name: "www/a/b", Mode: TypeDir | 0o755, Nlink: 2},
		{Name: "www/a/b/c.html", Mode: TypeRegular | 0o644, Nlink: 1, Data: []byte("abc")},
		{Name: "www/odd", Mode: TypeRegular | 0o644, Nlink: 1, Data: []byte("12345")},
		{Name: "www/empty", Mode: TypeRegular | 0o644, Nlink: 1},
		{Name: "www/index.html", Mode: TypeSymlink | 0o777, Nlink: 1, Data: []byte("a/b/c.html")},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d entries %v, want %d", len(got), names(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Name != w.Name || g.Mode != w.Mode || g.Nlink != w.Nlink || g.Major != w.Major ||
			g.Minor != w.Minor || !bytes.Equal(g.Data, w.Data) || g.UID != 0 || g.GID != 0 || g.Mtime != 0 {
			t.Errorf("entry %d = %+v, want %+v", i, g, w)
		}
	}
}

func TestWriterHeaderLayout(t *testing.T) {
	// The exact bytes of a one-file archive, as the kernel's
	// init/initramfs.c expects them: 110-byte header, name padded to 4,
	// data padded to 4.
	var buf bytes.Buffer
	w := NewWriter(&buf)
	if err := w.File("x", 0o644, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.String()
	wantHdr := "070701" + "00000001" + "000081a4" + "00000000" + "00000000" + "00000001" + "00000000" +
		"00000002" + "00000000" + "00000000" + "00000000" + "00000000" + "00000002" + "00000000"
	if !strings.HasPrefix(b, wantHdr+"x\x00") {
		t.Fatalf("header = %q, want prefix %q", b[:112], wantHdr+"x\x00")
	}
	// 110 + 2 = 112 (aligned), data "hi" + 2 pad = 116, then the trailer.
	if got := b[112:116]; got != "hi\x00\x00" {
		t.Errorf("data = %q, want %q", got, "hi\x00\x00")
	}
	if !strings.HasPrefix(b[116:], "070701") || !strings.Contains(b[116:], "TRAILER!!!\x00") {
		t.Errorf("no trailer after the data: %q", b[116:])
	}
}

func TestWriterErrors(t *testing.T) {
	tests := []struct {
		name string
		do   func(w *Writer) error
	}{
		{"duplicate", func(w *Writer) error {
			if err := w.File("a", 0o644, nil); err != nil {
				return nil // would make the test pass for the wrong reason
			}
			return w.File("a", 0o644, nil)
		}},
		{"implied parent then explicit dir", func(w *Writer) error {
			if err := w.File("d/f", 0o644, nil); err != nil {
				return nil
			}
			return w.Dir("d", 0o755)
		}},
		{"empty name", func(w *Writer) error { return w.File("", 0o644, nil) }},
		{"dot dot", func(w *Writer) error { return w.File("../etc/passwd", 0o644, nil) }},
		{"unclean", func(w *Writer) error { return w.File("a//b", 0o644, nil) }},
		{"trailer name", func(w *Writer) error { return w.File("TRAILER!!!", 0o644, nil) }},
		{"empty symlink", func(w *Writer) error { return w.Symlink("l", "") }},
		{"after close", func(w *Writer) error {
			if err := w.Close(); err != nil {
				return nil
			}
			return w.File("a", 0o644, nil)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.do(NewWriter(&bytes.Buffer{})); err == nil {
				t.Errorf("%s: no error", tt.name)
			}
		})
	}
}

func TestReadRejectsGarbage(t *testing.T) {
	tests := []struct {
		name, in string
	}{
		{"empty", ""},
		{"bad magic", strings.Repeat("x", 120)},
		{"truncated header", "070701000000"},
		{"no trailer", func() string {
			var b bytes.Buffer
			w := NewWriter(&b)
			if err := w.File("a", 0o644, []byte("data")); err != nil {
				t.Fatal(err)
			}
			return b.String() // Close not called
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Read(strings.NewReader(tt.in)); err == nil {
				t.Errorf("Read(%q) succeeded", tt.name)
			}
		})
	}
}

func TestBuild(t *testing.T) {
	content := fstest.MapFS{
		"index.html":     {Data: []byte("<h1>hi</h1>"), Mode: 0o644},
		"css/site.css":   {Data: []byte("body{}"), Mode: 0o600},
		"img/empty.gif":  {Data: nil, Mode: 0o644},
		"css":            {Mode: 0o700 | 1<<31},
		"img":            {Mode: 0o755 | 1<<31},
		"docs/readme.md": {Data: []byte("# r"), Mode: 0o644},
	}
	for _, gz := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "gzip"}[gz], func(t *testing.T) {
			var buf bytes.Buffer
			if err := Build(&buf, Options{Init: []byte("INIT"), Content: content, Gzip: gz}); err != nil {
				t.Fatalf("Build: %v", err)
			}
			if isGzip := bytes.HasPrefix(buf.Bytes(), []byte{0x1f, 0x8b}); isGzip != gz {
				t.Errorf("gzip magic present = %v, want %v", isGzip, gz)
			}
			entries, err := Read(&buf)
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			byName := map[string]Entry{}
			for _, e := range entries {
				byName[e.Name] = e
			}
			checks := []struct {
				name string
				mode uint32
				data string
			}{
				{"dev/console", TypeChar | 0o600, ""},
				{"proc", TypeDir | 0o555, ""},
				{"init", TypeRegular | 0o755, "INIT"},
				{"www/index.html", TypeRegular | 0o644, "<h1>hi</h1>"},
				{"www/css", TypeDir | 0o755, ""},                    // made traversable
				{"www/css/site.css", TypeRegular | 0o644, "body{}"}, // made readable
				{"www/img/empty.gif", TypeRegular | 0o644, ""},
				{"www/docs/readme.md", TypeRegular | 0o644, "# r"},
			}
			for _, c := range checks {
				e, ok := byName[c.name]
				if !ok {
					t.Errorf("missing %q in %v", c.name, names(entries))
					continue
				}
				if e.Mode != c.mode || string(e.Data) != c.data {
					t.Errorf("%s: mode %o data %q, want mode %o data %q", c.name, e.Mode, e.Data, c.mode, c.data)
				}
			}
			if e := byName["dev/console"]; e.Major != 5 || e.Minor != 1 {
				t.Errorf("dev/console is %d:%d, want 5:1", e.Major, e.Minor)
			}
		})
	}
}

func TestBuildNeedsInit(t *testing.T) {
	if err := Build(&bytes.Buffer{}, Options{}); err == nil {
		t.Error("Build without Init succeeded")
	}
}

func TestBuildDeterministic(t *testing.T) {
	content := fstest.MapFS{"b.txt": {Data: []byte("b")}, "a.txt": {Data: []byte("a")}}
	var one, two bytes.Buffer
	for _, b := range []*bytes.Buffer{&one, &two} {
		if err := Build(b, Options{Init: []byte("I"), Content: content}); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(one.Bytes(), two.Bytes()) {
		t.Error("two builds of the same input differ")
	}
}

func names(es []Entry) []string {
	var n []string
	for _, e := range es {
		n = append(n, e.Name)
	}
	return n
}
