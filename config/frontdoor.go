package config

import (
	"math"
	"net/netip"
	"path"
	"slices"
	"strings"
	"time"
)

// Defaults of [frontdoor].
const (
	DefaultFrontdoorTLSPort                = 443
	DefaultFrontdoorNameTimeout            = 10 * time.Second
	DefaultFrontdoorMaxHeaderBytes         = 16 << 10
	DefaultFrontdoorMaxPending             = 4096
	DefaultFrontdoorMaxPendingPerSource    = 64
	DefaultFrontdoorMaxWaiting             = 1024
	DefaultFrontdoorMaxWaitingPerUnikernel = 256
	DefaultFrontdoorMaxConnections         = 10000
	DefaultFrontdoorDialTimeout            = 5 * time.Second
	// DefaultFrontdoorActivityInterval is how often a spliced connection
	// with traffic counts as activity of its unikernel (not a key).
	DefaultFrontdoorActivityInterval = 5 * time.Second
	// DefaultSeedDir is where the seed-file disk images are written.
	DefaultSeedDir = "/var/lib/jitsu/seed"
	// DefaultSnapshotDir is where the save files of the unikernels with
	// start = "snapshot" are written (hypervisor.snapshot_dir).
	DefaultSnapshotDir = "/var/lib/jitsu/snapshot"
	// MaxSeedFileName is the longest name of a seed file: what a ustar
	// header holds (155 bytes of prefix, '/', 100 of name).
	MaxSeedFileName = 255
)

// FrontdoorConfig is [frontdoor]: the listener that routes connections to
// unikernels with frontdoor = true by TLS SNI or HTTP Host.
type FrontdoorConfig struct {
	Listen   []netip.AddrPort // empty: no front door
	TLSPorts []uint16         // ports whose names come from the SNI; others use Host
	// NameTimeout bounds the time to read the name of a new connection.
	NameTimeout time.Duration
	// MaxHeaderBytes caps the bytes read to find the name.
	MaxHeaderBytes int
	// MaxPending caps connections whose name is being read, in all and
	// per client address.
	MaxPending, MaxPendingPerSource int
	// MaxWaiting caps connections waiting for a boot, in all and per
	// unikernel.
	MaxWaiting, MaxWaitingPerUnikernel int
	// MaxConnections caps the client connections open through it.
	MaxConnections int
	// DialTimeout bounds the connect to a ready unikernel.
	DialTimeout time.Duration
}

// IPv4 returns the address the A records of frontdoor = true unikernels
// answer: the first IPv4 listen address that is not unspecified, or the
// zero Addr.
func (f *FrontdoorConfig) IPv4() netip.Addr {
	for _, ap := range f.Listen {
		if a := ap.Addr().Unmap(); a.Is4() && !a.IsUnspecified() {
			return a
		}
	}
	return netip.Addr{}
}

// IsTLS reports whether the port takes TLS (the name from the SNI).
func (f *FrontdoorConfig) IsTLS(port uint16) bool { return slices.Contains(f.TLSPorts, port) }

func (d *decoder) frontdoor(t *table, c *FrontdoorConfig) {
	*c = FrontdoorConfig{
		TLSPorts:               []uint16{DefaultFrontdoorTLSPort},
		NameTimeout:            DefaultFrontdoorNameTimeout,
		MaxHeaderBytes:         DefaultFrontdoorMaxHeaderBytes,
		MaxPending:             DefaultFrontdoorMaxPending,
		MaxPendingPerSource:    DefaultFrontdoorMaxPendingPerSource,
		MaxWaiting:             DefaultFrontdoorMaxWaiting,
		MaxWaitingPerUnikernel: DefaultFrontdoorMaxWaitingPerUnikernel,
		MaxConnections:         DefaultFrontdoorMaxConnections,
		DialTimeout:            DefaultFrontdoorDialTimeout,
	}
	if l, ok := t.strList("listen"); ok {
		d.addrPorts(l)
		for _, e := range l {
			if ap, err := netip.ParseAddrPort(e.s); err == nil {
				if ap.Port() == 0 {
					d.errorf(e.path, "%s: port 0 (want the port clients connect to, e.g. 443)", e.s)
				}
				c.Listen = append(c.Listen, ap)
			}
		}
	}
	if v, ok := t.get("tls_ports"); ok {
		arr, isArr := v.([]any)
		if !isArr {
			t.wrongType("tls_ports", "array of port numbers", v)
		}
		c.TLSPorts = nil
		for i, e := range arr {
			n, isInt := e.(int64)
			if !isInt || n < 1 || n > 65535 {
				d.errorf(joinIndex(t.key("tls_ports"), i), "not a port number: %v (want 1 to 65535)", e)
				continue
			}
			c.TLSPorts = append(c.TLSPorts, uint16(n))
		}
	}
	if v, ok := t.duration("name_timeout"); ok && positive(t, "name_timeout", v) {
		c.NameTimeout = v
	}
	if v, ok := t.size("max_header_bytes"); ok {
		if v < 512 || v > 1<<20 {
			t.errorf("max_header_bytes", "%s is out of range (want 512 to 1MiB: a ClientHello needs about 2KiB)", FormatSize(v))
		} else {
			c.MaxHeaderBytes = int(v)
		}
	}
	for _, k := range []struct {
		key string
		v   *int
	}{
		{"max_pending", &c.MaxPending}, {"max_pending_per_source", &c.MaxPendingPerSource},
		{"max_waiting", &c.MaxWaiting}, {"max_waiting_per_unikernel", &c.MaxWaitingPerUnikernel},
		{"max_connections", &c.MaxConnections},
	} {
		if n, ok := t.integer(k.key, 1, math.MaxInt32); ok {
			*k.v = int(n)
		}
	}
	if v, ok := t.duration("dial_timeout"); ok && positive(t, "dial_timeout", v) {
		c.DialTimeout = v
	}
	t.done()
}

