// Command mkinitramfs writes the initramfs of a jitsu example unikernel:
// a newc cpio archive holding /init, /dev/console, /proc and a directory of
// content served under /www.
//
//	go run ./examples/unikernel/mkinitramfs -init PATH -content DIR -o OUT
//
// The archive is uncompressed unless -gzip is given (the kernel unpacks an
// uncompressed archive faster; see docs/boot.md). OUT is written atomically
// and made world-readable (libvirt's QEMU reads it as libvirt-qemu).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/jitsu-unikernel/jitsu/examples/unikernel/initramfs"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "mkinitramfs:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fl := flag.NewFlagSet("mkinitramfs", flag.ContinueOnError)
	initPath := fl.String("init", "", "static program to install as /init (required)")
	content := fl.String("content", "", "directory copied to /www (optional)")
	out := fl.String("o", "", "output file (required)")
	gz := fl.Bool("gzip", false, "gzip-compress the archive")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if *initPath == "" || *out == "" || fl.NArg() != 0 {
		fl.Usage()
		return fmt.Errorf("need -init and -o, and no positional arguments")
	}
	prog, err := os.ReadFile(*initPath)
	if err != nil {
		return fmt.Errorf("read init program: %w", err)
	}
	opts := initramfs.Options{Init: prog, Gzip: *gz}
	if *content != "" {
		st, err := os.Stat(*content)
		if err != nil {
			return fmt.Errorf("content: %w", err)
		}
		if !st.IsDir() {
			return fmt.Errorf("content %q is not a directory", *content)
		}
		opts.Content = os.DirFS(*content)
	}
	tmp, err := os.CreateTemp(filepath.Dir(*out), ".mkinitramfs-*")
	if err != nil {
		return fmt.Errorf("create output: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if err := initramfs.Build(tmp, opts); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("chmod output: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	if err := os.Rename(tmp.Name(), *out); err != nil {
		return fmt.Errorf("install output: %w", err)
	}
	return nil
}
