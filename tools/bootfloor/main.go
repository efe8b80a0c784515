// Command bootfloor measures the boot floor: how long the example unikernel
// takes from the hypervisor's start call to its first HTTP answer, booted
// through hypervisor/libvirt by a private libvirtd inside a network
// namespace (internal/testenv). It is the floor the whole system is
// measured against.
//
// With -floor KERNEL it measures instead a kernel that only prints
// JITSU-READY on the serial console (e.g. the multiboot hello.elf): the
// overhead of libvirt, QEMU and firmware alone, timed from the start call to
// the marker in the console log.
//
// It needs root. Usage:
//
//	bootfloor [-n 10] [-persistent] [-floor /var/lib/jitsu/images/multiboot/hello.elf]
//
// The program re-executes itself inside the namespace (-inner), so that its
// probes are ordinary sockets of that namespace.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	jconfig "github.com/jitsu-unikernel/jitsu/config"
	"github.com/jitsu-unikernel/jitsu/hypervisor"
	"github.com/jitsu-unikernel/jitsu/hypervisor/libvirt"
	"github.com/jitsu-unikernel/jitsu/internal/testenv"
)

// config holds the command-line flags.
type config struct {
	n          int
	floor      string
	kernel     string
	initrd     string
	memoryMiB  uint64
	persistent bool
	pvh        bool
	interval   time.Duration
	timeout    time.Duration
	guestIP    string
	extra      string
	inner      bool
	ns         string
	domainType string
}

func main() {
	var c config
	flag.IntVar(&c.n, "n", 10, "number of boots")
	flag.StringVar(&c.floor, "floor", "", "measure this kernel (prints JITSU-READY on ttyS0) to the console marker instead of the example image to HTTP")
	flag.StringVar(&c.kernel, "kernel", "", "kernel of the image to measure (default: the installed example image)")
	flag.StringVar(&c.initrd, "initrd", "", "initrd of the image to measure (default: the installed example image)")
	flag.Uint64Var(&c.memoryMiB, "memory", 128, "guest memory in MiB")
	flag.BoolVar(&c.pvh, "pvh", false, "boot the example image's PVH vmlinux instead of its bzImage")
	flag.BoolVar(&c.persistent, "persistent", false, "define + create persistent domains instead of creating transient ones")
	flag.DurationVar(&c.interval, "probe", 5*time.Millisecond, "interval between readiness probes")
	flag.DurationVar(&c.timeout, "timeout", 60*time.Second, "give up on one boot after this long")
	flag.StringVar(&c.guestIP, "ip", "10.213.0.5", "guest address on the namespace's bridge")
	flag.StringVar(&c.extra, "cmdline", "", "extra kernel command line")
	flag.BoolVar(&c.inner, "inner", false, "internal: run the measurement (inside the namespace)")
	flag.StringVar(&c.ns, "ns", "", "internal: the namespace's name")
	flag.StringVar(&c.domainType, "domain-type", "qemu", "libvirt domain type: qemu (TCG) or kvm")
	flag.Parse()
	log.SetFlags(0)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if c.inner {
		err = measure(ctx, c)
	} else {
		err = outer(ctx)
	}
	if err != nil {
		log.Printf("bootfloor: %v", err)
		stop()
		os.Exit(1)
	}
}

// outer sets up the namespace and libvirtd, runs itself inside the
// namespace, and cleans up.
func outer(ctx context.Context) (err error) {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	env, err := testenv.StartLibvirt(ctx, func(f string, a ...any) { log.Printf("env: "+f, a...) })
	if err != nil {
		return fmt.Errorf("start environment: %w", err)
	}
	defer func() { err = errors.Join(err, env.Close()) }()
	args := append([]string{"-inner", "-ns", env.NS}, os.Args[1:]...)
	cmd := env.Command(ctx, exe, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("measurement: %w", err)
	}
	return nil
}

// sample is one boot's figures.
type sample struct {
	startCall time.Duration // the Start call itself
	ready     time.Duration // start call → first HTTP answer / console marker
}

func measure(ctx context.Context, c config) error {
	spec, err := c.spec()
	if err != nil {
		return err
	}
	consoleDir := filepath.Join("/var/lib/jitsu", "console-bench")
	if err := os.MkdirAll(consoleDir, 0o755); err != nil {
		return fmt.Errorf("create console dir: %w", err)
	}
	defer os.RemoveAll(consoleDir)
	hv, err := libvirt.New(ctx, libvirt.Options{URI: testenv.URI, ConsoleDir: consoleDir, Persistent: c.persistent, ShutdownTimeout: jconfig.DefaultShutdownTimeout})
	if err != nil {
		return err
	}
	defer hv.Close()
	go func() { // keep the events channel drained
		for range hv.Events() {
		}
	}()
	if c.floor == "" {
		mac := hypervisor.DeriveMAC(spec.Name)
		if out, err := exec.CommandContext(ctx, "ip", "neigh", "replace", c.guestIP, "lladdr", mac.String(),
			"dev", testenv.Bridge, "nud", "permanent").CombinedOutput(); err != nil {
			return fmt.Errorf("pin neighbour %s: %w: %s", c.guestIP, err, out)
		}
	}
	what := "start call → first HTTP answer"
	if c.floor != "" {
		what = "start call → JITSU-READY on the console"
	}
	mode := "transient (create)"
	if c.persistent {
		mode = "persistent (define + create)"
	}
	fmt.Printf("boot floor: %s; kernel %s; initrd %s; cmdline %q; domain %s, type qemu (TCG), %d MiB; probe every %v; %d runs\n",
		what, spec.Kernel, spec.Initrd, spec.Cmdline, mode, c.memoryMiB, c.interval, c.n)
	var samples []sample
	for i := range c.n {
		s, err := c.once(ctx, hv, spec, consoleDir)
		if err != nil {
			return fmt.Errorf("run %d: %w", i+1, err)
		}
		fmt.Printf("  run %2d: start call %7.1f ms, ready %7.1f ms\n", i+1, ms(s.startCall), ms(s.ready))
		samples = append(samples, s)
	}
	calls := make([]time.Duration, len(samples))
	ready := make([]time.Duration, len(samples))
	for i, s := range samples {
		calls[i], ready[i] = s.startCall, s.ready
	}
	fmt.Printf("start call:   %s\n", summary(calls))
	fmt.Printf("boot floor:   %s\n", summary(ready))
	return nil
}

