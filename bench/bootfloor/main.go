// Command bootfloor measures the boot floor: how long the example
// unikernel takes from the hypervisor's start call to its first HTTP
// answer, booted through hypervisor/libvirt by a private libvirtd inside a
// network namespace (internal/sandbox). The domain is the one jitsu boots
// in bench/coldstart, built from the same config (benchkit.Spec): same
// kernel file, initrd, command line, memory and MAC.
//
// With -floor KERNEL it measures instead a kernel that only prints
// JITSU-READY on the serial console (e.g. the multiboot hello.elf), with
// the same memory and domain type: the overhead of libvirt, QEMU and
// firmware alone, timed from the start call to the marker in the console
// log.
//
// With -agent ab it boots the domain without and with the guest agent's
// devices (hypervisor Spec.Agent: virtio-serial, the agent channel,
// virtio-rng) in interleaved rounds, the order alternating, and prints
// the paired differences (with minus without).
//
// It needs root and `make image`. Usage:
//
//	bootfloor [-n 10] [-domain-type qemu|kvm] [-agent off|on|ab] [-floor /var/lib/jitsu/images/multiboot/hello.elf]
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/jitsu-unikernel/jitsu/bench/internal/benchkit"
	"github.com/jitsu-unikernel/jitsu/config"
	"github.com/jitsu-unikernel/jitsu/hypervisor"
	"github.com/jitsu-unikernel/jitsu/hypervisor/libvirt"
	"github.com/jitsu-unikernel/jitsu/internal/sandbox"
)

const guestIP = "10.213.0.5"

// options holds the command-line flags.
type options struct {
	n          int
	floor      string
	domainType string
	agent      string
	idle       time.Duration
	settle     time.Duration
	interval   time.Duration
	timeout    time.Duration
	// after, if set, runs once the guest is ready, before it is destroyed.
	after func() error
}

func main() {
	var o options
	flag.IntVar(&o.n, "n", 10, "number of boots")
	flag.StringVar(&o.floor, "floor", "", "measure this kernel (prints JITSU-READY on ttyS0) to the console marker instead of the example image to HTTP")
	flag.StringVar(&o.domainType, "domain-type", "qemu", "libvirt domain type: qemu (TCG) or kvm")
	flag.StringVar(&o.agent, "agent", "off", "guest agent devices (Spec.Agent): off, on, or ab (both, interleaved, paired differences)")
	flag.DurationVar(&o.idle, "idle", 0, "with -agent ab: after each boot, measure QEMU's CPU time over this idle interval (0: skip)")
	flag.DurationVar(&o.settle, "settle", time.Second, "with -idle: wait this long after the guest is ready before measuring")
	flag.DurationVar(&o.interval, "probe", 5*time.Millisecond, "interval between readiness probes")
	flag.DurationVar(&o.timeout, "timeout", 60*time.Second, "give up on one boot after this long")
	flag.Parse()
	benchkit.Main("bootfloor", func(ctx context.Context) error { return run(ctx, o) })
}

func run(ctx context.Context, o options) (err error) {
	host, err := benchkit.StartHost(ctx, "bootfloor-")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, host.Close()) }()
	img := host.Image
	env, dir, hv := host.Env, host.Dir, host.HV
	spec, err := domain(dir, img, o)
	if err != nil {
		return err
	}
	what := "start call → first HTTP byte"
	if o.floor != "" {
		what = "start call → JITSU-READY on the console"
	} else if err := env.PinNeighbour(ctx, net.ParseIP(guestIP), spec.MAC); err != nil {
		return err
	}
	fmt.Printf("boot floor: %s; kernel %s; initrd %s; cmdline %q; domain type %s, %d MiB; probe every %v; %d runs\n",
		what, spec.Kernel, spec.Initrd, spec.Cmdline, spec.DomainType, spec.MemoryBytes>>20, o.interval, o.n)
	// One unmeasured boot first: libvirtd probes QEMU's capabilities on
	// its first domain start, and the image comes into the page cache.
	if call, r, err := once(ctx, env, hv, spec, o); err != nil {
		return fmt.Errorf("warm-up boot: %w", err)
	} else {
		fmt.Printf("  warm-up (not counted): start call %7.1f ms, ready %7.1f ms\n", ms(call), ms(r))
	}
	switch o.agent {
	case "off":
	case "on":
		spec.Agent = true
	case "ab":
		return agentAB(ctx, env, hv, spec, o)
	default:
		return fmt.Errorf("-agent %q: want off, on or ab", o.agent)
	}
	var calls, ready []time.Duration
	for i := range o.n {
		call, r, err := once(ctx, env, hv, spec, o)
		if err != nil {
			return fmt.Errorf("run %d: %w", i+1, err)
		}
		fmt.Printf("  run %2d: start call %7.1f ms, ready %7.1f ms\n", i+1, ms(call), ms(r))
		calls, ready = append(calls, call), append(ready, r)
		time.Sleep(500 * time.Millisecond)
	}
	fmt.Printf("start call:   %s\n", summary(calls))
	fmt.Printf("boot floor:   %s\n", summary(ready))
	return nil
}

