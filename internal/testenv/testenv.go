// Package testenv sets up the root-tier test environment: a private network
// namespace with a bridge, and a libvirtd (with virtlogd) running inside it,
// so that VMs booted by tests and benchmarks reach nothing outside the
// namespace.
//
// Only one libvirtd can run per machine, so StartLibvirt first takes the
// exclusive lock LockFile and holds it until Close. The core (StartLibvirt,
// Env) works with a plain cleanup stack and is used by tools such as
// tools/bootfloor; Libvirt, RequireRoot and ExampleImage wrap it for tests.
package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
	lv "libvirt.org/go/libvirt"
)

// Fixed names and addresses of the environment.
const (
	// LockFile serialises every libvirtd started for tests on this machine.
	LockFile = "/run/jitsu-libvirtd.lock"
	// URI is the libvirt URI of the libvirtd started by StartLibvirt.
	URI = "qemu:///system"
	// Bridge is the bridge created in the namespace.
	Bridge = "br-jitsu"
	// BridgeMAC is the bridge's fixed MAC address.
	BridgeMAC = "02:6a:69:74:73:01"
	// GatewayCIDR is the bridge's address.
	GatewayCIDR = "10.213.0.1/24"
	// ImageDir holds the example unikernel built by `make image`.
	ImageDir = "/var/lib/jitsu/images/example"
	// MultibootKernel is the multiboot kernel that only prints JITSU-READY.
	MultibootKernel = "/var/lib/jitsu/images/multiboot/hello.elf"

	metadataNS = "https://jitsu-unikernel.github.io/xmlns/1"
)

// Gateway is the bridge's address without the prefix length.
var Gateway = net.IPv4(10, 213, 0, 1)

// Stack is a LIFO stack of cleanup functions.
type Stack struct{ fns []func() error }

// Push adds f; Run calls the functions in reverse order.
func (s *Stack) Push(f func() error) { s.fns = append(s.fns, f) }

// Run calls every pushed function, last first, and returns their errors.
func (s *Stack) Run() error {
	var errs []error
	for i := len(s.fns) - 1; i >= 0; i-- {
		if err := s.fns[i](); err != nil {
			errs = append(errs, err)
		}
	}
	s.fns = nil
	return errors.Join(errs...)
}

// Env is a running environment: namespace, bridge, libvirtd.
type Env struct {
	// NS is the network namespace's name (ip netns).
	NS string
	// URI is the libvirt connection URI.
	URI string
	// Bridge is the bridge guests attach to.
	Bridge string
	// Logf receives progress messages.
	Logf        func(format string, args ...any)
	stack       Stack
	libvirtdPid int
}

// Prerequisites returns an error naming what the environment needs but
// cannot find: root, binaries.
func Prerequisites() error {
	var errs []error
	if os.Geteuid() != 0 {
		errs = append(errs, errors.New("not running as root"))
	}
	for _, bin := range []string{"ip", "libvirtd", "virtlogd", "qemu-system-x86_64"} {
		if _, err := exec.LookPath(bin); err != nil {
			errs = append(errs, fmt.Errorf("%s not found (apt-get install libvirt-daemon-system qemu-system-x86 iproute2)", bin))
		}
	}
	return errors.Join(errs...)
}

// StartLibvirt takes the lock, creates a namespace with the bridge and
// starts virtlogd and libvirtd inside it. On error it undoes what it did.
// logf may be nil.
func StartLibvirt(ctx context.Context, logf func(string, ...any)) (_ *Env, err error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if err := Prerequisites(); err != nil {
		return nil, err
	}
	e := &Env{NS: fmt.Sprintf("jitsu-hv-%d", os.Getpid()), URI: URI, Bridge: Bridge, Logf: logf}
	defer func() {
		if err != nil {
			if cerr := e.Close(); cerr != nil {
				logf("cleanup after failed start: %v", cerr)
			}
		}
	}()
	if err := e.lock(ctx); err != nil {
		return nil, err
	}
	if pid := findProcess("libvirtd"); pid != 0 {
		return nil, fmt.Errorf("another libvirtd (pid %d) runs although %s was free: stop it first", pid, LockFile)
	}
	if err := e.netns(ctx); err != nil {
		return nil, err
	}
	r, err := startReaper()
	if err != nil {
		logf("cannot become child subreaper (%v): QEMU exits will be seen late", err)
	} else {
		e.stack.Push(r.Close)
	}
	if err := e.daemons(ctx); err != nil {
		return nil, err
	}
	return e, nil
}

// Close destroys jitsu's domains, stops the daemons it started, deletes the
// namespace and releases the lock. It is safe to call more than once.
func (e *Env) Close() error { return e.stack.Run() }

