package seeddisk

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPack(t *testing.T) {
	dir := t.TempDir()
	long := strings.Repeat("d", 80) + "/" + strings.Repeat("f", 90) // needs the ustar prefix field
	contents := map[string]string{
		"tls/key.pem":  "-----BEGIN PRIVATE KEY-----\nsecret\n",
		"tls/cert.pem": strings.Repeat("c", 1000),
		"empty":        "",
		long:           "x",
	}
	files := map[string]string{}
	for name, data := range contents {
		src := filepath.Join(dir, strings.ReplaceAll(name, "/", "_"))
		if err := os.WriteFile(src, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		files[name] = src
	}
	var buf bytes.Buffer
	if err := Pack(&buf, files); err != nil {
		t.Fatal(err)
	}
	img := buf.Bytes()
	if len(img)%512 != 0 {
		t.Errorf("image of %d bytes is not whole 512-byte sectors", len(img))
	}
	if magic := string(img[257:265]); magic != "ustar\x0000" {
		t.Errorf("first header magic %q, want ustar\\x0000 (POSIX ustar)", magic)
	}
	if !bytes.Equal(img[len(img)-1024:], make([]byte, 1024)) {
		t.Error("image does not end with two zero blocks")
	}
	tr := tar.NewReader(bytes.NewReader(img))
	var order []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Format != tar.FormatUSTAR || h.Mode != 0o400 || h.Typeflag != tar.TypeReg {
			t.Errorf("%s: format %v mode %o type %c", h.Name, h.Format, h.Mode, h.Typeflag)
		}
		b, _ := io.ReadAll(tr)
		if string(b) != contents[h.Name] {
			t.Errorf("%s: %d bytes, want %d", h.Name, len(b), len(contents[h.Name]))
		}
		order = append(order, h.Name)
	}
	if want := []string{long, "empty", "tls/cert.pem", "tls/key.pem"}; strings.Join(order, ",") != strings.Join(want, ",") {
		t.Errorf("order %v, want %v", order, want)
	}
}

func TestPackErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"missing", map[string]string{"k": filepath.Join(dir, "nope")}, "no such file"},
		{"directory", map[string]string{"k": dir}, "not a regular file"},
		{"name too long", map[string]string{strings.Repeat("n", 101): "/dev/null"}, "seed file"},
	}
	for _, tt := range tests {
		err := Pack(io.Discard, tt.files)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Pack = %v, want an error with %q", tt.name, err, tt.want)
		}
	}
	big := filepath.Join(dir, "big")
	f, _ := os.Create(big)
	f.Truncate(MaxBytes + 1)
	f.Close()
	if err := Pack(io.Discard, map[string]string{"big": big}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Pack(too large) = %v", err)
	}
}

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "key")
	os.WriteFile(src, []byte("one"), 0o644)
	out := Path(filepath.Join(dir, "seed"), "blog")
	owner := Owner{-1, -1}
	if os.Getuid() == 0 {
		owner = Owner{12345, 23456}
	}
	for _, content := range []string{"one", "two"} {
		os.WriteFile(src, []byte(content), 0o644)
		if err := Write(out, map[string]string{"key": src}, owner); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(out)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("mode %o, want 0600", st.Mode().Perm())
		}
		if owner.UID >= 0 {
			if uid, gid := fileOwner(st); uid != owner.UID || gid != owner.GID {
				t.Errorf("owner %d:%d, want %d:%d", uid, gid, owner.UID, owner.GID)
			}
		}
		f, _ := os.Open(out)
		tr := tar.NewReader(f)
		tr.Next()
		b, _ := io.ReadAll(tr)
		f.Close()
		if string(b) != content {
			t.Errorf("image holds %q, want %q", b, content)
		}
	}
	left, _ := filepath.Glob(filepath.Join(dir, "seed", ".seed-*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	if err := Write(out, map[string]string{"key": filepath.Join(dir, "missing")}, owner); err == nil {
		t.Error("Write with a missing file succeeded")
	}
	left, _ = filepath.Glob(filepath.Join(dir, "seed", ".seed-*"))
	if len(left) != 0 {
		t.Errorf("temporary files left after a failure: %v", left)
	}
}
