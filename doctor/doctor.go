// Package doctor checks that a host can run jitsu with a given config and
// says how to fix each problem: libvirtd reachable, the domain type usable
// (KVM by a short probe boot, since a /dev/kvm that exists can still hang
// guests, as on PVM hosts), the bridge present, the synproxy's
// capabilities and kernel modules, the DNS listen addresses free, and every
// kernel, initrd and disk readable, also by the QEMU user.
package doctor

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jitsu-unikernel/jitsu/config"
	"github.com/jitsu-unikernel/jitsu/guestcpu"
)

// DefaultProbeTimeout is how long the KVM probe boot may take.
const DefaultProbeTimeout = 5 * time.Second

// Status is a check's outcome.
type Status string

// Outcomes. Only FAIL makes a Report fail; SKIP means the check did not
// apply or could not run because of an earlier failure.
const (
	Pass Status = "PASS"
	Fail Status = "FAIL"
	Skip Status = "SKIP"
	// Warn: worth knowing, but nothing fails (e.g. the unikernels cannot
	// all run at once).
	Warn Status = "WARN"
)

// Result is one check's outcome.
type Result struct {
	// Check names what was checked, e.g. "bridge br-jitsu".
	Check string `json:"check"`
	// Status is PASS, FAIL or SKIP.
	Status Status `json:"status"`
	// Detail says what was found.
	Detail string `json:"detail,omitempty"`
	// Fix says what to do about a failure.
	Fix string `json:"fix,omitempty"`
}

// Report is every check's outcome.
type Report struct {
	Results []Result `json:"results"`
}

// OK reports whether no check failed.
func (r Report) OK() bool {
	for _, res := range r.Results {
		if res.Status == Fail {
			return false
		}
	}
	return true
}

// Failed returns the failed checks.
func (r Report) Failed() []Result {
	var out []Result
	for _, res := range r.Results {
		if res.Status == Fail {
			out = append(out, res)
		}
	}
	return out
}

// Options tunes Run.
type Options struct {
	// SkipProbe skips the KVM probe boot.
	SkipProbe bool
	// ProbeTimeout bounds the probe boot; 0 = DefaultProbeTimeout.
	ProbeTimeout time.Duration
	// ProbeKernel is the multiboot kernel of the probe boot, which must
	// print ProbeMarker on the serial console; "" = one generated on the
	// fly (see ProbeELF).
	ProbeKernel string
	// Out receives one line per check as it completes (and its fix); nil =
	// nothing is printed.
	Out io.Writer
}

// Run runs every check against cfg and the host, printing each outcome to
// opts.Out as it goes.
func Run(ctx context.Context, cfg *config.Config, opts Options) Report {
	if opts.ProbeTimeout <= 0 {
		opts.ProbeTimeout = DefaultProbeTimeout
	}
	var rep Report
	add := func(rs ...Result) {
		for _, r := range rs {
			rep.Results = append(rep.Results, r)
			if opts.Out != nil {
				Print(opts.Out, r)
			}
		}
	}
	add(checkHypervisor(ctx, cfg.Hypervisor.URI, cfg.Hypervisor.DomainType, opts)...)
	add(checkBridge(cfg.Network.Bridge, "/sys/class/net"))
	add(checkCapabilities("/proc/self/status", needsBind(cfg.DNS.Listen)))
	if cfg.SynProxy.Enabled {
		add(checkNFTables(), checkNFQueue("/proc", "/sys", "/lib/modules"))
	} else {
		add(Result{Check: "netfilter (nf_tables, nfnetlink_queue)", Status: Skip, Detail: "synproxy disabled"})
	}
	add(checkListen(cfg.DNS.Listen)...)
	if cfg.Metrics.Listen != "" {
		add(checkListenTCP("metrics listen address", cfg.Metrics.Listen))
	}
	add(checkPaths(imagePaths(cfg), qemuUser())...)
	add(checkFit(cfg, config.HostResources()))
	add(checkGuestCPU(cfg.Hypervisor.GuestCPUWeight, "/proc"))
	return rep
}

// Print writes one result: "PASS  check: detail", and for a failure an
// indented "fix:" line.
func Print(w io.Writer, r Result) {
	line := fmt.Sprintf("%-4s  %s", r.Status, r.Check)
	if r.Detail != "" {
		line += ": " + r.Detail
	}
	fmt.Fprintln(w, line)
	if r.Fix != "" {
		fmt.Fprintf(w, "      fix: %s\n", strings.ReplaceAll(r.Fix, "\n", "\n           "))
	}
}

// imagePaths lists every kernel, initrd and disk of cfg once, in order,
// with the unikernels using each.
func imagePaths(cfg *config.Config) []imagePath {
	var out []imagePath
	idx := map[string]int{}
	add := func(kind, path, uk string) {
		if path == "" {
			return
		}
		if i, ok := idx[path]; ok {
			out[i].users = append(out[i].users, uk)
			return
		}
		idx[path] = len(out)
		out = append(out, imagePath{kind: kind, path: path, users: []string{uk}})
	}
	for _, u := range cfg.Unikernels {
		add("kernel", u.Kernel, u.Name)
		add("initrd", u.Initrd, u.Name)
		for _, d := range u.Disks {
			add("disk", d, u.Name)
		}
	}
	return out
}

// imagePath is one file a unikernel boots from.
type imagePath struct {
	kind, path string
	users      []string
}

// checkFit warns when the configured unikernels cannot all run at once
// (config.FitWarnings).
func checkFit(cfg *config.Config, h config.Host) Result {
	r := Result{Check: "budget and host memory", Status: Pass,
		Detail: fmt.Sprintf("%d unikernels fit (host %s, budget.memory %s, budget.max_running %d)",
			len(cfg.Unikernels), config.FormatSize(h.Memory), config.FormatSize(cfg.Budget.Memory), cfg.Budget.MaxRunning)}
	if ws := cfg.FitWarnings(h); len(ws) > 0 {
		r.Status, r.Detail = Warn, strings.Join(ws, "; ")
		r.Fix = "fine if they are not all used at once (idle ones are evicted); else raise budget.max_running or budget.memory, or give the host more memory"
	}
	return r
}

// checkGuestCPU reports how the guests' CPU weight is lowered
// (hypervisor.guest_cpu_weight): a cgroup cpu controller passes, none
// warns, weight 0 is skipped.
func checkGuestCPU(weight int, proc string) Result {
	r := Result{Check: "guest CPU weight"}
	if weight == 0 {
		r.Status, r.Detail = Skip, "hypervisor.guest_cpu_weight = 0: the guests keep the weight libvirt gives them"
		return r
	}
	mode, mount := guestcpu.Detect(proc)
	if mode == guestcpu.ModeNone {
		r.Status = Warn
		r.Detail = fmt.Sprintf("no cgroup cpu controller is mounted: the guests keep their CPU weight (not %d), and DNS answers may wait behind busy guests", weight)
		r.Fix = "mount the cgroup cpu controller (v1 cpu, or v2 with cpu in cgroup.controllers)"
		return r
	}
	r.Status = Pass
	r.Detail = fmt.Sprintf("%s at %s: guests weigh %d (jitsu 100)", mode, mount, weight)
	return r
}
