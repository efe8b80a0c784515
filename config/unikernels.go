package config

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"text/template"

	"github.com/miekg/dns"

	"github.com/jitsu-unikernel/jitsu/hypervisor"
)

// CmdlineData is what a cmdline template sees: {{.IP}}, {{.Gateway}} and
// so on. Every field is a string or a number, empty or 0 when unset.
type CmdlineData struct {
	Name     string // the unikernel's name
	IP       string // its IPv4 address
	Gateway  string // the address of network.gateway
	Netmask  string // the netmask of network.gateway, dotted: "255.255.255.0"
	Prefix   int    // the prefix length of network.gateway: 24
	IP6      string // its IPv6 address
	Gateway6 string // the address of network.gateway6
	Prefix6  int    // the prefix length of network.gateway6
	MAC      string // its MAC address, "52:54:00:12:34:56"
}

// sampleCmdline is used to try a template out before any unikernel uses it.
var sampleCmdline = CmdlineData{
	Name: "example", IP: "10.0.0.2", Gateway: "10.0.0.1", Netmask: "255.255.255.0", Prefix: 24,
	IP6: "fd00::2", Gateway6: "fd00::1", Prefix6: 64, MAC: "52:54:00:00:00:01",
}

// parseCmdline parses a cmdline template and tries it on sample data, so
// that unknown fields are found even before a unikernel uses it.
func parseCmdline(text string) (*template.Template, error) {
	t, err := template.New("cmdline").Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, err
	}
	if _, err := expand(t, sampleCmdline); err != nil {
		return nil, err
	}
	return t, nil
}

func expand(t *template.Template, data CmdlineData) (string, error) {
	var b strings.Builder
	if err := t.Execute(&b, data); err != nil {
		return "", err
	}
	return b.String(), nil
}

// cmdTmpl is a parsed cmdline template and the key it came from.
type cmdTmpl struct {
	t    *template.Template
	path string
	bad  bool // the key was set but is not a valid template (reported)
}

var unikernelName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// defaults decodes [defaults] into v and returns the default cmdline
// template.
func (d *decoder) defaults(t *table, v *UnikernelDefaults) cmdTmpl {
	*v = UnikernelDefaults{
		Cmdline:     DefaultCmdline,
		Memory:      DefaultMemory,
		VCPUs:       DefaultVCPUs,
		IdleTimeout: DefaultIdleTimeout,
		BootTimeout: DefaultBootTimeout,
		StopMode:    DefaultStopMode,
		Trigger:     DefaultTriggers,
		DropAfter:   DefaultDropAfter,
	}
	v.Ready, _ = ParseReady(DefaultReady)
	tmpl := d.vmKeys(t, v)
	if tmpl.t == nil && !tmpl.bad {
		tmpl.t = template.Must(parseCmdline(DefaultCmdline))
		tmpl.path = t.key("cmdline")
	}
	t.done()
	return tmpl
}

