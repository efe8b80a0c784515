// Package initramfs writes and reads Linux initramfs images: cpio archives
// in the "newc" format (the only one the kernel unpacks), optionally
// gzip-compressed. It is used to build the example unikernel's root file
// system without shelling out to cpio(1).
package initramfs

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strconv"
	"strings"
)

// File type bits of a cpio entry's mode (the same values as Linux st_mode).
const (
	TypeMask    = 0o170000 // mask of the type bits
	TypeDir     = 0o040000 // directory
	TypeRegular = 0o100000 // regular file
	TypeSymlink = 0o120000 // symbolic link
	TypeChar    = 0o020000 // character device
)

const (
	newcMagic  = "070701"
	headerSize = 110
	trailer    = "TRAILER!!!"
)

// Entry is one member of an archive as read back by Read.
type Entry struct {
	Name  string // path without leading "/"
	Mode  uint32 // type bits | permission bits
	UID   uint32
	GID   uint32
	Mtime uint32
	Nlink uint32
	Major uint32 // rdev major, for device nodes
	Minor uint32 // rdev minor, for device nodes
	Data  []byte // file contents, or the target of a symlink
}

// Writer writes a newc cpio archive. Entries are owned by root with mtime 0,
// so the same input always gives the same bytes. Parent directories of
// every entry are created on demand (mode 0755) unless written before.
// Close must be called to write the trailer.
type Writer struct {
	w      *countWriter
	ino    uint32
	seen   map[string]bool
	closed bool
}

// NewWriter returns a Writer that writes an uncompressed archive to w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: &countWriter{w: w}, ino: 1, seen: map[string]bool{}}
}

// Dir adds a directory with the given permission bits.
func (w *Writer) Dir(name string, perm fs.FileMode) error {
	return w.add(name, TypeDir|uint32(perm.Perm()), 0, 0, nil)
}

// File adds a regular file with the given permission bits and contents.
func (w *Writer) File(name string, perm fs.FileMode, data []byte) error {
	return w.add(name, TypeRegular|uint32(perm.Perm()), 0, 0, data)
}

// Symlink adds a symbolic link name pointing to target.
func (w *Writer) Symlink(name, target string) error {
	if target == "" {
		return fmt.Errorf("symlink %q: empty target", name)
	}
	return w.add(name, TypeSymlink|0o777, 0, 0, []byte(target))
}

// CharDev adds a character device node, e.g. CharDev("dev/console", 0600, 5, 1).
func (w *Writer) CharDev(name string, perm fs.FileMode, major, minor uint32) error {
	return w.add(name, TypeChar|uint32(perm.Perm()), major, minor, nil)
}

// Close writes the trailer entry and pads the archive to a 512-byte
// boundary. It does not close the underlying writer.
func (w *Writer) Close() error {
	if w.closed {
		return errors.New("cpio writer already closed")
	}
	w.closed = true
	if err := w.header(trailer, 0, 0, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("write cpio trailer: %w", err)
	}
	if pad := (512 - w.w.n%512) % 512; pad != 0 {
		if _, err := w.w.Write(make([]byte, pad)); err != nil {
			return fmt.Errorf("pad cpio archive: %w", err)
		}
	}
	return nil
}

// cleanName turns an archive path into the form stored in the archive:
// relative, slash-separated, without "." or ".." elements.
func cleanName(name string) (string, error) {
	n := strings.Trim(name, "/")
	if n == "" || n == "." || path.Clean(n) != n || n == ".." || strings.HasPrefix(n, "../") {
		return "", fmt.Errorf("invalid archive path %q", name)
	}
	return n, nil
}

func (w *Writer) add(name string, mode, major, minor uint32, data []byte) error {
	if w.closed {
		return fmt.Errorf("add %q: cpio writer already closed", name)
	}
	n, err := cleanName(name)
	if err != nil {
		return err
	}
	if n == trailer {
		return fmt.Errorf("add %q: reserved name", name)
	}
	if w.seen[n] {
		return fmt.Errorf("add %q: duplicate entry", n)
	}
	if err := w.parents(n); err != nil {
		return err
	}
	nlink := uint32(1)
	if mode&TypeMask == TypeDir {
		nlink = 2
	}
	w.seen[n] = true
	if err := w.header(n, mode, uint32(len(data)), nlink, w.ino, major, minor); err != nil {
		return fmt.Errorf("add %q: %w", n, err)
	}
	w.ino++
	if _, err := w.w.Write(data); err != nil {
		return fmt.Errorf("add %q: %w", n, err)
	}
	if err := w.pad(); err != nil {
		return fmt.Errorf("add %q: %w", n, err)
	}
	return nil
}