func (e *Env) lock(ctx context.Context) error {
	f, err := os.OpenFile(LockFile, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("open lock %s: %w", LockFile, err)
	}
	logged := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return fmt.Errorf("lock %s: %w", LockFile, err)
		}
		if !logged {
			e.Logf("waiting for %s (another libvirtd user holds it)", LockFile)
			logged = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return fmt.Errorf("wait for lock %s: %w", LockFile, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
	e.stack.Push(func() error {
		// Closing the file releases the flock.
		return f.Close()
	})
	return nil
}

func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (e *Env) netns(ctx context.Context) error {
	if err := run(ctx, "ip", "netns", "add", e.NS); err != nil {
		return err
	}
	e.stack.Push(func() error {
		e.killNamespaceProcesses()
		return run(context.Background(), "ip", "netns", "del", e.NS)
	})
	for _, args := range [][]string{
		{"-n", e.NS, "link", "set", "lo", "up"},
		// A fixed MAC: a bridge without one takes its lowest port's MAC
		// and changes it as taps come and go, which flushes the
		// neighbour entries on it (docs/boot.md).
		{"-n", e.NS, "link", "add", e.Bridge, "address", BridgeMAC, "type", "bridge", "forward_delay", "0", "stp_state", "0"},
		{"-n", e.NS, "addr", "add", GatewayCIDR, "dev", e.Bridge},
		{"-n", e.NS, "link", "set", e.Bridge, "up"},
	} {
		if err := run(ctx, "ip", args...); err != nil {
			return err
		}
	}
	e.Logf("namespace %s with bridge %s %s", e.NS, e.Bridge, GatewayCIDR)
	return nil
}

// killNamespaceProcesses kills what is left in the namespace (a QEMU whose
// domain could not be destroyed), so that deleting it frees everything.
func (e *Env) killNamespaceProcesses() {
	out, err := exec.Command("ip", "netns", "pids", e.NS).Output()
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil {
			e.Logf("killing leftover process %d (%s) in %s", pid, comm(pid), e.NS)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func (e *Env) daemons(ctx context.Context) error {
	// A virtlogd left by an earlier lock holder may be on its way out:
	// reuse it only if it serves its socket.
	pid := findProcess("virtlogd")
	for i := 0; pid != 0 && i < 60 && !exists(virtlogdSock); i++ {
		time.Sleep(50 * time.Millisecond)
		pid = findProcess("virtlogd")
	}
	if pid != 0 && exists(virtlogdSock) {
		e.Logf("reusing running virtlogd (pid %d)", pid)
	} else {
		if pid != 0 {
			return fmt.Errorf("a virtlogd (pid %d) runs without its socket %s", pid, virtlogdSock)
		}
		if err := run(ctx, "ip", "netns", "exec", e.NS, "virtlogd", "-d"); err != nil {
			return err
		}
		pid, err := waitPidFile(ctx, "/run/virtlogd.pid", "virtlogd")
		if err != nil {
			return err
		}
		e.stack.Push(func() error { return stop(pid, "virtlogd") })
	}
	e.stack.Push(e.StopLibvirtd)
	if err := e.StartLibvirtd(ctx); err != nil {
		return err
	}
	e.stack.Push(e.destroyDomains)
	return nil
}

// StartLibvirtd starts libvirtd inside the namespace and waits until it
// accepts connections. StartLibvirt has already done it once; tests use it
// with StopLibvirtd to restart the daemon.
func (e *Env) StartLibvirtd(ctx context.Context) error {
	if err := run(ctx, "ip", "netns", "exec", e.NS, "libvirtd", "-d"); err != nil {
		return err
	}
	pid, err := waitPidFile(ctx, "/run/libvirtd.pid", "libvirtd")
	if err != nil {
		return err
	}
	e.libvirtdPid = pid
	if err := e.waitLibvirt(ctx); err != nil {
		return err
	}
	e.Logf("libvirtd pid %d in %s", pid, e.NS)
	return nil
}

// StopLibvirtd stops the libvirtd started by StartLibvirtd; its QEMU
// processes keep running, as with any libvirtd restart.
func (e *Env) StopLibvirtd() error {
	if e.libvirtdPid == 0 {
		return nil
	}
	err := stop(e.libvirtdPid, "libvirtd")
	e.libvirtdPid = 0
	return err
}

// waitLibvirt waits until libvirtd accepts connections.
func (e *Env) waitLibvirt(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		c, err := lv.NewConnect(e.URI)
		if err == nil {
			_, _ = c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for libvirtd at %s: %w (last: %v)", e.URI, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// destroyDomains destroys and undefines every domain carrying jitsu's
// metadata, managed save images included.
func (e *Env) destroyDomains() error {
	c, err := lv.NewConnect(e.URI)
	if err != nil {
		return fmt.Errorf("connect to clean up domains: %w", err)
	}
	defer c.Close()
	doms, err := c.ListAllDomains(0)
	if err != nil {
		return fmt.Errorf("list domains to clean up: %w", err)
	}
	var errs []error
	for i := range doms {
		d := &doms[i]
		name, _ := d.GetName()
		if _, err := d.GetMetadata(lv.DOMAIN_METADATA_ELEMENT, metadataNS, lv.DOMAIN_AFFECT_CURRENT); err != nil {
			_ = d.Free()
			continue // foreign
		}
		if active, _ := d.IsActive(); active {
			if err := d.Destroy(); err != nil {
				errs = append(errs, fmt.Errorf("destroy %q: %w", name, err))
			}
		}
		if persistent, _ := d.IsPersistent(); persistent {
			if err := d.UndefineFlags(lv.DOMAIN_UNDEFINE_MANAGED_SAVE); err != nil {
				errs = append(errs, fmt.Errorf("undefine %q: %w", name, err))
			}
		}
		_ = d.Free()
	}
	return errors.Join(errs...)
}

const virtlogdSock = "/run/libvirt/virtlogd-sock"

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// comm returns the command name of pid, or "".
func comm(pid int) string {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// findProcess returns the pid of a process called name, or 0.
func findProcess(name string) int {
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		if comm(pid) == name {
			return pid
		}
	}
	return 0
}

// waitPidFile waits for a daemon's pid file naming a live process called
// name.
func waitPidFile(ctx context.Context, path, name string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		if b, err := os.ReadFile(path); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && comm(pid) == name {
				return pid, nil
			}
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("wait for %s to write %s: %w", name, path, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stop terminates pid if it is still the process called name, and reaps
// it if it is this process's (adopted) child.
func stop(pid int, name string) error {
	if comm(pid) != name {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	me := os.Getpid()
	for i := 0; i < 200; i++ {
		if zombieChildOf(pid, me) {
			var ws syscall.WaitStatus
			_, _ = syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
		}
		if comm(pid) != name {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill %s (pid %d): %w", name, pid, err)
	}
	return nil
}

// Command returns a command that runs inside the namespace.
func (e *Env) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", e.NS, name}, args...)...)
}

// Do runs fn on an OS thread switched into the namespace. Sockets fn
// creates belong to the namespace and stay usable from any goroutine.
func (e *Env) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("get current netns: %w", err)
			return // the locked thread exits with the goroutine
		}
		defer orig.Close()
		target, err := netns.GetFromName(e.NS)
		if err != nil {
			errc <- fmt.Errorf("open netns %s: %w", e.NS, err)
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", e.NS, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}

// DialContext dials from inside the namespace.
func (e *Env) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := e.Do(func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// HTTPClient returns a client whose connections start inside the namespace.
func (e *Env) HTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: e.DialContext, DisableKeepAlives: true}}
}

// PinNeighbour adds a permanent neighbour entry on the bridge, so that the
// first packet to ip needs no ARP resolution.
func (e *Env) PinNeighbour(ctx context.Context, ip net.IP, mac net.HardwareAddr) error {
	return run(ctx, "ip", "-n", e.NS, "neigh", "replace", ip.String(), "lladdr", mac.String(), "dev", e.Bridge, "nud", "permanent")
}

// QEMUPid returns the pid of the QEMU process running domain name.
func QEMUPid(name string) (int, error) {
	path := filepath.Join("/run/libvirt/qemu", name+".pid")
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read QEMU pid of %q: %w", name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", path, err)
	}
	return pid, nil
}

// Image is the example unikernel as installed by `make image`.
type Image struct {
	// Kernel is the bzImage.
	Kernel string
	// VMLinux is the uncompressed kernel with a PVH entry point, "" if
	// absent; QEMU boots it without decompression.
	VMLinux string
	// Initrd is the initramfs holding /init.
	Initrd string
	// Cmdline is the image's recommended command line (ImageDir/cmdline),
	// without ip=; "console=ttyS0" if the file is absent.
	Cmdline string
}

// FindExampleImage returns the installed example image (ImageDir/bzImage,
// the uncompressed initrd.cpio or else initrd.cpio.gz, vmlinux and cmdline
// when present) or an error saying how to build it.
//
// The environment variable JITSU_EXAMPLE_IMAGE_DIR overrides ImageDir.
func FindExampleImage() (Image, error) {
	dir := ImageDir
	if d := os.Getenv("JITSU_EXAMPLE_IMAGE_DIR"); d != "" {
		dir = d
	}
	img := Image{Kernel: filepath.Join(dir, "bzImage"), Cmdline: "console=ttyS0"}
	if _, err := os.Stat(img.Kernel); err != nil {
		return Image{}, fmt.Errorf("example image missing (%w): run make image", err)
	}
	if p := filepath.Join(dir, "vmlinux"); exists(p) {
		img.VMLinux = p
	}
	if b, err := os.ReadFile(filepath.Join(dir, "cmdline")); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		img.Cmdline = strings.TrimSpace(string(b))
	}
	for _, name := range []string{"initrd.cpio", "initrd.cpio.gz"} {
		if p := filepath.Join(dir, name); exists(p) {
			img.Initrd = p
			return img, nil
		}
	}
	return Image{}, fmt.Errorf("example image missing (no initrd.cpio.gz in %s): run make image", dir)
}
