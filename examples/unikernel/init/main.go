// Skip the Go runtime's cgroup lookups for GOMAXPROCS: there is no cgroup
// file system in the VM, and the lookup is work before listen.

//go:debug containermaxprocs=0
//go:debug updatemaxprocs=0

// Command init is PID 1 of the jitsu example unikernel: a static Go program
// that serves the files under /www over HTTP, and over HTTPS on port 443
// when its seed-file disk (/dev/vda, a tar image jitsu attaches) holds
// tls/cert.pem and tls/key.pem, and does nothing else.
//
// The kernel has already configured eth0 from `ip=` (CONFIG_IP_PNP) when
// this program starts, so it binds port 80 first, prints the line
// JITSU-READY on the console (ttyS0, which the kernel opened as stdout),
// and only then looks at the command line. It mounts /proc (for
// /proc/cmdline) and nothing else, and never exits.
//
// When the VM has jitsu's guest agent port (org.jitsu.agent.0), a minimal
// QEMU guest agent (agent.go) answers jitsu on it: guest-set-time steps the
// clock and re-seeds the kernel RNG, for restored and resumed guests.
//
// Parameters read from the kernel command line: ip= (checked against the
// interface addresses), jitsu.ip6=ADDR/PREFIX and jitsu.gw6=ADDR (the IPv6
// address and default route, configured by /init when given), jitsu.name= (logged, and sent as the X-Jitsu-Name
// header), jitsu.port= (default 80), jitsu.root= (default /www).
package main

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	// Every address and every port is up before the default port: jitsu's
	// readiness probe connects to port 80, and then replays the held SYNs
	// to whatever port and address they were for (an HTTPS SYN to the
	// IPv6 address replayed before 443 listens would be refused). The
	// HTTPS port is only bound here; its certificate is read after.
	bc, cmdErr := bootConfig()
	if cmdErr != nil {
		logf("%v (using defaults)", cmdErr)
	}
	setupIP6(bc)
	seed, tlsLn := bindSeedTLS()
	var cfg atomic.Pointer[BootConfig]
	cfg.Store(&bc)
	h := handler(&cfg)
	ln, lnErr := net.Listen("tcp", ":80")
	if lnErr == nil {
		go serveForever(ln, 80, h)
		fmt.Println("JITSU-READY")
	}
	if bc.Port != 80 || lnErr != nil {
		if lnErr != nil {
			logf("listen on port 80: %v", lnErr)
		}
		ln = listenForever(bc.Port)
		go serveForever(ln, bc.Port, h)
		fmt.Println("JITSU-READY")
	}
	// HTTPS on 443 with the certificate and key of the seed-file disk,
	// when jitsu attached one (read after port 80 is up: connections to
	// 443 wait in its backlog meanwhile).
	tlsCfg := serveSeedTLS(h, seed, tlsLn)
	// The guest agent, when the domain has its port (hypervisor
	// Spec.Agent): sets the clock and re-seeds the RNGs after a restore
	// or resume, and then replaces the TLS session ticket keys.
	startAgent(func() { rotateTicketKeys(tlsCfg) })
	if bc.Debug {
		// Boot profiling (docs/boot.md): mark the listen in the kernel log,
		// so that it carries the same clock as the kernel's own messages,
		// and print the whole log on the console.
		kmsg("jitsu-init: listening on %s", ln.Addr())
		dumpKernelLog()
	}
	logf("serving %s on %s (name %q, ip %s)", bc.Root, ln.Addr(), bc.Name, bc.IP.Prefix())
	if bc.IP.Client.IsValid() && !hasAddr(bc.IP.Client) {
		logf("warning: ip= address %s is not configured on any interface (kernel without CONFIG_IP_PNP?)", bc.IP.Client)
	}
	// PID 1 must never exit.
	select {}
}

// serveForever serves HTTP on ln, and on a new listener if serving fails.
func serveForever(ln net.Listener, port int, h http.Handler) {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
	for {
		err := srv.Serve(ln)
		logf("serve on port %d: %v; listening again", port, err)
		time.Sleep(100 * time.Millisecond)
		ln = listenForever(port)
	}
}

// bootConfig mounts /proc if needed and parses /proc/cmdline.
func bootConfig() (BootConfig, error) {
	def := BootConfig{Port: 80, Root: "/www"}
	data, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		if err := syscall.Mount("proc", "/proc", "proc", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, ""); err != nil {
			return def, fmt.Errorf("mount /proc: %w", err)
		}
		if data, err = os.ReadFile("/proc/cmdline"); err != nil {
			return def, fmt.Errorf("read kernel command line: %w", err)
		}
	}
	bc, err := ParseCmdline(string(data))
	if err != nil {
		return def, err
	}
	return bc, nil
}

// listenForever binds the port, retrying: PID 1 must never exit.
func listenForever(port int) net.Listener {
	for {
		ln, err := net.Listen("tcp", ":"+strconv.Itoa(port))
		if err == nil {
			return ln
		}
		logf("listen on port %d: %v; retrying", port, err)
		time.Sleep(time.Second)
	}
}

// handler serves the files under the configured root (default /www); "/"
// serves index.html and the Content-Type follows the file extension.
func handler(cfg *atomic.Pointer[BootConfig]) http.Handler {
	var (
		mu    sync.Mutex
		root  string
		files http.Handler
	)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case bytesPath:
			serveBytes(w, r)
			return
		case nowPath:
			serveNow(w, r)
			return
		}
		bc := cfg.Load()
		dir := "/www"
		if bc != nil {
			dir = bc.Root
			if bc.Name != "" {
				w.Header().Set("X-Jitsu-Name", bc.Name)
			}
		}
		mu.Lock()
		if files == nil || root != dir {
			root, files = dir, http.FileServer(http.Dir(dir))
		}
		fs := files
		mu.Unlock()
		fs.ServeHTTP(w, r)
	})
}

// hasAddr reports whether a is assigned to an interface.
func hasAddr(a netip.Addr) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		logf("list interface addresses: %v", err)
		return false
	}
	for _, ad := range addrs {
		if ipn, ok := ad.(*net.IPNet); ok && ipn.IP.String() == a.String() {
			return true
		}
	}
	return false
}

// kmsg writes a line into the kernel log through /dev/kmsg (errors ignored:
// debugging aid only).
func kmsg(format string, args ...any) {
	f, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0)
	if err != nil {
		logf("open /dev/kmsg: %v", err)
		return
	}
	defer f.Close()
	fmt.Fprintf(f, format+"\n", args...)
}

// dumpKernelLog prints the kernel's log buffer on the console.
func dumpKernelLog() {
	const syslogActionReadAll, syslogActionSizeBuffer = 3, 10
	n, err := syscall.Klogctl(syslogActionSizeBuffer, nil)
	if err != nil || n <= 0 {
		logf("kernel log size: %v", err)
		return
	}
	buf := make([]byte, n)
	n, err = syscall.Klogctl(syslogActionReadAll, buf)
	if err != nil {
		logf("read kernel log: %v", err)
		return
	}
	os.Stdout.Write(buf[:n])
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stdout, "jitsu-init: "+format+"\n", args...)
}
