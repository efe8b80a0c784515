package perurl

import (
	"io/fs"
	"path"
	"testing/fstest"
)

// ImageFiles returns the web root of a page's unikernel: the page's file
// alone, at its path, plus (unless the file is the top-level index.html)
// an index.html symlink to it, so that the image serves it at / too.
func ImageFiles(p Page, content []byte) fs.FS {
	m := fstest.MapFS{
		p.Path: {Data: content, Mode: 0o644},
	}
	if p.Path != "index.html" {
		m["index.html"] = &fstest.MapFile{Data: []byte(p.Path), Mode: fs.ModeSymlink | 0o777}
	}
	return m
}

// ImageName returns the initramfs file name of a page: LABEL.cpio.
func ImageName(p Page) string { return path.Base(p.Label) + ".cpio" }
