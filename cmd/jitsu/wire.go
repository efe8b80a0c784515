package main

import (
	"hash/fnv"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/jitsu-unikernel/jitsu/config"
	"github.com/jitsu-unikernel/jitsu/dnsserver"
	"github.com/jitsu-unikernel/jitsu/guestcpu"
	"github.com/jitsu-unikernel/jitsu/hypervisor"
	"github.com/jitsu-unikernel/jitsu/seeddisk"
	"github.com/jitsu-unikernel/jitsu/summoner"
	"github.com/jitsu-unikernel/jitsu/synproxy"
)

// dnsConfig builds the DNS server's zones from cfg: each zone's static
// records, the unikernel names inside it and their addresses (for zone
// transfers), its secondaries and TSIG key.
func dnsConfig(cfg *config.Config) dnsserver.Config {
	out := dnsserver.Config{SummonTTL: cfg.DNS.SummonTTL, Addrs: map[string][]netip.Addr{}}
	index := make(map[*config.Zone]int, len(cfg.Zones))
	for i := range cfg.Zones {
		z := &cfg.Zones[i]
		index[z] = i
		dz := dnsserver.Zone{
			Origin:      strings.ToLower(z.Origin),
			Records:     z.RRs,
			Unikernels:  map[string]string{},
			Secondaries: z.Secondaries,
		}
		if k := z.TSIG; k != nil {
			dz.TSIG = &dnsserver.TSIGKey{Name: k.Name, Algorithm: k.Algorithm, Secret: k.Secret}
		}
		out.Zones = append(out.Zones, dz)
	}
	for _, u := range cfg.Unikernels {
		out.Addrs[u.Name] = []netip.Addr{u.IP}
		if fd4 := cfg.Frontdoor.IPv4(); u.Frontdoor && fd4.IsValid() {
			out.Addrs[u.Name] = []netip.Addr{fd4} // transferred as the front door's
		}
		if u.IP6.IsValid() {
			out.Addrs[u.Name] = append(out.Addrs[u.Name], u.IP6)
		}
		for _, name := range u.DNS {
			if z := cfg.ZoneFor(name); z != nil {
				out.Zones[index[z]].Unikernels[strings.ToLower(name)] = u.Name
			}
		}
	}
	return out
}

// dnsRRL is the DNS server's response-rate limiting from [dns].
func dnsRRL(cfg *config.Config) dnsserver.RRLOptions {
	return dnsserver.RRLOptions{Rate: cfg.DNS.RRLRate, Slip: cfg.DNS.RRLSlip, Window: cfg.DNS.RRLWindow}
}

// unikernels converts the config's unikernels for the summoner.
func unikernels(cfg *config.Config) []summoner.Unikernel {
	out := make([]summoner.Unikernel, 0, len(cfg.Unikernels))
	for _, u := range cfg.Unikernels {
		addrs := []netip.Addr{u.IP}
		if u.IP6.IsValid() {
			addrs = append(addrs, u.IP6)
		}
		dom := config.DomainPrefix + u.Name
		out = append(out, summoner.Unikernel{
			Name:  u.Name,
			Addrs: addrs,
			Spec: hypervisor.Spec{
				Name:    dom,
				Kernel:  u.Kernel,
				Initrd:  u.Initrd,
				Cmdline: u.Cmdline,
				Disks:   u.Disks,
				// The seed-file disk (written by writeSeedDisks) is /dev/vda.
				ReadOnlyDisks: seedDisks(cfg, &u),
				MemoryBytes:   u.Memory,
				VCPUs:         u.VCPUs,
				Bridge:        cfg.Network.Bridge,
				MAC:           u.MAC,
				DomainType:    cfg.Hypervisor.DomainType,
				ConsoleLog:    filepath.Join(cfg.Hypervisor.ConsoleDir, dom+".log"),
				// The guest agent sets a restored guest's clock.
				Agent: u.Start == config.StartSnapshot,
			},
			IdleTimeout: u.IdleTimeout,
			BootTimeout: u.BootTimeout,
			StopMode:    u.StopMode,
			Ready: summoner.Ready{
				Kind:   readyKinds[u.Ready.Kind],
				Port:   uint16(u.Ready.Port),
				Regexp: u.Ready.Regexp,
				Delay:  u.Ready.Delay,
			},
			Triggers:  triggers(u.Trigger, u.Frontdoor),
			Memory:    u.Memory,
			DropAfter: u.DropAfter,
			Warm:      u.Warm,
			Snapshot:  u.Start == config.StartSnapshot,
			With:      u.With,
		})
	}
	return out
}

