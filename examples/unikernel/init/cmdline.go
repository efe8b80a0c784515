package main

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// IPConfig is the static configuration of the kernel's `ip=` parameter,
// ip=CLIENT:SERVER:GATEWAY:NETMASK:HOSTNAME:DEVICE:AUTOCONF[:DNS0:DNS1:NTP0]
// (Documentation/admin-guide/nfs/nfsroot.rst). Empty fields are zero.
type IPConfig struct {
	Client   netip.Addr
	Server   netip.Addr
	Gateway  netip.Addr
	Netmask  netip.Addr
	Hostname string
	Device   string
	Autoconf string
}

// Prefix returns the client address with the netmask's prefix length
// (or /32 without a netmask).
func (c IPConfig) Prefix() netip.Prefix {
	bits := 32
	if c.Netmask.IsValid() {
		bits = maskBits(c.Netmask)
	}
	return netip.PrefixFrom(c.Client, bits)
}

// BootConfig is what /init takes from the kernel command line.
type BootConfig struct {
	IP   IPConfig  // from ip=; zero Client when absent or not static
	IP6  IP6Config // from jitsu.ip6= and jitsu.gw6=; zero when absent
	Name string    // jitsu.name=, the unikernel's name (for logs and headers)
	Port int       // jitsu.port=, default 80
	Root string    // jitsu.root=, directory served, default /www
	// Debug (jitsu.debug=1) marks the listen in the kernel log and prints
	// the kernel log on the console once listening (boot profiling).
	Debug bool
}

// ParseCmdline parses /proc/cmdline. Unknown parameters are ignored.
func ParseCmdline(cmdline string) (BootConfig, error) {
	bc := BootConfig{Port: 80, Root: "/www"}
	for _, p := range splitParams(cmdline) {
		key, val, _ := strings.Cut(p, "=")
		switch key {
		case "ip":
			ip, err := parseIP(val)
			if err != nil {
				return bc, fmt.Errorf("parse ip=%q: %w", val, err)
			}
			bc.IP = ip
		case "jitsu.ip6":
			p, err := parseIP6(val)
			if err != nil {
				return bc, fmt.Errorf("parse jitsu.ip6=%q: %w", val, err)
			}
			bc.IP6.Addr = p
		case "jitsu.gw6":
			a, err := parseGW6(val)
			if err != nil {
				return bc, fmt.Errorf("parse jitsu.gw6=%q: %w", val, err)
			}
			bc.IP6.Gateway = a
		case "jitsu.name":
			bc.Name = val
		case "jitsu.port":
			port, err := strconv.Atoi(val)
			if err != nil || port < 1 || port > 65535 {
				return bc, fmt.Errorf("parse jitsu.port=%q: want 1-65535", val)
			}
			bc.Port = port
		case "jitsu.debug":
			bc.Debug = val == "1" || val == "true"
		case "jitsu.root":
			if !strings.HasPrefix(val, "/") {
				return bc, fmt.Errorf("parse jitsu.root=%q: want an absolute path", val)
			}
			bc.Root = val
		}
	}
	return bc, nil
}

// splitParams splits a command line at spaces, keeping double-quoted
// parts together and removing the quotes, like the kernel's next_arg.
func splitParams(s string) []string {
	var out []string
	var cur strings.Builder
	inQuote, have := false, false
	for _, r := range s {
		switch {
		case r == '"':
			inQuote = !inQuote
			have = true
		case (r == ' ' || r == '\t' || r == '\n') && !inQuote:
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out
}

// parseIP parses the value of ip=. Values without fields (off, none, dhcp,
// ...) leave the configuration empty: the kernel or nobody configures it.
func parseIP(v string) (IPConfig, error) {
	var c IPConfig
	if !strings.Contains(v, ":") {
		switch v {
		case "off", "none", "on", "any", "dhcp", "bootp", "rarp", "both", "":
			return c, nil
		}
		// A lone address is the client address.
		a, err := netip.ParseAddr(v)
		if err != nil {
			return c, fmt.Errorf("bad client address: %w", err)
		}
		if !a.Is4() {
			return c, fmt.Errorf("client address %s is not IPv4", a)
		}
		c.Client = a
		return c, nil
	}
	f := strings.Split(v, ":")
	addrs := []*netip.Addr{&c.Client, &c.Server, &c.Gateway, &c.Netmask}
	names := []string{"client", "server", "gateway", "netmask"}
	for i, dst := range addrs {
		if i >= len(f) || f[i] == "" {
			continue
		}
		a, err := netip.ParseAddr(f[i])
		if err != nil {
			return c, fmt.Errorf("bad %s address: %w", names[i], err)
		}
		if !a.Is4() {
			return c, fmt.Errorf("%s address %s is not IPv4", names[i], a)
		}
		*dst = a
	}
	if c.Netmask.IsValid() && maskBits(c.Netmask) < 0 {
		return c, fmt.Errorf("netmask %s is not contiguous", c.Netmask)
	}
	if len(f) > 4 {
		c.Hostname = f[4]
	}
	if len(f) > 5 {
		c.Device = f[5]
	}
	if len(f) > 6 {
		c.Autoconf = f[6]
	}
	return c, nil
}

// maskBits returns the prefix length of a contiguous IPv4 netmask, or -1.
func maskBits(m netip.Addr) int {
	b := m.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	n := 0
	for v&0x80000000 != 0 {
		n++
		v <<= 1
	}
	if v != 0 {
		return -1
	}
	return n
}
