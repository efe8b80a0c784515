// Package sandbox is jitsu's one implementation of "a private libvirtd in a
// network namespace under a lock": a namespace with a bridge (and, on
// request, a client namespace linked to it by a veth pair), and a libvirtd
// (with virtlogd) running inside it, so that VMs booted by tests,
// benchmarks and demos reach nothing outside the namespaces.
//
// Only one libvirtd can run per machine, so Start first takes the exclusive
// lock LockFile and holds it until Close. Whatever a sandbox creates is
// recorded in a state file under StateDir; a sandbox whose process died
// without cleaning up (SIGKILL) is removed by the next Start, or by Clean.
//
// The jitsu-sandbox command (tools/sandbox) exposes it to scripts, and
// internal/testenv wraps it for tests; this package does not import testing.
package sandbox

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
	// ClientHostCIDR is the host end of the client namespace's veth pair.
	ClientHostCIDR = "10.214.0.1/24"
	// ClientCIDR is the client end of the veth pair.
	ClientCIDR = "10.214.0.2/24"
	// VMNet is the guests' network behind the bridge.
	VMNet = "10.213.0.0/24"
	// StateDir holds one state file per running sandbox.
	StateDir = "/run/jitsu-sandbox"
	// ImageDir holds the example unikernel built by `make image`.
	ImageDir = "/var/lib/jitsu/images/example"
	// MultibootKernel is the multiboot kernel that only prints JITSU-READY.
	MultibootKernel = "/var/lib/jitsu/images/multiboot/hello.elf"

	metadataNS = "https://jitsu-unikernel.github.io/xmlns/1"
)

// Gateway is the bridge's address without the prefix length.
var Gateway = net.IPv4(10, 213, 0, 1)

// Host veth names of the client link.
const (
	hostVeth   = "jsb-host0"
	clientVeth = "jsb-client0"
)

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

// Options configure Start.
type Options struct {
	// NS names the host namespace (bridge, libvirtd); "" means
	// "jitsu-sb-PID".
	NS string
	// ClientNS, if not "", also creates a client namespace linked to the
	// host namespace by a veth pair (ClientCIDR to ClientHostCIDR), with a
	// route to VMNet and /etc/netns/ClientNS/resolv.conf naming the host
	// end as its name server.
	ClientNS string
	// Logf receives progress messages; nil discards them.
	Logf func(format string, args ...any)
}