// parents creates the missing parent directories of n.
func (w *Writer) parents(n string) error {
	dir := path.Dir(n)
	if dir == "." || w.seen[dir] {
		return nil
	}
	if err := w.parents(dir); err != nil {
		return err
	}
	w.seen[dir] = true
	if err := w.header(dir, TypeDir|0o755, 0, 2, w.ino, 0, 0); err != nil {
		return fmt.Errorf("add directory %q: %w", dir, err)
	}
	w.ino++
	return nil
}

func (w *Writer) header(name string, mode, size, nlink, ino, major, minor uint32) error {
	var b bytes.Buffer
	b.Grow(headerSize + len(name) + 4)
	b.WriteString(newcMagic)
	for _, v := range []uint32{
		ino, mode, 0 /* uid */, 0 /* gid */, nlink, 0, /* mtime */
		size, 0, 0 /* dev major/minor */, major, minor,
		uint32(len(name) + 1), 0, /* check */
	} {
		fmt.Fprintf(&b, "%08x", v)
	}
	b.WriteString(name)
	b.WriteByte(0)
	if _, err := w.w.Write(b.Bytes()); err != nil {
		return err
	}
	return w.pad()
}

// pad aligns the archive to 4 bytes.
func (w *Writer) pad() error {
	if p := (4 - w.w.n%4) % 4; p != 0 {
		_, err := w.w.Write(make([]byte, p))
		return err
	}
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Read parses a newc cpio archive, gzip-compressed or not, up to its
// trailer, and returns its entries in archive order.
func Read(r io.Reader) ([]Entry, error) {
	br := bufio.NewReader(r)
	if magic, err := br.Peek(2); err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("open gzip stream: %w", err)
		}
		defer zr.Close()
		br = bufio.NewReader(zr)
	}
	cr := &countReader{r: br}
	var out []Entry
	for {
		var hdr [headerSize]byte
		if _, err := io.ReadFull(cr, hdr[:]); err != nil {
			return out, fmt.Errorf("read header at offset %d: %w", cr.n, err)
		}
		if string(hdr[:6]) != newcMagic {
			return out, fmt.Errorf("bad magic %q at offset %d", hdr[:6], cr.n-headerSize)
		}
		var f [13]uint32
		for i := range f {
			v, err := strconv.ParseUint(string(hdr[6+8*i:14+8*i]), 16, 32)
			if err != nil {
				return out, fmt.Errorf("bad header field %d at offset %d: %w", i, cr.n-headerSize, err)
			}
			f[i] = uint32(v)
		}
		nameSize := f[11]
		if nameSize == 0 || nameSize > 4096 {
			return out, fmt.Errorf("bad name size %d", nameSize)
		}
		name := make([]byte, nameSize)
		if _, err := io.ReadFull(cr, name); err != nil {
			return out, fmt.Errorf("read name: %w", err)
		}
		if name[nameSize-1] != 0 {
			return out, fmt.Errorf("name %q not NUL-terminated", name)
		}
		if err := cr.skipPad(); err != nil {
			return out, err
		}
		e := Entry{
			Name: string(name[:nameSize-1]), Mode: f[1], UID: f[2], GID: f[3],
			Nlink: f[4], Mtime: f[5], Major: f[9], Minor: f[10],
		}
		if e.Name == trailer {
			return out, nil
		}
		if f[6] > 0 {
			e.Data = make([]byte, f[6])
			if _, err := io.ReadFull(cr, e.Data); err != nil {
				return out, fmt.Errorf("read data of %q: %w", e.Name, err)
			}
		}
		if err := cr.skipPad(); err != nil {
			return out, err
		}
		out = append(out, e)
	}
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (c *countReader) skipPad() error {
	if p := (4 - c.n%4) % 4; p != 0 {
		if _, err := io.CopyN(io.Discard, c, p); err != nil {
			return fmt.Errorf("read padding: %w", err)
		}
	}
	return nil
}
