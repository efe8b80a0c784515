package config

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// AdmissionConfig is [admission]: how many boots the internet may cause.
// A boot is admitted when both the host's bucket and the asking source
// prefix's (/24, /56) have a token; the operator's `jitsu start` bypasses
// admission.
type AdmissionConfig struct {
	// BootRate and BootBurst: boots per second in all, and how many may
	// start at once after a quiet period.
	BootRate  float64
	BootBurst int
	// PrefixRate and PrefixBurst: the same for each source prefix.
	PrefixRate  float64
	PrefixBurst int
	// OnRefuse is what a refused query gets: OnRefuseAnswer (the
	// addresses, as if admitted) or OnRefuseServfail.
	OnRefuse string
}

// What a query whose boot admission refused gets (admission.on_refuse).
const (
	OnRefuseAnswer   = "answer"
	OnRefuseServfail = "servfail"
)

// Defaults of [admission], [budget] and [defaults] drop_after that do not
// depend on the host.
const (
	// DefaultPrefixRate is admission.prefix_rate: one boot every 5 s per
	// source prefix, once its burst is used.
	DefaultPrefixRate = 0.2
	// DefaultPrefixBurst is admission.prefix_burst.
	DefaultPrefixBurst = 8
	// DefaultOnRefuse is admission.on_refuse.
	DefaultOnRefuse = OnRefuseAnswer
	// DefaultMinUp is budget.min_up: a unikernel stays up this long after
	// its boot started before the budget may evict it.
	DefaultMinUp = 30 * time.Second
	// DefaultDropAfter is defaults.drop_after: a unikernel suspended or
	// saved this long is dropped (destroyed, save discarded).
	DefaultDropAfter = 24 * time.Hour
	// GuestOverhead is what each running guest costs the host beyond its
	// memory (QEMU itself), in the derived max_running.
	GuestOverhead = 64 << 20
	maxRate       = 1e6
)

// Host is what the defaults derived from the host are derived from.
type Host struct {
	Cores  int
	Memory uint64 // bytes of RAM; 0 when unknown
}

// HostResources returns this host's cores and memory. Tests replace it.
var HostResources = func() Host {
	return Host{Cores: runtime.NumCPU(), Memory: memTotal("/proc/meminfo")}
}