// vmKeys decodes the keys [defaults] and [[unikernel]] share into v,
// keeping v's values for keys that are absent or invalid. It returns the
// cmdline template when the key is set.
func (d *decoder) vmKeys(t *table, v *UnikernelDefaults) cmdTmpl {
	if s, ok := t.str("kernel"); ok && d.absPath(t, "kernel", s) {
		v.Kernel = s
	}
	if s, ok := t.str("initrd"); ok && (s == "" || d.absPath(t, "initrd", s)) {
		v.Initrd = s // "" overrides a default initrd with none
	}
	var tmpl cmdTmpl
	if s, ok := t.str("cmdline"); ok {
		v.Cmdline = s
		tmpl.path = t.key("cmdline")
		tt, err := parseCmdline(s)
		if err != nil {
			t.errorf("cmdline", "bad template: %v", err)
			tmpl.bad = true
		}
		tmpl.t = tt
	}
	if m, ok := t.size("memory"); ok {
		switch {
		case m < 1<<20:
			t.errorf("memory", "%s is too little (want at least 1MiB)", FormatSize(m))
		case m%1024 != 0:
			t.errorf("memory", "%d bytes is not a whole number of KiB", m)
		default:
			v.Memory = m
		}
	}
	if n, ok := t.integer("vcpus", 1, 256); ok {
		v.VCPUs = int(n)
	}
	if dur, ok := t.duration("idle_timeout"); ok {
		v.IdleTimeout = dur
	}
	if dur, ok := t.duration("drop_after"); ok {
		v.DropAfter = dur
	}
	if dur, ok := t.duration("boot_timeout"); ok && positive(t, "boot_timeout", dur) {
		v.BootTimeout = dur
	}
	if s, ok := t.str("stop_mode"); ok {
		if m, err := hypervisor.ParseStopMode(s); err == nil {
			v.StopMode = m
		} else {
			t.errorf("stop_mode", "%v", err)
		}
	}
	if l, ok := t.strList("trigger"); ok {
		d.triggers(t, l, v)
	}
	if s, ok := t.str("ready"); ok {
		r, err := ParseReady(s)
		if err != nil {
			t.errorf("ready", "%v", err)
		} else {
			v.Ready = r
		}
	}
	return tmpl
}

// triggers checks the trigger key's list into v.Trigger.
func (d *decoder) triggers(t *table, l []elem, v *UnikernelDefaults) {
	if len(l) == 0 {
		t.errorf("trigger", "empty: give what may summon it, e.g. [%q, %q]", TriggerDNS, TriggerTCP)
		return
	}
	var out []string
	ok := true
	for _, e := range l {
		switch {
		case !slices.Contains(Triggers, e.s):
			d.errorf(e.path, "unknown trigger %q (want some of %s)", e.s, strings.Join(Triggers, ", "))
			ok = false
		case slices.Contains(out, e.s):
			d.errorf(e.path, "trigger %q given twice", e.s)
			ok = false
		default:
			out = append(out, e.s)
		}
	}
	if ok {
		v.Trigger = out
	}
}

// claim is who first used a name, address or MAC.
type claim struct {
	name string
	line int
}

func (c claim) String() string { return fmt.Sprintf("unikernel %q (line %d)", c.name, c.line) }

