// Command build cuts a static site into one unikernel per file (the
// experiment "A unikernel experiment: A VM for every URL"): for every file
// of -site it writes an initramfs holding only that file (served at / and
// at its path) under -images, gives it a DNS name in -zone and an address
// in -net, rewrites the links of the site's pages to those names, and
// writes a jitsu configuration with one [[unikernel]] per file.
//
//	go run ./examples/vm-per-url/build -site examples/vm-per-url/site -out OUT \
//	    -zone example.test. -net 10.213.0.0/24 [-listen 127.0.0.1:5353,10.214.0.1:53]
//
// It writes OUT/jitsu.toml, OUT/site/ (the rewritten site, for reference),
// OUT/urls.tsv (label, name, address, URL, path: one line per file) and
// IMAGES/LABEL.cpio. The naming scheme is described in package perurl.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jitsu-unikernel/jitsu/examples/unikernel/initramfs"
	"github.com/jitsu-unikernel/jitsu/examples/vm-per-url/perurl"
)

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "vm-per-url build:", err)
		os.Exit(1)
	}
}

// options are the command's flags.
type options struct {
	site, out, images, zone, kernel, initPath, memory, domainType, bridge, control string
	network, gateway, params                                                       string
	listen                                                                         string
	first                                                                          int
	idle                                                                           time.Duration
}

func run(ctx context.Context, args []string) error {
	var o options
	fl := flag.NewFlagSet("build", flag.ContinueOnError)
	fl.StringVar(&o.site, "site", "examples/vm-per-url/site", "directory of the static site")
	fl.StringVar(&o.out, "out", "", "output directory for jitsu.toml, urls.tsv and the rewritten site (required)")
	fl.StringVar(&o.images, "images", "/var/lib/jitsu/images/vm-per-url", "directory of the initramfs files (readable by libvirt-qemu)")
	fl.StringVar(&o.zone, "zone", "example.test.", "DNS zone of the generated names")
	fl.StringVar(&o.network, "net", "10.213.0.0/24", "subnet of the unikernels")
	fl.StringVar(&o.gateway, "gateway", "", "host address on the bridge (default: the subnet's first address)")
	fl.IntVar(&o.first, "first", 10, "offset in -net of the first address handed out")
	fl.StringVar(&o.listen, "listen", "127.0.0.1:5353", "comma-separated DNS listen addresses for the config")
	fl.StringVar(&o.kernel, "kernel", "/var/lib/jitsu/images/example/vmlinux", "kernel every unikernel boots (make image)")
	fl.StringVar(&o.params, "params", "", "kernel parameters before ip= (default: the example image's cmdline file, else console=ttyS0)")
	fl.StringVar(&o.initPath, "init", "", "static /init program (default: built from ./examples/unikernel/init)")
	fl.StringVar(&o.memory, "memory", "64MiB", "guest memory of each unikernel")
	fl.DurationVar(&o.idle, "idle", 30*time.Second, "idle timeout of each unikernel")
	fl.StringVar(&o.domainType, "domain-type", "qemu", "libvirt domain type (kvm or qemu)")
	fl.StringVar(&o.bridge, "bridge", "br-jitsu", "bridge of the unikernels")
	fl.StringVar(&o.control, "control", "", "jitsu control socket (default: jitsu's)")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if o.out == "" || fl.NArg() != 0 {
		fl.Usage()
		return errors.New("need -out, and no positional arguments")
	}
	netw, err := netip.ParsePrefix(o.network)
	if err != nil {
		return fmt.Errorf("parse -net: %w", err)
	}
	gw := netw.Masked().Addr().Next()
	if o.gateway != "" {
		if gw, err = netip.ParseAddr(o.gateway); err != nil {
			return fmt.Errorf("parse -gateway: %w", err)
		}
	}
	paths, err := siteFiles(o.site)
	if err != nil {
		return err
	}
	pages, err := perurl.Plan(paths, perurl.PlanOptions{Zone: o.zone, Network: netw, Gateway: gw, First: o.first})
	if err != nil {
		return err
	}
	initProg, err := initProgram(ctx, o.initPath)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.images, 0o755); err != nil {
		return fmt.Errorf("create images dir: %w", err)
	}
	links := perurl.NewLinks(pages)
	for i, p := range pages {
		with, err := buildPage(o, links, p, initProg)
		if err != nil {
			return err
		}
		pages[i].With = with // its summon group: what it loads
	}
	initrd := func(p perurl.Page) string { return filepath.Join(o.images, perurl.ImageName(p)) }
	if err := writeConfig(o, netip.PrefixFrom(gw, netw.Bits()), pages, initrd); err != nil {
		return err
	}
	if err := writeURLs(filepath.Join(o.out, "urls.tsv"), pages); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FILE\tUNIKERNEL\tADDRESS\tURL")
	for _, p := range pages {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Path, p.Label, p.IP, p.URL())
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("print table: %w", err)
	}
	fmt.Printf("%d unikernels: config %s, images in %s\n", len(pages), filepath.Join(o.out, "jitsu.toml"), o.images)
	return nil
}

