// Command idlecpu measures what an idle unikernel costs the host: it boots
// N domains of each case (a kernel, initrd and command line) through
// hypervisor/libvirt, exactly as jitsu boots the example unikernel
// (benchkit.Spec), in a private libvirtd inside a network namespace
// (internal/sandbox), waits until every guest answers HTTP, lets them
// settle, and then reads the CPU time (utime+stime from /proc/PID/stat) of
// each guest's QEMU process over an interval. It prints, per case, the CPU
// of one idle guest in % of one host core (median, p90, min, max) and the
// RSS of its QEMU, and checks that every guest still answers afterwards.
//
// CPU time per process is robust to other load on the host; the cases of
// one run boot interleaved (guest i of every case before guest i+1) and are
// measured over the same interval, so they are compared under the same
// conditions. Every domain is destroyed on every exit path.
//
// It needs root and `make image`. Usage (`make bench-idlecpu`):
//
//	idlecpu [-n 10] [-interval 60s] [-settle 15s] \
//	  [-case 'old,kernel=/var/cache/jitsu/kernel/HASH/vmlinux'] \
//	  [-case 'new,cmdline=console=ttyS0 quiet ...']
//
// A case is NAME followed by comma-separated key=value pairs: kernel,
// initrd, cmdline (replaces the image's recommended command line; ip= is
// still added) and append (added to it). Without -case it measures the
// installed example image alone.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jitsu-unikernel/jitsu/bench/internal/benchkit"
	"github.com/jitsu-unikernel/jitsu/config"
	"github.com/jitsu-unikernel/jitsu/hypervisor"
	"github.com/jitsu-unikernel/jitsu/internal/sandbox"
)

// caseFlag is one variant to measure.
type caseFlag struct {
	name, kernel, initrd, append string
	cmdline                      *string // nil: the image's
}

type caseList []caseFlag

func (c *caseList) String() string { return fmt.Sprint(len(*c), " cases") }

// Set parses NAME[,key=value...].
func (c *caseList) Set(s string) error {
	parts := strings.Split(s, ",")
	cf := caseFlag{name: parts[0]}
	if cf.name == "" || strings.Contains(cf.name, "=") {
		return fmt.Errorf("case %q: want NAME[,key=value...]", s)
	}
	for _, kv := range parts[1:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("case %q: %q is not key=value", s, kv)
		}
		switch k {
		case "kernel":
			cf.kernel = v
		case "initrd":
			cf.initrd = v
		case "append":
			cf.append = v
		case "cmdline":
			cf.cmdline = &v
		default:
			return fmt.Errorf("case %q: unknown key %q (kernel, initrd, cmdline, append)", s, k)
		}
	}
	*c = append(*c, cf)
	return nil
}

type options struct {
	n                         int
	cases                     caseList
	interval, settle, timeout time.Duration
	domainType                string
	memoryMiB                 int
}

func main() {
	var o options
	flag.IntVar(&o.n, "n", 10, "idle guests per case")
	flag.Var(&o.cases, "case", "a variant: NAME[,kernel=PATH][,initrd=PATH][,cmdline=LINE][,append=TEXT] (repeatable; default: the installed image)")
	flag.DurationVar(&o.interval, "interval", 60*time.Second, "measurement interval")
	flag.DurationVar(&o.settle, "settle", 15*time.Second, "wait after the last guest answered before measuring")
	flag.DurationVar(&o.timeout, "timeout", 60*time.Second, "give up on one guest's boot after this long")
	flag.StringVar(&o.domainType, "domain-type", "qemu", "libvirt domain type: qemu (TCG) or kvm")
	flag.IntVar(&o.memoryMiB, "memory", 0, "guest memory in MiB (0: the config's default, as jitsu boots it)")
	flag.Parse()
	if len(o.cases) == 0 {
		o.cases = caseList{{name: "image"}}
	}
	if o.n < 1 || o.n*len(o.cases) > 200 {
		fmt.Fprintln(os.Stderr, "idlecpu: -n times the number of cases must be 1..200")
		os.Exit(2)
	}
	benchkit.Main("idlecpu", func(ctx context.Context) error { return run(ctx, o) })
}

// guest is one running domain.
type guest struct {
	c    int // index into the cases
	spec hypervisor.Spec
	ip   string
	pid  int
	cpu0 uint64 // clock ticks at the start of the interval
}

func run(ctx context.Context, o options) (err error) {
	host, err := benchkit.StartHost(ctx, "idlecpu-")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, host.Close()) }()
	guests, err := specs(host, o)
	if err != nil {
		return err
	}
	var started []*guest
	defer func() {
		for _, g := range started {
			sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if serr := host.HV.Stop(sctx, g.spec.Name, hypervisor.StopDestroy); serr != nil {
				err = errors.Join(err, serr)
			}
			cancel()
		}
	}()
	for i, cf := range o.cases { // guests[i] is the first of case i
		fmt.Printf("case %-10s kernel %s initrd %s cmdline %q, %d MiB\n",
			cf.name, guests[i].spec.Kernel, guests[i].spec.Initrd, guests[i].spec.Cmdline, guests[i].spec.MemoryBytes>>20)
	}
	t0 := time.Now()
	for _, g := range guests {
		if err := boot(ctx, host, g, o.timeout); err != nil {
			return err
		}
		started = append(started, g)
	}
	fmt.Printf("%d guests up in %.1f s; settling %v, then measuring %v\n", len(guests), time.Since(t0).Seconds(), o.settle, o.interval)
	if err := sleep(ctx, o.settle); err != nil {
		return err
	}
	for _, g := range guests {
		if g.cpu0, err = benchkit.ProcTicks(g.pid); err != nil {
			return err
		}
	}
	m0 := time.Now()
	if err := sleep(ctx, o.interval); err != nil {
		return err
	}
	return report(ctx, host, guests, o, time.Since(m0))
}

