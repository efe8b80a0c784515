package initramfs

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
)

// Options describes the root file system of a unikernel image.
type Options struct {
	// Init is the contents of /init, the static program the kernel runs.
	Init []byte
	// Content, if not nil, is copied under WebRoot (directories, regular
	// files and symlinks; anything else is an error).
	Content fs.FS
	// WebRoot is where Content goes in the image; default "www".
	WebRoot string
	// Gzip compresses the archive (best speed). The default is an
	// uncompressed archive, which the kernel unpacks faster (docs/boot.md).
	Gzip bool
}

// Build writes a complete initramfs to w: /init, /dev/console (char 5:1,
// which the kernel opens as init's stdin/stdout/stderr), /dev/kmsg, /proc (mount
// point for /proc/cmdline), and the content under /WebRoot.
func Build(w io.Writer, opts Options) error {
	if len(opts.Init) == 0 {
		return errors.New("build initramfs: no /init program")
	}
	root := opts.WebRoot
	if root == "" {
		root = "www"
	}
	out := w
	var zw *gzip.Writer
	if opts.Gzip {
		var err error
		zw, err = gzip.NewWriterLevel(w, gzip.BestSpeed)
		if err != nil {
			return fmt.Errorf("build initramfs: %w", err)
		}
		out = zw
	}
	cw := NewWriter(out)
	steps := []func() error{
		func() error { return cw.Dir("dev", 0o755) },
		func() error { return cw.CharDev("dev/console", 0o600, 5, 1) },
		// /dev/kmsg lets /init mark its own progress in the kernel log
		// (jitsu.debug=1, for boot profiling).
		func() error { return cw.CharDev("dev/kmsg", 0o600, 1, 11) },
		func() error { return cw.Dir("proc", 0o555) },
		func() error { return cw.File("init", 0o755, opts.Init) },
		func() error { return cw.Dir(root, 0o755) },
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return fmt.Errorf("build initramfs: %w", err)
		}
	}
	if opts.Content != nil {
		if err := addTree(cw, opts.Content, root); err != nil {
			return fmt.Errorf("build initramfs: %w", err)
		}
	}
	if err := cw.Close(); err != nil {
		return fmt.Errorf("build initramfs: %w", err)
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			return fmt.Errorf("build initramfs: compress: %w", err)
		}
	}
	return nil
}

// addTree copies fsys under prefix, in lexical order.
func addTree(cw *Writer, fsys fs.FS, prefix string) error {
	return fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("read content %q: %w", p, err)
		}
		if p == "." {
			return nil
		}
		name := path.Join(prefix, p)
		info, err := d.Info()
		if err != nil {
			return fmt.Errorf("stat content %q: %w", p, err)
		}
		switch {
		case d.IsDir():
			return cw.Dir(name, info.Mode().Perm()|0o555)
		case info.Mode().IsRegular():
			data, err := fs.ReadFile(fsys, p)
			if err != nil {
				return fmt.Errorf("read content %q: %w", p, err)
			}
			return cw.File(name, info.Mode().Perm()|0o444, data)
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := fs.ReadLink(fsys, p)
			if err != nil {
				return fmt.Errorf("read link %q: %w", p, err)
			}
			return cw.Symlink(name, target)
		default:
			return fmt.Errorf("content %q: unsupported file type %v", p, info.Mode().Type())
		}
	})
}
