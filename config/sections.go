package config

import (
	"math"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// config decodes the whole document.
func (d *decoder) config(root *table) *Config {
	c := &Config{}
	d.daemon(root.sub("daemon"), &c.Daemon)
	d.dnsSection(root.sub("dns"), &c.DNS)
	c.Zones = d.zones(root.tables("zone"))
	d.hypervisor(root.sub("hypervisor"), &c.Hypervisor)
	d.network(root.sub("network"), &c.Network)
	d.synproxy(root.sub("synproxy"), &c.SynProxy)
	d.budget(root.sub("budget"), &c.Budget)
	d.admission(root.sub("admission"), &c.Admission)
	d.metrics(root.sub("metrics"), &c.Metrics)
	d.control(root.sub("control"), &c.Control)
	d.frontdoor(root.sub("frontdoor"), &c.Frontdoor)
	tmpl := d.defaults(root.sub("defaults"), &c.Defaults)
	uts := root.tables("unikernel")
	root.done()
	d.checkZones(c)
	d.checkFrontdoor(c)
	d.unikernels(c, uts, tmpl)
	d.checkWildcardTargets(c)
	return c
}

// instanceID is what an instance id may be: it becomes part of an nftables
// table name and of a file name.
var instanceID = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

func (d *decoder) daemon(t *table, c *DaemonConfig) {
	c.ID = DefaultID(d.file)
	if s, ok := t.str("id"); ok {
		if !instanceID.MatchString(s) {
			t.errorf("id", "%q is not a valid instance id (lower-case letters, digits, '-', '_', at most 32)", s)
		}
		c.ID = s
	}
	c.LockDir = DefaultLockDir
	if s, ok := t.str("lock_dir"); ok && d.absPath(t, "lock_dir", s) {
		c.LockDir = s
	}
	t.done()
}

func (d *decoder) dnsSection(t *table, c *DNSConfig) {
	c.Listen = []string{DefaultListen}
	if l, ok := t.strList("listen"); ok {
		if len(l) == 0 {
			t.errorf("listen", "empty: give at least one \"ip:port\" address")
		}
		d.addrPorts(l)
		c.Listen = elemStrings(l)
	}
	c.SummonTTL = DefaultSummonTTL
	if v, ok := t.seconds("summon_ttl"); ok {
		c.SummonTTL = v
	}
	if v, ok := t.duration("response_delay"); ok {
		c.ResponseDelay = v
	}
	d.dnsHardening(t, c)
	t.done()
}

// addrPorts checks a list of "ip:port" addresses.
func (d *decoder) addrPorts(l []elem) {
	seen := map[netip.AddrPort]bool{}
	for _, e := range l {
		ap, err := netip.ParseAddrPort(e.s)
		switch {
		case err != nil:
			d.errorf(e.path, "not an \"ip:port\" address: %q (IPv6 as \"[::1]:5353\")", e.s)
		case seen[ap]:
			d.errorf(e.path, "%s is listed twice", e.s)
		}
		seen[ap] = true
	}
}

func (d *decoder) hypervisor(t *table, c *HypervisorConfig) {
	c.URI = DefaultHypervisorURI
	if s, ok := t.str("uri"); ok {
		if u, err := url.Parse(s); err != nil || u.Scheme == "" {
			t.errorf("uri", "not a libvirt connection URI: %q (want e.g. \"qemu:///system\")", s)
		}
		c.URI = s
	}
	c.DomainType = DefaultDomainType
	if s, ok := t.str("domain_type"); ok {
		if s != "kvm" && s != "qemu" {
			t.errorf("domain_type", "unknown domain type %q (want \"kvm\", or \"qemu\" for TCG emulation)", s)
		}
		c.DomainType = s
	}
	c.ConsoleDir = DefaultConsoleDir
	if s, ok := t.str("console_dir"); ok {
		d.absPath(t, "console_dir", s)
		c.ConsoleDir = s
	}
	c.ShutdownTimeout = DefaultShutdownTimeout
	if v, ok := t.duration("shutdown_timeout"); ok {
		if v == 0 {
			t.errorf("shutdown_timeout", "must be positive")
		}
		c.ShutdownTimeout = v
	}
	d.seedDir(t, c)
	c.GuestCPUWeight = DefaultGuestCPUWeight
	if v, ok := t.integer("guest_cpu_weight", 0, 10000); ok {
		c.GuestCPUWeight = int(v)
	}
	t.done()
}

// absPath reports s unless it is an absolute path.
func (d *decoder) absPath(t *table, k, s string) bool {
	if !filepath.IsAbs(s) {
		t.errorf(k, "%q is not an absolute path", s)
		return false
	}
	return true
}

func (d *decoder) network(t *table, c *NetworkConfig) {
	c.Bridge = DefaultBridge
	if s, ok := t.str("bridge"); ok {
		if s == "" || len(s) > 15 || s == "." || s == ".." || strings.ContainsAny(s, "/: \t\n") {
			t.errorf("bridge", "not a valid interface name: %q (1 to 15 characters, no '/', ':' or spaces)", s)
		}
		c.Bridge = s
	}
	if s, ok := t.str("gateway"); ok {
		p, err := netip.ParsePrefix(s)
		switch {
		case err != nil:
			t.errorf("gateway", "not an address with prefix length: %q (want e.g. \"10.213.0.1/24\")", s)
		case !p.Addr().Is4():
			t.errorf("gateway", "%s is not an IPv4 prefix (IPv6 goes in gateway6)", s)
		case p.Bits() > 30:
			t.errorf("gateway", "prefix /%d leaves no room for unikernels (want /30 or shorter)", p.Bits())
		case p.Addr() == p.Masked().Addr() || p.Addr() == broadcast(p):
			t.errorf("gateway", "%s is not a host address of its subnet (want e.g. \"10.213.0.1/24\")", p.Addr())
		default:
			c.Gateway = p
		}
	}
	if s, ok := t.str("gateway6"); ok {
		p, err := netip.ParsePrefix(s)
		switch {
		case err != nil:
			t.errorf("gateway6", "not an address with prefix length: %q (want e.g. \"fd00:213::1/64\")", s)
		case !p.Addr().Is6() || p.Addr().Is4In6():
			t.errorf("gateway6", "%s is not an IPv6 prefix", s)
		case p.Bits() > 126:
			t.errorf("gateway6", "prefix /%d leaves no room for unikernels", p.Bits())
		case p.Addr() == p.Masked().Addr():
			t.errorf("gateway6", "%s is the subnet's own address, not a host address", p.Addr())
		default:
			c.Gateway6 = p
		}
	}
	t.done()
}

// broadcast returns the last address of the IPv4 prefix p.
func broadcast(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func (d *decoder) synproxy(t *table, c *SynProxyConfig) {
	*c = SynProxyConfig{
		Enabled:       true,
		MaxPerAddress: DefaultSynMaxPerAddr,
		MaxTotal:      DefaultSynMaxTotal,
		MaxBytes:      DefaultSynMaxBytes,
		MaxAge:        DefaultSynMaxAge,
	}
	if v, ok := t.boolean("enabled"); ok {
		c.Enabled = v
	}
	if v, ok := t.integer("max_per_address", 1, math.MaxInt32); ok {
		c.MaxPerAddress = int(v)
	}
	if v, ok := t.integer("max_total", 1, math.MaxInt32); ok {
		c.MaxTotal = int(v)
	}
	if v, ok := t.size("max_bytes"); ok {
		if v == 0 || v > math.MaxInt64 {
			t.errorf("max_bytes", "must be positive")
		}
		c.MaxBytes = int64(v)
	}
	if v, ok := t.duration("max_age"); ok {
		if v == 0 {
			t.errorf("max_age", "must be positive")
		}
		c.MaxAge = v
	}
	t.done()
}

func (d *decoder) budget(t *table, c *BudgetConfig) {
	mem := HostResources().Memory
	c.MaxRunning, c.Memory, c.MinUp = DefaultMaxRunning(mem), DefaultBudgetMemory(mem), DefaultMinUp
	c.WarmMax, c.WarmMemory = DefaultWarmMax, DefaultWarmMemory
	c.MaxStarting = DefaultMaxStarting(HostResources().Cores)
	if v, ok := t.integer("max_starting", 0, math.MaxInt32); ok {
		c.MaxStarting = int(v)
	}
	if v, ok := t.integer("warm_max", 0, math.MaxInt32); ok {
		c.WarmMax = int(v)
	}
	if v, ok := t.size("warm_memory"); ok {
		c.WarmMemory = v
	}
	if v, ok := t.duration("min_up"); ok {
		c.MinUp = v
	}
	if v, ok := t.integer("max_running", 0, math.MaxInt32); ok {
		c.MaxRunning = int(v)
	}
	if v, ok := t.integer("max_booting", 0, math.MaxInt32); ok {
		c.MaxBooting = int(v)
	}
	if v, ok := t.size("memory"); ok {
		c.Memory = v
	}
	t.done()
}

func (d *decoder) metrics(t *table, c *MetricsConfig) {
	if s, ok := t.str("listen"); ok {
		if s != "" {
			d.addrPorts([]elem{{s, t.key("listen")}})
		}
		c.Listen = s
	}
	if v, ok := t.boolean("pprof"); ok {
		c.Pprof = v
	}
	if c.Pprof && c.Listen == "" {
		t.errorf("pprof", "pprof is served on the metrics address: set metrics.listen too")
	}
	d.metricsAuth(t, c)
	t.done()
}

// maxSocketPath is the longest Unix socket path Linux accepts.
const maxSocketPath = 107

func (d *decoder) control(t *table, c *ControlConfig) {
	c.Socket = DefaultControlSocket
	if s, ok := t.str("socket"); ok {
		if s != "" && d.absPath(t, "socket", s) && len(s) > maxSocketPath {
			t.errorf("socket", "path is %d bytes long, more than a Unix socket path can hold (%d)", len(s), maxSocketPath)
		}
		c.Socket = s
	}
	c.Mode = DefaultControlMode
	if v, ok := t.fileMode("mode"); ok {
		c.Mode = os.FileMode(v)
	}
	t.done()
}

// positive reports a zero duration at k.
func positive(t *table, k string, v time.Duration) bool {
	if v <= 0 {
		t.errorf(k, "must be positive")
		return false
	}
	return true
}