// agentAB boots spec without and with Spec.Agent in each of o.n rounds,
// alternating which goes first, and prints both and the paired
// differences.
func agentAB(ctx context.Context, env *sandbox.Env, hv *libvirt.Hypervisor, spec hypervisor.Spec, o options) error {
	var off, on, diff, callDiff, cpuOff, cpuOn []time.Duration
	for i := range o.n {
		var r, c, sc [2]time.Duration // [without, with]: ready, idle CPU, start call
		for k := range 2 {
			agent := (i+k)%2 == 1
			s := spec
			s.Agent = agent
			var cpu time.Duration
			o := o
			if o.idle > 0 {
				o.after = func() error {
					var err error
					cpu, err = idleCPU(ctx, s.Name, o.settle, o.idle)
					return err
				}
			}
			call, ready, err := once(ctx, env, hv, s, o)
			if err != nil {
				return fmt.Errorf("round %d (agent %v): %w", i+1, agent, err)
			}
			j := 0
			if agent {
				j = 1
			}
			r[j], c[j], sc[j] = ready, cpu, call
			time.Sleep(500 * time.Millisecond)
		}
		fmt.Printf("  round %2d: without agent %7.1f ms (start call %6.1f), with %7.1f ms (start call %6.1f), difference %+7.1f ms (start call %+6.1f)\n",
			i+1, ms(r[0]), ms(sc[0]), ms(r[1]), ms(sc[1]), ms(r[1]-r[0]), ms(sc[1]-sc[0]))
		callDiff = append(callDiff, sc[1]-sc[0])
		off, on, diff = append(off, r[0]), append(on, r[1]), append(diff, r[1]-r[0])
		if o.idle > 0 {
			pct := func(d time.Duration) float64 { return 100 * float64(d) / float64(o.idle) }
			fmt.Printf("            idle QEMU CPU over %v: without %.2f %%, with %.2f %% of a core\n", o.idle, pct(c[0]), pct(c[1]))
			cpuOff, cpuOn = append(cpuOff, c[0]), append(cpuOn, c[1])
		}
	}
	if o.idle > 0 {
		pct := func(d time.Duration) float64 { return 100 * float64(d) / float64(o.idle) }
		a, b := benchkit.Summarize(cpuOff), benchkit.Summarize(cpuOn)
		fmt.Printf("idle QEMU CPU (median of %d): without agent %.2f %%, with %.2f %% of a core\n", a.N, pct(a.Median), pct(b.Median))
	}
	fmt.Printf("without agent: %s\n", summary(off))
	fmt.Printf("with agent:    %s\n", summary(on))
	d := benchkit.Summarize(diff)
	fmt.Printf("paired difference (with - without): median %+7.1f ms  min %+7.1f ms  max %+7.1f ms  (n=%d)\n",
		ms(d.Median), ms(d.Min), ms(d.Max), d.N)
	d = benchkit.Summarize(callDiff)
	fmt.Printf("of which in the start call: median %+7.1f ms  min %+7.1f ms  max %+7.1f ms\n", ms(d.Median), ms(d.Min), ms(d.Max))
	return nil
}

// domain is the domain to boot: the one jitsu boots for the example
// unikernel in the benchmarks' config, or with -floor that domain with the
// floor kernel and no initrd.
func domain(dir string, img sandbox.Image, o options) (hypervisor.Spec, error) {
	c := sandbox.JitsuConfig{
		ConsoleDir: dir, Socket: filepath.Join(dir, "control.sock"), Image: img, DomainType: o.domainType,
		Unikernels: []sandbox.JitsuUnikernel{{Name: "www", IP: guestIP}},
	}
	path := filepath.Join(dir, "jitsu.toml")
	if err := c.Write(path); err != nil {
		return hypervisor.Spec{}, err
	}
	cfg, err := config.Load(path)
	if err != nil {
		return hypervisor.Spec{}, fmt.Errorf("load the benchmark's config: %w", err)
	}
	spec, err := benchkit.Spec(cfg, "www")
	if err != nil {
		return spec, err
	}
	if o.floor != "" {
		spec.Kernel, spec.Initrd, spec.Cmdline = o.floor, "", ""
	}
	return spec, nil
}

// once boots spec, waits for readiness and destroys it.
func once(ctx context.Context, env *sandbox.Env, hv *libvirt.Hypervisor, spec hypervisor.Spec, o options) (call, ready time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout+o.settle+o.idle)
	defer cancel()
	t0 := time.Now()
	if err := hv.Start(ctx, spec); err != nil {
		return 0, 0, err
	}
	call = time.Since(t0)
	defer func() {
		if serr := hv.Stop(context.Background(), spec.Name, hypervisor.StopDestroy); serr != nil {
			err = errors.Join(err, serr)
		}
	}()
	var at time.Time
	if o.floor != "" {
		at, err = waitMarker(ctx, hv.ConsolePath(spec.Name), []byte("JITSU-READY"), o.interval)
	} else {
		at, err = benchkit.Probe(ctx, env.DialContext, net.JoinHostPort(guestIP, "80"), o.interval)
	}
	if err != nil {
		return call, 0, err
	}
	if o.after != nil {
		if err := o.after(); err != nil {
			return call, at.Sub(t0), err
		}
	}
	return call, at.Sub(t0), nil
}

// idleCPU waits settle for the guest to settle, then returns the CPU
// time (user + system) its QEMU process spends over d.
func idleCPU(ctx context.Context, name string, settle, d time.Duration) (time.Duration, error) {
	pid, err := sandbox.QEMUPid(name)
	if err != nil {
		return 0, err
	}
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(settle):
	}
	t0, err := cpuTime(pid)
	if err != nil {
		return 0, err
	}
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(d):
	}
	t1, err := cpuTime(pid)
	if err != nil {
		return 0, err
	}
	return t1 - t0, nil
}

// cpuTime reads utime+stime of pid.
func cpuTime(pid int) (time.Duration, error) {
	t, err := benchkit.ProcTicks(pid)
	return benchkit.Ticks(t), err
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
	s := benchkit.Summarize(ds)
	return fmt.Sprintf("median %7.1f ms  min %7.1f ms  p90 %7.1f ms  max %7.1f ms  (n=%d)",
		ms(s.Median), ms(s.Min), ms(s.P90), ms(s.Max), s.N)
}