// unikernels decodes the [[unikernel]] tables into c.Unikernels and checks
// them against the network, the zones, the budget and each other.
func (d *decoder) unikernels(c *Config, ts []*table, defTmpl cmdTmpl) {
	if len(ts) > 0 && !c.Network.Gateway.IsValid() && !d.hasError("network.gateway") {
		line := d.pos.line("network")
		if line == 0 {
			line = d.pos.line(ts[0].path)
		}
		d.errorAt(line, "network.gateway", "missing: unikernels need the host's address and subnet on the bridge, e.g. \"10.213.0.1/24\"")
	}
	var (
		names   = map[string]claim{}
		ips     = map[netip.Addr]claim{}
		macs    = map[string]claim{}
		dnsName = map[string]claim{}
		records = d.indexRecords(c)
		withs   = map[int][]elem{}
	)
	for _, t := range ts {
		u := Unikernel{Line: d.pos.line(t.path)}
		v := c.Defaults
		tmpl := d.vmKeys(t, &v)
		if tmpl.t == nil && !tmpl.bad {
			tmpl = defTmpl
		}
		u.Kernel, u.Initrd, u.Memory, u.VCPUs = v.Kernel, v.Initrd, v.Memory, v.VCPUs
		u.IdleTimeout, u.BootTimeout, u.StopMode, u.Ready = v.IdleTimeout, v.BootTimeout, v.StopMode, v.Ready
		u.Trigger, u.DropAfter = v.Trigger, v.DropAfter
		if u.Kernel == "" && !t.has("kernel") {
			t.errorf("kernel", "missing: set the kernel image here or in [defaults]")
		}

		if s, ok := t.str("name"); ok {
			if !unikernelName.MatchString(s) {
				t.errorf("name", "%q is not a valid name (letters, digits, '-', '_', '.', at most 63)", s)
			} else if first, dup := names[s]; dup {
				t.errorf("name", "%q is already the name of %s", s, first)
				u.Name = s
			} else {
				names[s] = claim{s, u.Line}
				u.Name = s
			}
		} else if !t.has("name") {
			t.errorf("name", "missing: every [[unikernel]] needs a name")
		}
		me := claim{u.Name, u.Line}

		if l, ok := t.strList("dns"); ok {
			if len(l) == 0 {
				t.errorf("dns", "empty: give the names it answers for")
			}
			for _, e := range l {
				if n, ok := d.unikernelDNS(c, records, e.path, e.s); ok {
					if first, dup := dnsName[n]; dup {
						d.errorf(e.path, "%s is already a name of %s", n, first)
						continue
					}
					dnsName[n] = me
					u.DNS = append(u.DNS, n)
				}
			}
		} else if !t.has("dns") {
			t.errorf("dns", "missing: give the names it answers for, e.g. [\"www.example.org.\"]")
		}

		if s, ok := t.str("ip"); ok {
			a, err := netip.ParseAddr(s)
			gw := c.Network.Gateway
			switch {
			case err != nil || !a.Is4():
				t.errorf("ip", "not an IPv4 address: %q", s)
			case !gw.IsValid():
				// reported at network.gateway
			case !gw.Contains(a):
				t.errorf("ip", "%s is outside network.gateway %s", a, gw.Masked())
			case a == gw.Addr():
				t.errorf("ip", "%s is the gateway's own address", a)
			case a == gw.Masked().Addr() || a == broadcast(gw):
				t.errorf("ip", "%s is the network or broadcast address of %s", a, gw.Masked())
			default:
				if first, dup := ips[a]; dup {
					t.errorf("ip", "%s is already the address of %s", a, first)
					break
				}
				ips[a] = me
				u.IP = a
			}
		} else if !t.has("ip") {
			t.errorf("ip", "missing: every [[unikernel]] needs an IPv4 address inside network.gateway")
		}

		if s, ok := t.str("ip6"); ok {
			a, err := netip.ParseAddr(s)
			gw := c.Network.Gateway6
			switch {
			case err != nil || !a.Is6() || a.Is4In6() || a.Zone() != "":
				t.errorf("ip6", "not an IPv6 address: %q", s)
			case !gw.IsValid():
				t.errorf("ip6", "an IPv6 address needs network.gateway6")
			case !gw.Contains(a):
				t.errorf("ip6", "%s is outside network.gateway6 %s", a, gw.Masked())
			case a == gw.Addr() || a == gw.Masked().Addr():
				t.errorf("ip6", "%s is the gateway's or the subnet's own address", a)
			default:
				if first, dup := ips[a]; dup {
					t.errorf("ip6", "%s is already the address of %s", a, first)
					break
				}
				ips[a] = me
				u.IP6 = a
			}
		}

		if s, ok := t.str("mac"); ok {
			m, err := net.ParseMAC(s)
			switch {
			case err != nil || len(m) != 6:
				t.errorf("mac", "not an Ethernet MAC address: %q (want e.g. \"52:54:00:12:34:56\")", s)
			case m[0]&1 != 0:
				t.errorf("mac", "%s is a multicast address", m)
			default:
				if first, dup := macs[m.String()]; dup {
					t.errorf("mac", "%s is already the MAC address of %s", m, first)
					break
				}
				macs[m.String()] = me
				u.MAC = m
			}
		}

		if l, ok := t.strList("disks"); ok {
			for _, e := range l {
				if !filepath.IsAbs(e.s) {
					d.errorf(e.path, "%q is not an absolute path", e.s)
				}
			}
			u.Disks = elemStrings(l)
		}

		d.unikernelExtras(c, t, &u)
		if l := d.warmKeys(c, t, &u); l != nil {
			withs[len(c.Unikernels)] = l
		}
		d.startKey(t, &u)

		if c.Budget.Memory > 0 && u.Memory > c.Budget.Memory {
			t.errorf("memory", "%s does not fit in budget.memory (%s)", FormatSize(u.Memory), FormatSize(c.Budget.Memory))
		}

		if tmpl.t != nil && u.IP.IsValid() && c.Network.Gateway.IsValid() {
			data := cmdlineData(c, &u)
			s, err := expand(tmpl.t, data)
			if err != nil {
				d.errorf(tmpl.path, "bad template for unikernel %q: %v", u.Name, err)
			}
			u.Cmdline = s
		}
		t.done()
		c.Unikernels = append(c.Unikernels, u)
	}
	d.deriveMACs(c, ts, macs)
	d.groups(c, withs, names)
}