// Env is a running environment: namespaces, bridge, libvirtd.
type Env struct {
	// NS is the host network namespace's name (ip netns).
	NS string
	// ClientNS is the client namespace's name, "" if there is none.
	ClientNS string
	// URI is the libvirt connection URI.
	URI string
	// Bridge is the bridge guests attach to.
	Bridge string
	// Logf receives progress messages.
	Logf        func(format string, args ...any)
	stack       Stack
	libvirtdPid int
	state       state
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

// Start takes the lock (waiting for it until ctx ends), removes what a
// dead sandbox left, creates the namespaces with the bridge and starts
// virtlogd and libvirtd inside the host namespace. On error it undoes what
// it did.
func Start(ctx context.Context, o Options) (_ *Env, err error) {
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.NS == "" {
		o.NS = fmt.Sprintf("jitsu-sb-%d", os.Getpid())
	}
	if err := Prerequisites(); err != nil {
		return nil, err
	}
	e := &Env{NS: o.NS, ClientNS: o.ClientNS, URI: URI, Bridge: Bridge, Logf: o.Logf}
	defer func() {
		if err != nil {
			if cerr := e.Close(); cerr != nil {
				o.Logf("cleanup after failed start: %v", cerr)
			}
		}
	}()
	if err := e.lock(ctx); err != nil {
		return nil, err
	}
	// Holding the lock, every state file left is a dead sandbox's.
	if err := cleanStale(e.Logf); err != nil {
		return nil, err
	}
	if err := fixKVMAccess(e.Logf); err != nil {
		return nil, err
	}
	if pid := findProcess("libvirtd"); pid != 0 {
		return nil, fmt.Errorf("another libvirtd (pid %d, not a jitsu sandbox's) runs although %s was free: stop it first", pid, LockFile)
	}
	if err := e.saveState(); err != nil {
		return nil, err
	}
	if err := e.netns(ctx); err != nil {
		return nil, err
	}
	if e.ClientNS != "" {
		if err := e.clientNS(ctx); err != nil {
			return nil, err
		}
	}
	r, err := startReaper()
	if err != nil {
		e.Logf("cannot become child subreaper (%v): QEMU exits will be seen late", err)
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

// StartLibvirt is Start with a namespace named after the process and no
// client namespace.
func StartLibvirt(ctx context.Context, logf func(string, ...any)) (*Env, error) {
	return Start(ctx, Options{Logf: logf})
}

// addNS creates the named namespace, records it, and pushes its removal
// (with every process left inside).
func (e *Env) addNS(ctx context.Context, name string) error {
	e.state.Namespaces = append(e.state.Namespaces, name)
	if err := e.saveState(); err != nil {
		return err
	}
	if err := run(ctx, "ip", "netns", "add", name); err != nil {
		return err
	}
	e.stack.Push(func() error { return removeNS(name, e.Logf) })
	return run(ctx, "ip", "-n", name, "link", "set", "lo", "up")
}

// removeNS kills what is left in the namespace (a QEMU whose domain could
// not be destroyed, a demo's client) and deletes it.
func removeNS(name string, logf func(string, ...any)) error {
	if !exists(filepath.Join("/run/netns", name)) {
		return nil
	}
	killNamespaceProcesses(name, logf)
	return run(context.Background(), "ip", "netns", "del", name)
}

func (e *Env) netns(ctx context.Context) error {
	if err := e.addNS(ctx, e.NS); err != nil {
		return err
	}
	for _, args := range [][]string{
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

// clientNS creates the client namespace and links it to the host
// namespace, with a route to the guests and a resolv.conf naming the host.
func (e *Env) clientNS(ctx context.Context) error {
	if err := e.addNS(ctx, e.ClientNS); err != nil {
		return err
	}
	hostAddr, _, _ := strings.Cut(ClientHostCIDR, "/")
	for _, args := range [][]string{
		{"-n", e.NS, "link", "add", hostVeth, "type", "veth", "peer", "name", clientVeth, "netns", e.ClientNS},
		{"-n", e.NS, "addr", "add", ClientHostCIDR, "dev", hostVeth},
		{"-n", e.NS, "link", "set", hostVeth, "up"},
		{"-n", e.ClientNS, "addr", "add", ClientCIDR, "dev", clientVeth},
		{"-n", e.ClientNS, "link", "set", clientVeth, "up"},
		{"-n", e.ClientNS, "route", "add", VMNet, "via", hostAddr},
	} {
		if err := run(ctx, "ip", args...); err != nil {
			return err
		}
	}
	if err := run(ctx, "ip", "netns", "exec", e.NS, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"); err != nil {
		return err
	}
	// `ip netns exec CLIENT ...` bind-mounts this over /etc/resolv.conf.
	etc := filepath.Join("/etc/netns", e.ClientNS)
	e.state.EtcDirs = append(e.state.EtcDirs, etc)
	if err := e.saveState(); err != nil {
		return err
	}
	if err := os.MkdirAll(etc, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", etc, err)
	}
	e.stack.Push(func() error { return removeEtc(etc) })
	conf := fmt.Sprintf("nameserver %s\noptions timeout:2 attempts:2\n", hostAddr)
	if err := os.WriteFile(filepath.Join(etc, "resolv.conf"), []byte(conf), 0o644); err != nil {
		return fmt.Errorf("write resolv.conf of %s: %w", e.ClientNS, err)
	}
	e.Logf("client namespace %s (%s) linked to %s (%s)", e.ClientNS, ClientCIDR, e.NS, ClientHostCIDR)
	return nil
}

// removeEtc removes /etc/netns/NAME, and /etc/netns once empty.
func removeEtc(dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	_ = os.Remove(filepath.Dir(dir)) // only if empty
	return nil
}

// killNamespaceProcesses kills what is left in the namespace, so that
// deleting it frees everything.
func killNamespaceProcesses(ns string, logf func(string, ...any)) {
	out, err := exec.Command("ip", "netns", "pids", ns).Output()
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil {
			if pid == os.Getpid() {
				// A thread of ours entered the namespace (a test that ran
				// code in it): never kill the caller.
				logf("this process (%d) is listed in %s: not killed", pid, ns)
				continue
			}
			logf("killing leftover process %d (%s) in %s", pid, comm(pid), ns)
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
		e.state.Daemons = append(e.state.Daemons, daemon{Pid: pid, Name: "virtlogd"})
		if err := e.saveState(); err != nil {
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
	e.state.Daemons = append(e.state.Daemons, daemon{Pid: pid, Name: "libvirtd"})
	if err := e.saveState(); err != nil {
		return err
	}
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

// destroyDomains destroys every running domain of the sandbox's libvirtd,
// and undefines those carrying jitsu's metadata, managed save images
// included.
func (e *Env) destroyDomains() error { return destroyDomains(e.URI) }

func destroyDomains(uri string) error {
	c, err := lv.NewConnect(uri)
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
		// Every running domain is the sandbox's: its libvirtd is private.
		if active, _ := d.IsActive(); active {
			if err := d.Destroy(); err != nil {
				errs = append(errs, fmt.Errorf("destroy %q: %w", name, err))
			}
		}
		// Definitions live in the machine's libvirt config: undefine
		// only jitsu's.
		if _, err := d.GetMetadata(lv.DOMAIN_METADATA_ELEMENT, metadataNS, lv.DOMAIN_AFFECT_CURRENT); err != nil {
			_ = d.Free()
			continue // foreign
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

// Command returns a command that runs inside the host namespace.
func (e *Env) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", e.NS, name}, args...)...)
}

// CommandNet is Command in the sandbox's network namespace only
// (nsenter --net): unlike ip netns exec, which mounts a sysfs of the
// namespace's own, it keeps the host's /sys/fs/cgroup, so that jitsu's
// guest CPU weight (hypervisor.guest_cpu_weight) finds the cpu controller.
func (e *Env) CommandNet(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "nsenter", append([]string{"--net=/run/netns/" + e.NS, name}, args...)...)
}

// Do runs fn inside the host namespace (see InNamespace).
func (e *Env) Do(fn func() error) error { return InNamespace(e.NS, fn) }

// InNamespace runs fn on an OS thread switched into the named network
// namespace and returns its error. Sockets fn creates belong to the
// namespace and stay usable from any goroutine afterwards. The thread is
// locked to fn's goroutine and switched back when fn returns; only if the
// switch back fails does it stay locked, so that it ends with its
// goroutine and no other code runs in the namespace by accident.
//
// The main thread is never switched: Go parks it instead of ending it when
// its locked goroutine exits, and the process, whose /proc/PID/ns/net is
// its main thread's, would then count as inside the namespace (and be
// killed with what `ip netns pids` lists when the namespace is removed).
func InNamespace(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if onMainThread() {
			// Hold the main thread while another goroutine, which
			// then cannot run on it, does the work.
			err := InNamespace(name, fn)
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("get current netns: %w", err)
			return
		}
		defer orig.Close()
		target, err := netns.GetFromName(name)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open netns %s: %w", name, err)
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			// setns failed: the thread is where it was.
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter netns %s: %w", name, err)
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

// onMainThread reports whether the calling thread is the process's main
// thread (a variable for tests).
var onMainThread = func() bool { return syscall.Gettid() == os.Getpid() }

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

// LibvirtdPid is the pid of the sandbox's libvirtd, 0 while it is stopped.
func (e *Env) LibvirtdPid() int { return e.libvirtdPid }