// checkFrontdoor reports front-door listen addresses that are also DNS or
// metrics addresses (TCP on both).
func (d *decoder) checkFrontdoor(c *Config) {
	taken := map[netip.AddrPort]string{}
	for _, s := range c.DNS.Listen {
		if ap, err := netip.ParseAddrPort(s); err == nil {
			taken[ap] = "dns.listen"
		}
	}
	if ap, err := netip.ParseAddrPort(c.Metrics.Listen); err == nil {
		taken[ap] = "metrics.listen"
	}
	for i, ap := range c.Frontdoor.Listen {
		if k, dup := taken[ap]; dup {
			d.errorf(joinIndex("frontdoor.listen", i), "%s is also in %s", ap, k)
		}
	}
}

// seedDir decodes hypervisor.seed_dir and snapshot_dir into c.
func (d *decoder) seedDir(t *table, c *HypervisorConfig) {
	c.SeedDir = DefaultSeedDir
	if s, ok := t.str("seed_dir"); ok && d.absPath(t, "seed_dir", s) {
		c.SeedDir = s
	}
	c.SnapshotDir = DefaultSnapshotDir
	if s, ok := t.str("snapshot_dir"); ok && d.absPath(t, "snapshot_dir", s) {
		c.SnapshotDir = s
	}
}

// unikernelExtras decodes the [[unikernel]] keys of the front door and the
// seed-file disk into u.
func (d *decoder) unikernelExtras(c *Config, t *table, u *Unikernel) {
	if v, ok := t.boolean("frontdoor"); ok {
		u.Frontdoor = v
		switch {
		case v && len(c.Frontdoor.Listen) == 0:
			t.errorf("frontdoor", "true, but [frontdoor] listen is empty: the front door is off")
		case v && !c.Frontdoor.IPv4().IsValid():
			t.errorf("frontdoor", "true, but [frontdoor] listen has no specific IPv4 address for its A records (0.0.0.0 cannot be an answer)")
		}
	}
	if v, ok := t.boolean("proxy_protocol"); ok {
		u.ProxyProtocol = v
		if v && !u.Frontdoor {
			t.errorf("proxy_protocol", "only the front door sends the PROXY header: set frontdoor = true too")
		}
	}
	if !t.has("files") {
		t.get("files") // a known key
		return
	}
	ft := t.sub("files")
	u.Files = map[string]string{}
	for name := range ft.m {
		src, ok := ft.str(name)
		if !ok {
			continue
		}
		if msg := seedFileName(name); msg != "" {
			ft.errorf(name, "%s", msg)
			continue
		}
		if !d.absPath(ft, name, src) {
			continue
		}
		u.Files[name] = src
	}
	ft.done()
}

// seedFileName explains what is wrong with a seed file's name, or returns
// "".
func seedFileName(name string) string {
	switch {
	case name == "":
		return "empty file name"
	case len(name) > MaxSeedFileName || len(name) > 100 && !ustarSplittable(name):
		return "file name too long for the tar format (at most 100 bytes after the last '/' that leaves at most 155 before it)"
	case strings.HasPrefix(name, "/"):
		return "file name must be relative (it is a path inside the seed disk)"
	case path.Clean(name) != name || name == "." || strings.HasPrefix(name, "../") || name == "..":
		return "file name must be a clean relative path, without '.', '..' or '//'"
	case strings.ContainsAny(name, "\x00\\"):
		return "file name contains NUL or a backslash"
	}
	return ""
}

// ustarSplittable reports whether name splits at a '/' into a ustar
// prefix (at most 155 bytes) and name (at most 100).
func ustarSplittable(name string) bool {
	for i := len(name) - 1; i >= 0; i-- {
		if name[i] == '/' && i <= 155 && len(name)-i-1 <= 100 && i > 0 {
			return true
		}
	}
	return false
}