// memTotal reads MemTotal from a meminfo file; 0 if it cannot.
func memTotal(path string) uint64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) >= 2 && fs[0] == "MemTotal:" {
			kb, err := strconv.ParseUint(fs[1], 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return 0
}

// DefaultAdmission is [admission] on a host with cores: one boot per
// second per two cores (at least one), a burst of two per core.
func DefaultAdmission(cores int) AdmissionConfig {
	cores = max(cores, 1)
	return AdmissionConfig{
		BootRate:    max(float64(cores)/2, 1),
		BootBurst:   2 * cores,
		PrefixRate:  DefaultPrefixRate,
		PrefixBurst: DefaultPrefixBurst,
		OnRefuse:    DefaultOnRefuse,
	}
}

// Defaults of the warm pool ([budget] warm_max and warm_memory).
const (
	// DefaultWarmMax is budget.warm_max: warm domains waiting at once.
	DefaultWarmMax = 4
	// DefaultWarmMemory is budget.warm_memory: their guest memory in all.
	DefaultWarmMemory = 1 << 30
)

// DefaultGuestCPUWeight is hypervisor.guest_cpu_weight: the guests'
// QEMU processes together weigh a tenth of jitsu (cgroup v2 scale, where
// 100 is the default). A weight matters only when the CPU is short: the
// guests then get 10/110 of it while jitsu answers, and all of it when
// jitsu is idle, so a DNS answer never waits behind a busy guest.
const DefaultGuestCPUWeight = 10

// DefaultMaxStarting is budget.max_starting on a host with cores: one
// boot in flight per core (at least one). A boot is CPU work from the
// create call to ready (QEMU's start-up and libvirt's handshake, then the
// guest's boot, one busy vCPU under TCG); more boots than cores at once
// only share the cores, so each finishes later and none sooner, and the
// last ones time out.
func DefaultMaxStarting(cores int) int { return max(cores, 1) }

// DefaultBudgetMemory is budget.memory on a host with mem bytes of RAM:
// three quarters of it (the rest is the host's, jitsu's and QEMU's), in
// whole MiB; 0 (unlimited) when mem is unknown.
func DefaultBudgetMemory(mem uint64) uint64 { return mem / 4 * 3 &^ (1<<20 - 1) }

// DefaultMaxRunning is budget.max_running on a host with mem bytes of RAM:
// as many guests of the default memory as fit in DefaultBudgetMemory, each
// with GuestOverhead (at least 1); 0 (unlimited) when mem is unknown.
func DefaultMaxRunning(mem uint64) int {
	if mem == 0 {
		return 0
	}
	return max(int(DefaultBudgetMemory(mem)/(DefaultMemory+GuestOverhead)), 1)
}

// admission decodes [admission].
func (d *decoder) admission(t *table, c *AdmissionConfig) {
	*c = DefaultAdmission(HostResources().Cores)
	if v, ok := t.rate("boot_rate"); ok {
		c.BootRate = v
	}
	if v, ok := t.integer("boot_burst", 1, math.MaxInt32); ok {
		c.BootBurst = int(v)
	}
	if v, ok := t.rate("prefix_rate"); ok {
		c.PrefixRate = v
	}
	if v, ok := t.integer("prefix_burst", 1, math.MaxInt32); ok {
		c.PrefixBurst = int(v)
	}
	if s, ok := t.str("on_refuse"); ok {
		switch s {
		case OnRefuseAnswer, OnRefuseServfail:
			c.OnRefuse = s
		default:
			t.errorf("on_refuse", "%q is not %q or %q", s, OnRefuseAnswer, OnRefuseServfail)
		}
	}
	t.done()
}

// rate returns the positive number (integer or float) at k: a rate per
// second.
func (t *table) rate(k string) (float64, bool) {
	v, ok := t.get(k)
	if !ok {
		return 0, false
	}
	var f float64
	switch n := v.(type) {
	case int64:
		f = float64(n)
	case float64:
		f = n
	default:
		t.wrongType(k, "number", v)
		return 0, false
	}
	if !(f > 0 && f <= maxRate) {
		t.errorf(k, "%v is out of range (a rate per second above 0, at most %g)", f, float64(maxRate))
		return 0, false
	}
	return f, true
}

// FitWarnings says when the configured unikernels cannot all run at once:
// more of them than budget.max_running, more guest memory than
// budget.memory, or than the host has. Each is fine (the budget evicts
// idle ones) but worth knowing: `jitsu check` and `jitsu doctor` print
// them.
func (c *Config) FitWarnings(h Host) []string {
	var out []string
	var mem uint64
	for _, u := range c.Unikernels {
		mem += u.Memory
	}
	n := len(c.Unikernels)
	if b := c.Budget.MaxRunning; b > 0 && n > b {
		out = append(out, fmt.Sprintf("%d unikernels are configured and budget.max_running is %d: at most %d run at once, idle ones are evicted to make room", n, b, b))
	}
	if b := c.Budget.Memory; b > 0 && mem > b {
		out = append(out, fmt.Sprintf("the unikernels need %s of guest memory in all and budget.memory is %s: they cannot all run at once", FormatSize(mem), FormatSize(b)))
	}
	if h.Memory > 0 && (c.Budget.Memory == 0 || c.Budget.Memory > h.Memory) && mem+uint64(n)*GuestOverhead > h.Memory {
		out = append(out, fmt.Sprintf("the unikernels need %s of guest memory (and about %s for QEMU) but the host has %s: set budget.memory",
			FormatSize(mem), FormatSize(uint64(n)*GuestOverhead), FormatSize(h.Memory)))
	}
	return out
}