// readyKinds maps the config's probe words to the summoner's kinds.
var readyKinds = map[string]summoner.ReadyKind{
	config.ReadyTCP:     summoner.ReadyTCP,
	config.ReadyConsole: summoner.ReadyConsole,
	config.ReadyDelay:   summoner.ReadyDelay,
}

// triggers maps the config's trigger words to the summoner's; a
// frontdoor = true unikernel is also summoned by the front door.
func triggers(words []string, frontdoor bool) []summoner.Trigger {
	out := make([]summoner.Trigger, len(words), len(words)+1)
	for i, w := range words {
		out[i] = summoner.Trigger(w)
	}
	if frontdoor {
		out = append(out, summoner.TriggerFrontDoor)
	}
	return out
}

// synLimits converts the config's hold bounds.
func synLimits(cfg *config.Config) synproxy.Limits {
	return synproxy.Limits{
		PerAddress: cfg.SynProxy.MaxPerAddress,
		Total:      cfg.SynProxy.MaxTotal,
		Bytes:      cfg.SynProxy.MaxBytes,
		MaxAge:     cfg.SynProxy.MaxAge,
	}
}

// nfQueue is the NFQUEUE number of this instance's SYN proxy: the kernel
// binds a queue number to one process, so two jitsu daemons on one host
// (different instance ids) must not share one. It is derived from the
// instance id, in [synproxy.DefaultQueue, synproxy.DefaultQueue+queueSpan).
func nfQueue(cfg *config.Config) uint16 {
	h := fnv.New32a()
	h.Write([]byte(cfg.Daemon.ID))
	return uint16(synproxy.DefaultQueue + h.Sum32()%queueSpan)
}

// queueSpan is how many NFQUEUE numbers instance ids spread over.
const queueSpan = 4096

// seedDisks returns the read-only disks of u: its seed-file disk image
// when it has files.
func seedDisks(cfg *config.Config, u *config.Unikernel) []string {
	if len(u.Files) == 0 {
		return nil
	}
	return []string{seeddisk.Path(cfg.Hypervisor.SeedDir, u.Name)}
}

// unikernelAddrs lists every unikernel's addresses.
func unikernelAddrs(cfg *config.Config) []netip.Addr {
	var out []netip.Addr
	for _, u := range cfg.Unikernels {
		out = append(out, u.IP)
		if u.IP6.IsValid() {
			out = append(out, u.IP6)
		}
	}
	return out
}

// weighEvery is how often the guest CPU weigher looks for QEMU processes
// of jitsu's domains it has not placed yet (adopted ones, say).
const weighEvery = 5 * time.Second

// newWeigher builds the guest CPU weigher (hypervisor.guest_cpu_weight).
// It cannot stop jitsu: on error it logs and weighs nothing.
func newWeigher(cfg *config.Config, log *zap.Logger) *guestcpu.Weigher {
	l := log.Named("guestcpu")
	w, err := guestcpu.New(guestcpu.Options{Weight: cfg.Hypervisor.GuestCPUWeight, Logger: l})
	if err != nil {
		l.Warn("the guests keep their CPU weight", zap.Error(err))
		w, _ = guestcpu.New(guestcpu.Options{Logger: l})
	}
	w.SetDomains(domainNames(cfg))
	return w
}

// domainNames are the libvirt domain names of the configured unikernels.
func domainNames(cfg *config.Config) []string {
	out := make([]string, 0, len(cfg.Unikernels))
	for _, u := range cfg.Unikernels {
		out = append(out, config.DomainPrefix+u.Name)
	}
	return out
}
