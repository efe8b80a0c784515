package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/jitsu-unikernel/jitsu/examples/unikernel/initramfs"
)

func TestRun(t *testing.T) {
	dir := t.TempDir()
	initPath := filepath.Join(dir, "init")
	site := filepath.Join(dir, "site")
	out := filepath.Join(dir, "initrd.cpio")
	if err := os.WriteFile(initPath, []byte("\x7fELF-fake"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(site, "img"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(site, "index.html"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, gz := range []bool{false, true} {
		args := []string{"-init", initPath, "-content", site, "-o", out}
		if gz {
			args = append(args, "-gzip")
		}
		if err := run(args); err != nil {
			t.Fatalf("run(%v): %v", args, err)
		}
		st, err := os.Stat(out)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o644 {
			t.Errorf("output mode %v, want 0644 (libvirt-qemu must read it)", st.Mode().Perm())
		}
		f, err := os.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		entries, err := initramfs.Read(f)
		f.Close()
		if err != nil {
			t.Fatalf("read back (gzip=%v): %v", gz, err)
		}
		got := map[string]string{}
		for _, e := range entries {
			got[e.Name] = string(e.Data)
		}
		if got["init"] != "\x7fELF-fake" || got["www/index.html"] != "hello" {
			t.Errorf("gzip=%v: init %q, www/index.html %q", gz, got["init"], got["www/index.html"])
		}
		if _, ok := got["www/img"]; !ok {
			t.Errorf("gzip=%v: empty directory www/img missing", gz)
		}
	}
}

func TestRunErrors(t *testing.T) {
	dir := t.TempDir()
	initPath := filepath.Join(dir, "init")
	if err := os.WriteFile(initPath, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
	}{
		{"no init", []string{"-o", filepath.Join(dir, "o")}},
		{"no output", []string{"-init", initPath}},
		{"missing init", []string{"-init", filepath.Join(dir, "nope"), "-o", filepath.Join(dir, "o")}},
		{"content is a file", []string{"-init", initPath, "-content", initPath, "-o", filepath.Join(dir, "o")}},
		{"missing content", []string{"-init", initPath, "-content", filepath.Join(dir, "nope"), "-o", filepath.Join(dir, "o")}},
		{"output dir missing", []string{"-init", initPath, "-o", filepath.Join(dir, "no", "o")}},
		{"positional", []string{"-init", initPath, "-o", filepath.Join(dir, "o"), "extra"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := run(tt.args); err == nil {
				t.Errorf("run(%v) succeeded", tt.args)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "o")); err == nil {
		t.Error("a failed run left an output file")
	}
}