// Values of the [[unikernel]] key start.
const (
	// StartBoot: every cold start boots the kernel (the default).
	StartBoot = "boot"
	// StartSnapshot: the first boot is saved to a file once ready; later
	// cold starts restore it. With warm, the warm pool's domain is that
	// file restored paused, so a summon resumes a guest past its boot.
	StartSnapshot = "snapshot"
)

// startKey decodes the start key into u and checks it against the keys it
// conflicts with.
func (d *decoder) startKey(t *table, u *Unikernel) {
	u.Start = StartBoot
	s, ok := t.str("start")
	if !ok {
		return
	}
	switch s {
	case StartBoot:
	case StartSnapshot:
		switch {
		case u.StopMode == hypervisor.StopSuspend || u.StopMode == hypervisor.StopSave:
			t.errorf("start", "%q, but stop_mode is %s: a snapshot unikernel is stopped with destroy or shutdown (its next start restores the snapshot)", s, u.StopMode)
		case u.Ready.Kind == ReadyConsole:
			t.errorf("start", "%q, but ready is a console probe: a restored guest prints no boot messages (use tcp or delay)", s)
		}
	default:
		t.errorf("start", "unknown start %q (want %q or %q)", s, StartBoot, StartSnapshot)
		return
	}
	u.Start = s
}

// warmKeys decodes the warm and with keys into u and returns with's
// elements (checked by groups once every name is known).
func (d *decoder) warmKeys(c *Config, t *table, u *Unikernel) []elem {
	if v, ok := t.boolean("warm"); ok {
		u.Warm = v
		switch {
		case v && (u.StopMode == hypervisor.StopSuspend || u.StopMode == hypervisor.StopSave):
			t.errorf("warm", "true, but stop_mode is %s: a warm unikernel is stopped with destroy or shutdown (its next domain waits paused in the warm pool)", u.StopMode)
		case v && c.Budget.WarmMax == 0:
			t.errorf("warm", "true, but budget.warm_max is 0: no warm domain may wait")
		case v && c.Budget.WarmMemory > 0 && u.Memory > c.Budget.WarmMemory:
			t.errorf("warm", "true, but its memory (%s) does not fit in budget.warm_memory (%s)", FormatSize(u.Memory), FormatSize(c.Budget.WarmMemory))
		}
	}
	l, ok := t.strList("with")
	if !ok {
		return nil
	}
	if len(l) == 0 {
		t.errorf("with", "empty: give the unikernels summoned with it, or leave the key out")
	}
	return l
}

// groups checks every with key against the unikernels' names: each must
// name another unikernel, once.
func (d *decoder) groups(c *Config, withs map[int][]elem, names map[string]claim) {
	for i, l := range withs {
		u := &c.Unikernels[i]
		for _, e := range l {
			_, known := names[e.s]
			switch {
			case !known:
				d.errorf(e.path, "%q is not the name of a unikernel", e.s)
			case e.s == u.Name:
				d.errorf(e.path, "%q is the unikernel itself", e.s)
			case slices.Contains(u.With, e.s):
				d.errorf(e.path, "%q given twice", e.s)
			default:
				u.With = append(u.With, e.s)
			}
		}
	}
}

