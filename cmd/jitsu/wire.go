package main

import (
	"net/netip"
	"path/filepath"
	"strings"

	"github.com/jitsu-unikernel/jitsu/config"
	"github.com/jitsu-unikernel/jitsu/dnsserver"
	"github.com/jitsu-unikernel/jitsu/hypervisor"
	"github.com/jitsu-unikernel/jitsu/summoner"
	"github.com/jitsu-unikernel/jitsu/synproxy"
)

// domainPrefix prefixes every domain jitsu creates, so that its domains are
// recognisable in `virsh list` beside the host's others.
const domainPrefix = "jitsu-"

// dnsConfig builds the DNS server's zones from cfg: each zone's static
// records, and the unikernel names inside it.
func dnsConfig(cfg *config.Config) dnsserver.Config {
	out := dnsserver.Config{SummonTTL: cfg.DNS.SummonTTL}
	index := make(map[*config.Zone]int, len(cfg.Zones))
	for i := range cfg.Zones {
		z := &cfg.Zones[i]
		index[z] = i
		out.Zones = append(out.Zones, dnsserver.Zone{
			Origin:     strings.ToLower(z.Origin),
			Records:    z.RRs,
			Unikernels: map[string]string{},
		})
	}
	for _, u := range cfg.Unikernels {
		for _, name := range u.DNS {
			if z := cfg.ZoneFor(name); z != nil {
				out.Zones[index[z]].Unikernels[strings.ToLower(name)] = u.Name
			}
		}
	}
	return out
}

// unikernels converts the config's unikernels for the summoner.
func unikernels(cfg *config.Config) []summoner.Unikernel {
	out := make([]summoner.Unikernel, 0, len(cfg.Unikernels))
	for _, u := range cfg.Unikernels {
		addrs := []netip.Addr{u.IP}
		if u.IP6.IsValid() {
			addrs = append(addrs, u.IP6)
		}
		dom := domainPrefix + u.Name
		mac := u.MAC
		if len(mac) == 0 {
			mac = hypervisor.DeriveMAC(dom)
		}
		out = append(out, summoner.Unikernel{
			Name:  u.Name,
			Addrs: addrs,
			Spec: hypervisor.Spec{
				Name:        dom,
				Kernel:      u.Kernel,
				Initrd:      u.Initrd,
				Cmdline:     u.Cmdline,
				Disks:       u.Disks,
				MemoryBytes: u.Memory,
				VCPUs:       u.VCPUs,
				Bridge:      cfg.Network.Bridge,
				MAC:         mac,
				DomainType:  cfg.Hypervisor.DomainType,
				ConsoleLog:  filepath.Join(cfg.Hypervisor.ConsoleDir, dom+".log"),
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
			Triggers: triggers(u.Trigger),
			Memory:   u.Memory,
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

// triggers maps the config's trigger words to the summoner's.
func triggers(words []string) []summoner.Trigger {
	out := make([]summoner.Trigger, len(words))
	for i, w := range words {
		out[i] = summoner.Trigger(w)
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
