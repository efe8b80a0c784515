// Command density measures how many idle unikernels one host keeps
// running while jitsu's DNS stays fast and every guest answers HTTP.
//
// It writes a jitsu config of -m unikernels of the example image (64 MiB
// each, SYN proxy on unless -synproxy=false, idle_timeout 0s so that they stay up, addresses from
// the sandbox's /24), with the budget and admission set explicitly so that
// neither refuses a boot the benchmark asks for, starts jitsu serve inside
// the sandbox (internal/sandbox: a private libvirtd in a network namespace
// with a bridge), and brings the guests up in steps (-steps) as a client
// would: a DNS query for the name, then an HTTP GET of the answered
// address, at most -parallel guests at a time. After each step, on an idle
// host, it measures:
//
//   - the time the step's guests took to come up, and the cumulative time;
//   - host CPU per idle guest: /proc/stat's busy time over a quiet window
//     (-quiet) minus jitsu's own, divided by the guests running (this
//     counts other processes of the machine too), and the utime+stime of
//     the QEMU processes over the same window per guest (robust to other
//     load), beside libvirtd's and jitsu's own;
//   - RSS per guest (the QEMU processes' RSS over the guests), jitsu's RSS
//     and open files, libvirtd's open files;
//   - DNS latency, p50 and p99, for a static name and for the running
//     unikernels' names, queried alternately at a fixed, modest rate
//     (-dns-rate) from a client in the namespace;
//   - an HTTP GET of every running guest (all must answer).
//
// It stops growing at the first step whose DNS p99 reaches -p99 (for
// either name), where a guest does not answer, or whose guests do not all
// come up within -step-timeout, and reports the largest number running
// that held. The table goes to stdout as Markdown, one row per step.
//
// Admission: every boot here is asked for from one source (127.0.0.1 for
// DNS, the bridge's address for the SYNs), so the default per-prefix
// bucket (8, then one boot per 5 s) would make 100 boots take minutes;
// the benchmark measures density, not admission, so it raises both
// buckets out of the way and paces the boots itself (-parallel).
//
// With -image multiboot the guests boot the multiboot kernel of `make
// image`, which prints JITSU-READY and halts: jitsu waits for that line
// (ready = "console:..."), a client's visit is the DNS query and then
// jitsu reporting the guest ready, and the HTTP check is jitsu reporting
// every guest ready. The guests then cost nearly no CPU, which shows what
// limits jitsu, libvirt and the host hit beyond the CPU.
//
// It needs root and `make build image`. Usage:
//
//	density [-m 200] [-steps 10,20,40,60,80,100,...] [-parallel 4] [-jitsu bin/jitsu] [-image example|multiboot]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jitsu-unikernel/jitsu/bench/internal/benchkit"
	"github.com/jitsu-unikernel/jitsu/config"
)

// options are the command line's settings.
type options struct {
	m           int
	steps       []int
	parallel    int
	bin         string
	domainType  string
	quiet       time.Duration
	settle      time.Duration
	dnsQueries  int
	dnsRate     float64
	p99Limit    time.Duration
	stepTimeout time.Duration
	bootTimeout time.Duration
	jitsuLog    string
	image       string
	synproxy    bool
	// guestCPUWeight is hypervisor.guest_cpu_weight (0: off).
	guestCPUWeight int
}

func main() {
	var o options
	var steps string
	flag.IntVar(&o.m, "m", 200, "unikernels in the config")
	flag.StringVar(&steps, "steps", "10,20,40,60,80,100,120,150,200",
		"running guests after each step (ascending); growth stops at the first step that does not hold")
	flag.IntVar(&o.parallel, "parallel", 4, "guests brought up at once (client side)")
	flag.StringVar(&o.bin, "jitsu", "bin/jitsu", "the jitsu binary")
	flag.StringVar(&o.domainType, "domain-type", "qemu", "libvirt domain type: qemu (TCG) or kvm")
	flag.DurationVar(&o.quiet, "quiet", 20*time.Second, "quiet window of the CPU measurement")
	flag.DurationVar(&o.settle, "settle", 5*time.Second, "pause after a step's boots before measuring")
	flag.IntVar(&o.dnsQueries, "dns-queries", 1000, "DNS queries per name and step")
	flag.Float64Var(&o.dnsRate, "dns-rate", 400, "DNS queries per second (both names together)")
	flag.DurationVar(&o.p99Limit, "p99", 5*time.Millisecond, "DNS p99 at or above which growth stops")
	flag.DurationVar(&o.stepTimeout, "step-timeout", 5*time.Minute, "bound for a step's guests to come up")
	flag.DurationVar(&o.bootTimeout, "boot-timeout", 120*time.Second, "the unikernels' boot_timeout")
	flag.StringVar(&o.jitsuLog, "jitsu-log", "/tmp/jitsu-density.log", "jitsu's log (kept)")
	flag.StringVar(&o.image, "image", imageExample, "what the guests boot: "+imageExample+" (HTTP), or "+imageMultiboot+
		" (the multiboot kernel that prints JITSU-READY and halts: nearly no idle CPU, no HTTP; jitsu's, libvirt's and the host's limits without the guests' CPU)")
	flag.IntVar(&o.guestCPUWeight, "guest-cpu-weight", config.DefaultGuestCPUWeight, "hypervisor.guest_cpu_weight of the config (0: off)")
	flag.BoolVar(&o.synproxy, "synproxy", true, "the SYN proxy (and its traffic meter); false: the reaper reads the domains' interface counters")
	flag.Parse()
	var err error
	if o.steps, err = parseSteps(steps, o.m); err != nil {
		log.Fatalf("density: -steps: %v", err)
	}
	if o.image != imageExample && o.image != imageMultiboot {
		log.Fatalf("density: -image %q: want %s or %s", o.image, imageExample, imageMultiboot)
	}
	if o.parallel < 1 || o.dnsQueries < 1 || o.dnsRate <= 0 {
		log.Fatalf("density: -parallel, -dns-queries and -dns-rate must be positive")
	}
	benchkit.Main("density", func(ctx context.Context) error { return run(ctx, o) })
}

// parseSteps parses an ascending list of positive counts, keeping those
// up to m.
func parseSteps(s string, m int) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive count", f)
		}
		if len(out) > 0 && n <= out[len(out)-1] {
			return nil, fmt.Errorf("%d after %d: steps must ascend", n, out[len(out)-1])
		}
		if n <= m {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no step of at most -m %d guests", m)
	}
	return out, nil
}

func run(ctx context.Context, o options) (err error) {
	if o.bin, err = filepath.Abs(o.bin); err != nil {
		return err
	}
	host, err := benchkit.StartHost(ctx, "density-")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, host.Close()) }()
	b, err := newBench(host, o)
	if err != nil {
		return err
	}
	stop, err := b.startJitsu(ctx)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, stop()) }()
	log.Printf("jitsu pid %d, %d unikernels configured, log %s", b.jitsuPid, o.m, o.jitsuLog)
	var rows []row
	defer func() { b.report(rows) }() // what was measured, on every exit path
	for _, n := range o.steps {
		r := b.step(ctx, n)
		rows = append(rows, r)
		log.Printf("step %d: %s", n, r.logLine())
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if r.fail != "" {
			break
		}
	}
	return nil
}