// deriveMACs gives every unikernel without a mac key the MAC derived from
// its domain's name, and rejects one that collides with another's,
// explicit or derived (the derivation keeps 24 bits of a hash).
func (d *decoder) deriveMACs(c *Config, ts []*table, macs map[string]claim) {
	seen := map[string]bool{}
	for i := range c.Unikernels {
		u := &c.Unikernels[i]
		dupName := seen[u.Name] // already an error
		seen[u.Name] = true
		if u.MAC != nil || u.Name == "" || dupName || ts[i].has("mac") {
			continue
		}
		m := DeriveMAC(DomainPrefix + u.Name)
		if first, dup := macs[m.String()]; dup {
			ts[i].errorf("name", "the MAC address derived from the name %q, %s, is already the MAC address of %s: "+
				"set mac = \"52:54:00:...\" for one of them", u.Name, m, first)
			continue
		}
		macs[m.String()] = claim{u.Name, u.Line}
		u.MAC = m
	}
}

// DomainPrefix prefixes the libvirt domain name of every unikernel, so
// that jitsu's domains are recognisable in `virsh list` beside the host's
// others.
const DomainPrefix = "jitsu-"

// DeriveMAC returns the MAC address of a unikernel whose config sets none:
// a stable locally administered unicast address with the 52:54:00 prefix
// QEMU uses, derived from its domain name, so that the unikernel keeps its
// MAC across boots and restarts of jitsu.
func DeriveMAC(domain string) net.HardwareAddr {
	// FNV-1a, 32 bit.
	h := uint32(2166136261)
	for i := 0; i < len(domain); i++ {
		h ^= uint32(domain[i])
		h *= 16777619
	}
	return net.HardwareAddr{0x52, 0x54, 0x00, byte(h >> 16), byte(h >> 8), byte(h)}
}

// hasError reports whether a problem with the key at path was recorded.
func (d *decoder) hasError(path string) bool {
	for _, e := range d.errs {
		if e.Key == path {
			return true
		}
	}
	return false
}

// unikernelDNS checks one of a unikernel's DNS names against the zones
// and their static records, returning it canonical.
func (d *decoder) unikernelDNS(c *Config, records map[string][]zoneRR, path, s string) (string, bool) {
	n := canonicalName(s)
	if _, ok := dns.IsDomainName(n); !ok || strings.TrimSpace(s) == "" || n == "." {
		d.errorf(path, "not a domain name: %q", s)
		return "", false
	}
	if strings.Contains(n, "*") {
		d.errorf(path, "%s: wildcard names cannot be unikernel names", n)
		return "", false
	}
	if c.ZoneFor(n) == nil {
		if !d.zonesBroken {
			d.errorf(path, "%s is outside every zone", n)
		}
		return "", false
	}
	ok := true
	for _, r := range records[n] {
		switch t := r.rr.Header().Rrtype; t {
		case dns.TypeCNAME:
			d.errorf(path, "%s has a static CNAME record (line %d): a unikernel name cannot be an alias", n, d.pos.line(r.path))
			ok = false
		case dns.TypeA, dns.TypeAAAA:
			d.errorf(path, "%s has a static %s record (line %d): a unikernel's addresses come from its ip and ip6 keys",
				n, dns.TypeToString[t], d.pos.line(r.path))
			ok = false
		}
	}
	return n, ok
}

// cmdlineData returns the template data for u.
func cmdlineData(c *Config, u *Unikernel) CmdlineData {
	gw := c.Network.Gateway
	data := CmdlineData{
		Name:    u.Name,
		IP:      u.IP.String(),
		Gateway: gw.Addr().String(),
		Netmask: net.IP(net.CIDRMask(gw.Bits(), 32)).String(),
		Prefix:  gw.Bits(),
	}
	if u.IP6.IsValid() {
		data.IP6 = u.IP6.String()
	}
	if g6 := c.Network.Gateway6; g6.IsValid() {
		data.Gateway6, data.Prefix6 = g6.Addr().String(), g6.Bits()
	}
	if u.MAC != nil {
		data.MAC = u.MAC.String()
	}
	return data
}