func (c config) spec() (hypervisor.Spec, error) {
	spec := hypervisor.Spec{
		Name: "bootfloor", MemoryBytes: c.memoryMiB << 20, DomainType: c.domainType, Bridge: testenv.Bridge,
	}
	if c.floor != "" {
		spec.Kernel, spec.Cmdline = c.floor, c.extra
		return spec, nil
	}
	base := "console=ttyS0"
	if c.kernel == "" {
		img, err := testenv.FindExampleImage()
		if err != nil {
			return spec, err
		}
		c.kernel, c.initrd, base = img.Kernel, img.Initrd, img.Cmdline
		if c.pvh {
			if img.VMLinux == "" {
				return spec, fmt.Errorf("no PVH vmlinux next to %s", img.Kernel)
			}
			c.kernel = img.VMLinux
		}
	}
	spec.Kernel, spec.Initrd = c.kernel, c.initrd
	spec.Cmdline = strings.TrimSpace(fmt.Sprintf("%s ip=%s::10.213.0.1:255.255.255.0::eth0:off %s", base, c.guestIP, c.extra))
	return spec, nil
}

// once boots spec, waits for readiness and destroys it.
func (c config) once(ctx context.Context, hv *libvirt.Hypervisor, spec hypervisor.Spec, consoleDir string) (s sample, err error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	t0 := time.Now()
	if err := hv.Start(ctx, spec); err != nil {
		return s, err
	}
	s.startCall = time.Since(t0)
	defer func() {
		if serr := hv.Stop(context.Background(), spec.Name, hypervisor.StopDestroy); serr != nil {
			err = errors.Join(err, serr)
		}
	}()
	var readyAt time.Time
	if c.floor != "" {
		readyAt, err = waitMarker(ctx, hv.ConsolePath(spec.Name), []byte("JITSU-READY"), c.interval)
	} else {
		readyAt, err = probeHTTP(ctx, net.JoinHostPort(c.guestIP, "80"), c.interval)
	}
	if err != nil {
		return s, err
	}
	s.ready = readyAt.Sub(t0)
	return s, nil
}

// probeHTTP starts a TCP connection attempt every interval (each with its
// own timeout, so that a SYN lost before the guest is up costs nothing)
// and returns when the first one gets an HTTP answer.
func probeHTTP(ctx context.Context, addr string, interval time.Duration) (time.Time, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	found := make(chan time.Time, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	// At most 4 attempts at a time, as jitsu's own probe: a guest without
	// SYN cookies drops every SYN once its listen backlog is full of
	// half-open probe connections.
	slots := make(chan struct{}, 4)
	for {
		select {
		case slots <- struct{}{}:
		case at := <-found:
			return at, nil
		case <-ctx.Done():
			select {
			case at := <-found:
				return at, nil
			default:
			}
			return time.Time{}, fmt.Errorf("no HTTP answer from %s: %w", addr, ctx.Err())
		}
		wg.Go(func() {
			defer func() { <-slots }()
			if at, ok := httpOnce(ctx, addr); ok {
				select {
				case found <- at:
				default:
				}
				cancel()
			}
		})
		select {
		case at := <-found:
			return at, nil
		case <-ctx.Done():
			select {
			case at := <-found:
				return at, nil
			default:
			}
			return time.Time{}, fmt.Errorf("no HTTP answer from %s: %w", addr, ctx.Err())
		case <-tick.C:
		}
	}
}

// httpOnce sends one GET and reports when the first byte of the answer
// came back.
func httpOnce(ctx context.Context, addr string) (time.Time, bool) {
	dctx, cancel := context.WithTimeout(ctx, 250*time.Millisecond)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		return time.Time{}, false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, "GET / HTTP/1.0\r\nHost: bootfloor\r\n\r\n"); err != nil {
		return time.Time{}, false
	}
	var b [12]byte
	if _, err := io.ReadFull(conn, b[:]); err != nil || !bytes.HasPrefix(b[:], []byte("HTTP/1.")) {
		return time.Time{}, false
	}
	return time.Now(), true
}

// waitMarker polls the console log until it contains marker.
func waitMarker(ctx context.Context, path string, marker []byte, interval time.Duration) (time.Time, error) {
	for {
		if b, err := os.ReadFile(path); err == nil && bytes.Contains(b, marker) {
			return time.Now(), nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("no %q in %s: %w", marker, path, ctx.Err())
		case <-time.After(interval):
		}
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// summary formats median, min, p90 and max of ds.
func summary(ds []time.Duration) string {
	s := slices.Clone(ds)
	slices.Sort(s)
	n := len(s)
	median := s[n/2]
	if n%2 == 0 {
		median = (s[n/2-1] + s[n/2]) / 2
	}
	p90 := s[(9*n+9)/10-1] // nearest rank
	return fmt.Sprintf("median %7.1f ms  min %7.1f ms  p90 %7.1f ms  max %7.1f ms  (n=%d)",
		ms(median), ms(s[0]), ms(p90), ms(s[n-1]), n)
}