// siteFiles lists the regular files under dir, as slash paths.
func siteFiles(dir string) ([]string, error) {
	var paths []string
	err := fs.WalkDir(os.DirFS(dir), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && !strings.HasPrefix(d.Name(), ".") {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list site %s: %w", dir, err)
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("site %s has no files", dir)
	}
	return paths, nil
}

// initProgram reads the /init program, building it when path is empty.
func initProgram(ctx context.Context, path string) ([]byte, error) {
	if path == "" {
		tmp, err := os.MkdirTemp("", "vm-per-url-init-")
		if err != nil {
			return nil, fmt.Errorf("build init: %w", err)
		}
		defer os.RemoveAll(tmp)
		path = filepath.Join(tmp, "init")
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", path, "./examples/unikernel/init")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("build init (go build ./examples/unikernel/init, from the repository root): %w", err)
		}
	}
	prog, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read init program: %w", err)
	}
	return prog, nil
}

// buildPage rewrites one file, copies it into OUT/site and writes its
// initramfs. It returns the page's summon group (perurl.Links.Group).
func buildPage(o options, links perurl.Links, p perurl.Page, initProg []byte) ([]string, error) {
	src, err := os.ReadFile(filepath.Join(o.site, filepath.FromSlash(p.Path)))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p.Path, err)
	}
	content, missing, err := links.Rewrite(src, p.Path)
	if err != nil {
		return nil, err
	}
	for _, m := range missing {
		fmt.Fprintf(os.Stderr, "warning: %s links to %q, which is not in the site; left as it is\n", p.Path, m)
	}
	dst := filepath.Join(o.out, "site", filepath.FromSlash(p.Path))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return nil, fmt.Errorf("write rewritten %s: %w", p.Path, err)
	}
	if err := os.WriteFile(dst, content, 0o644); err != nil {
		return nil, fmt.Errorf("write rewritten %s: %w", p.Path, err)
	}
	err = writeAtomic(filepath.Join(o.images, perurl.ImageName(p)), func(f *os.File) error {
		return initramfs.Build(f, initramfs.Options{Init: initProg, Content: perurl.ImageFiles(p, content)})
	})
	if err != nil {
		return nil, err
	}
	return links.Group(content, p), nil
}

// writeConfig writes OUT/jitsu.toml.
func writeConfig(o options, gw netip.Prefix, pages []perurl.Page, initrd func(perurl.Page) string) error {
	var listen []string
	for _, a := range strings.Split(o.listen, ",") {
		if a = strings.TrimSpace(a); a != "" {
			listen = append(listen, a)
		}
	}
	co := perurl.ConfigOptions{
		Zone: o.zone, Listen: listen, Bridge: o.bridge, Gateway: gw, DomainType: o.domainType,
		Kernel: o.kernel, Params: o.params, Memory: o.memory, IdleTimeout: o.idle, ControlSocket: o.control, Initrd: initrd,
	}
	if co.Params == "" {
		// The example image's recommended parameters (docs/boot.md).
		if b, err := os.ReadFile(filepath.Join(filepath.Dir(o.kernel), "cmdline")); err == nil {
			co.Params = strings.TrimSpace(string(b))
		}
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", o.out, err)
	}
	return writeAtomic(filepath.Join(o.out, "jitsu.toml"), func(f *os.File) error {
		return perurl.WriteConfig(f, co, pages)
	})
}

// writeURLs writes one tab-separated line per page: label, DNS name,
// address, URL, path.
func writeURLs(path string, pages []perurl.Page) error {
	return writeAtomic(path, func(f *os.File) error {
		for _, p := range pages {
			if _, err := fmt.Fprintf(f, "%s\t%s\t%s\t%s\t%s\n", p.Label, p.FQDN(), p.IP, p.URL(), p.Path); err != nil {
				return err
			}
		}
		return nil
	})
}

// writeAtomic writes path through a world-readable temp file renamed in
// place (libvirt's QEMU reads the images as libvirt-qemu).
func writeAtomic(path string, write func(*os.File) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".build-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if err := write(tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