// specs returns the guests to boot, interleaved by case: guest 0 of every
// case, then guest 1, and so on.
func specs(host *benchkit.Host, o options) ([]*guest, error) {
	c := sandbox.JitsuConfig{
		ConsoleDir: host.Dir, Socket: filepath.Join(host.Dir, "control.sock"), Image: host.Image, DomainType: o.domainType,
	}
	for i := 0; i < o.n*len(o.cases); i++ {
		c.Unikernels = append(c.Unikernels, sandbox.JitsuUnikernel{Name: fmt.Sprintf("idle%d", i), IP: fmt.Sprintf("10.213.0.%d", 10+i)})
	}
	path := filepath.Join(host.Dir, "jitsu.toml")
	if err := c.Write(path); err != nil {
		return nil, err
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, fmt.Errorf("load the benchmark's config: %w", err)
	}
	var gs []*guest
	for i, u := range c.Unikernels {
		spec, err := benchkit.Spec(cfg, u.Name)
		if err != nil {
			return nil, err
		}
		g := &guest{c: i % len(o.cases), spec: spec, ip: u.IP}
		cf := o.cases[g.c]
		if cf.kernel != "" {
			spec.Kernel = cf.kernel
		}
		if cf.initrd != "" {
			spec.Initrd = cf.initrd
		}
		if cf.cmdline != nil {
			spec.Cmdline = strings.Replace(spec.Cmdline, host.Image.Cmdline, *cf.cmdline, 1)
		}
		if cf.append != "" {
			spec.Cmdline += " " + cf.append
		}
		if o.memoryMiB > 0 {
			spec.MemoryBytes = uint64(o.memoryMiB) << 20
		}
		g.spec = spec
		gs = append(gs, g)
	}
	return gs, nil
}

// boot starts g and waits for its first HTTP answer.
func boot(ctx context.Context, host *benchkit.Host, g *guest, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := host.Env.PinNeighbour(ctx, net.ParseIP(g.ip), g.spec.NIC()); err != nil {
		return err
	}
	if err := host.HV.Start(ctx, g.spec); err != nil {
		return fmt.Errorf("start %s: %w", g.spec.Name, err)
	}
	if _, err := benchkit.Probe(ctx, host.Env.DialContext, net.JoinHostPort(g.ip, "80"), 20*time.Millisecond); err != nil {
		return fmt.Errorf("%s never answered HTTP (console %s): %w", g.spec.Name, host.HV.ConsolePath(g.spec.Name), err)
	}
	pid, err := sandbox.QEMUPid(g.spec.Name)
	if err != nil {
		return err
	}
	g.pid = pid
	return nil
}

// report reads every guest's CPU time and RSS, checks that it still
// answers, and prints the figures per case.
func report(ctx context.Context, host *benchkit.Host, guests []*guest, o options, took time.Duration) error {
	hz := float64(benchkit.UserHZ)
	pct := make([][]float64, len(o.cases))
	rss := make([][]float64, len(o.cases))
	for _, g := range guests {
		t1, err := benchkit.ProcTicks(g.pid)
		if err != nil {
			return err
		}
		kib, err := benchkit.RSSKiB(g.pid)
		if err != nil {
			return err
		}
		pct[g.c] = append(pct[g.c], float64(t1-g.cpu0)/hz/took.Seconds()*100)
		rss[g.c] = append(rss[g.c], float64(kib)/1024)
	}
	var dead []string
	for _, g := range guests {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if _, err := benchkit.FirstByte(pctx, host.Env.DialContext, net.JoinHostPort(g.ip, "80"), 5*time.Second); err != nil {
			dead = append(dead, g.spec.Name+": "+err.Error())
		}
		cancel()
	}
	fmt.Printf("idle CPU per guest over %.1f s, %% of one host core (QEMU utime+stime), %d guests per case:\n", took.Seconds(), o.n)
	fmt.Printf("%-12s %7s %7s %7s %7s %7s   %s\n", "case", "median", "p90", "min", "max", "sum", "QEMU RSS MiB (median)")
	for i, cf := range o.cases {
		s := stats(pct[i])
		fmt.Printf("%-12s %6.2f%% %6.2f%% %6.2f%% %6.2f%% %6.1f%%   %.1f\n", cf.name, s.med, s.p90, s.min, s.max, s.sum, stats(rss[i]).med)
	}
	if len(dead) > 0 {
		return fmt.Errorf("%d guests stopped answering HTTP: %s", len(dead), strings.Join(dead, "; "))
	}
	fmt.Printf("all %d guests still answer HTTP\n", len(guests))
	return nil
}

type summary struct{ med, p90, min, max, sum float64 }

func stats(v []float64) summary {
	if len(v) == 0 {
		return summary{}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	r := summary{min: s[0], max: s[n-1], p90: s[(9*n+9)/10-1], med: s[n/2]}
	if n%2 == 0 {
		r.med = (s[n/2-1] + s[n/2]) / 2
	}
	for _, x := range s {
		r.sum += x
	}
	return r
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
