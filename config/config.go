// Package config reads jitsu's TOML configuration file, fills in defaults
// and validates it as a whole.
//
// Parse and Load either return a complete, validated *Config or every
// problem found in the file as *Errors, each naming the file, the line and
// the key ("jitsu.toml:42: unikernel[1].ip: ..."); never a partial
// configuration. Nothing about the running system (files, libvirt, the
// bridge) is checked here: that is `jitsu doctor`'s job.
//
// Value syntax:
//   - durations are Go duration strings: "60s", "1m30s", "250ms";
//   - sizes are strings with a unit, "64MiB", "1GiB", "512KiB" (powers of
//     1024) or "512MB" (powers of 1000), or a plain integer number of bytes;
//     the one-letter forms "64M" are rejected as ambiguous (see ParseSize);
//   - DNS names may be written with or without the final dot and are
//     stored as lower-case FQDNs.
//
// See examples/jitsu.toml for every key with its default.
package config

import (
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/miekg/dns"

	"github.com/jitsu-unikernel/jitsu/hypervisor"
)

// Defaults for keys that are not set.
const (
	DefaultListen          = "127.0.0.1:5353"
	DefaultSummonTTL       = time.Second
	DefaultZoneTTL         = time.Hour
	DefaultSecondaryPort   = 53            // NOTIFY destination port of a secondary written without one
	DefaultTSIGAlgorithm   = "hmac-sha256" // zone.tsig.algorithm
	DefaultHypervisorURI   = "qemu:///system"
	DefaultDomainType      = "kvm"
	DefaultConsoleDir      = "/var/log/jitsu"
	DefaultShutdownTimeout = 30 * time.Second
	DefaultBridge          = "br-jitsu"
	DefaultSynMaxPerAddr   = 64
	DefaultSynMaxTotal     = 10000
	DefaultSynMaxBytes     = 16 << 20
	DefaultSynMaxAge       = 30 * time.Second
	DefaultControlSocket   = "/run/jitsu/control.sock"
	DefaultLockDir         = "/run/jitsu"
	DefaultControlMode     = os.FileMode(0o600)
	DefaultCmdline         = "console=ttyS0 ip={{.IP}}::{{.Gateway}}:{{.Netmask}}::eth0:off"
	DefaultMemory          = 64 << 20
	DefaultVCPUs           = 1
	DefaultIdleTimeout     = 60 * time.Second
	DefaultBootTimeout     = 30 * time.Second
	DefaultStopMode        = hypervisor.StopDestroy
	DefaultReady           = "tcp:80"
)

// DefaultTriggers are what summons a unikernel whose trigger key is unset.
var DefaultTriggers = []string{TriggerDNS, TriggerTCP}

// Triggers: what may summon a unikernel (the trigger key).
const (
	TriggerDNS = "dns" // a query of one of its names
	TriggerTCP = "tcp" // a TCP SYN to one of its addresses (while stopped)
	TriggerUDP = "udp" // a UDP datagram to one of its addresses (while stopped)
)

// Triggers lists the valid triggers.
var Triggers = []string{TriggerDNS, TriggerTCP, TriggerUDP}

// Stop modes (what the idle reaper does with a unikernel) are
// hypervisor.StopModes: destroy powers off (the next trigger boots it
// afresh); shutdown is an ACPI shutdown, destroyed after
// hypervisor.shutdown_timeout; suspend pauses it in memory (the next trigger
// resumes it); save writes a managed save to disk (the next trigger
// restores it).

// Readiness probe kinds.
const (
	ReadyTCP     = "tcp"     // a TCP connect to Ready.Port succeeds
	ReadyConsole = "console" // a serial console line matches Ready.Regexp
	ReadyDelay   = "delay"   // Ready.Delay has passed since the start
)

// Config is a validated configuration file.
type Config struct {
	File       string // the name it was parsed under
	Daemon     DaemonConfig
	DNS        DNSConfig
	Zones      []Zone // [[zone]]
	Hypervisor HypervisorConfig
	Network    NetworkConfig
	SynProxy   SynProxyConfig // [synproxy]
	Budget     BudgetConfig
	Admission  AdmissionConfig // [admission]
	Metrics    MetricsConfig
	Control    ControlConfig
	Frontdoor  FrontdoorConfig // [frontdoor]
	Defaults   UnikernelDefaults
	Unikernels []Unikernel // [[unikernel]], defaults applied
}

// DaemonConfig is [daemon]: who this daemon is among those on the host.
type DaemonConfig struct {
	// ID is the instance id (see DefaultID): in its domains' metadata, its
	// nftables table's name and its lock file's name.
	ID string
	// LockDir holds the lock file ID.lock.
	LockDir string
}

// LockFile is the file this daemon holds locked while it runs.
func (c DaemonConfig) LockFile() string { return filepath.Join(c.LockDir, c.ID+".lock") }

// NFTTable is the name of this instance's nftables table (family inet).
func (c DaemonConfig) NFTTable() string { return "jitsu_" + strings.ReplaceAll(c.ID, "-", "_") }

// DefaultID is the instance id of a config file that sets none: "jitsu-"
// and 8 hex digits of a hash of the file's absolute path.
func DefaultID(file string) string {
	if abs, err := filepath.Abs(file); err == nil {
		file = abs
	}
	h := fnv.New32a()
	h.Write([]byte(file))
	return fmt.Sprintf("jitsu-%08x", h.Sum32())
}

// DNSConfig is [dns].
type DNSConfig struct {
	Listen    []string      // "ip:port" addresses, UDP and TCP on each
	SummonTTL time.Duration // TTL of answers for unikernel names (whole seconds)
	// ResponseDelay holds the DNS answer for a booting unikernel until it
	// is ready, up to this long, when the synproxy is disabled; 0 = never.
	// At most MaxResponseDelay.
	ResponseDelay time.Duration
	// RRLRate is the UDP answers per second allowed per source prefix,
	// response class and name; 0 turns response-rate limiting off.
	RRLRate int
	// RRLSlip: every RRLSlip-th limited answer goes out truncated; 0 drops
	// them all.
	RRLSlip int
	// RRLWindow is how long a flood is remembered (whole seconds).
	RRLWindow time.Duration
	// Cookies answers DNS cookies; a valid one exempts a client from RRL.
	Cookies bool
	// CookieSecretFile holds the cookies' shared server secret (32 hex
	// digits); "" = a random secret per process. CookieSecret is what it
	// holds (16 bytes), read when the config is parsed.
	CookieSecretFile string
	CookieSecret     []byte
}

// Zone is one [[zone]]: a zone jitsu is authoritative for.
type Zone struct {
	Origin  string        // lower-case FQDN
	TTL     time.Duration // default TTL of its records (whole seconds)
	SOA     string        // SOA RDATA as written
	NS      []string      // name servers, lower-case FQDNs
	Records []string      // static records as written, zone-file syntax
	// RRs holds the SOA, the NS records and every static record, parsed
	// with $ORIGIN=Origin and $TTL=TTL, owner names lower-case FQDNs.
	RRs  []dns.RR
	Line int // line of its [[zone]] table
	// Secondaries may transfer the zone (AXFR/IXFR, from their address;
	// the port is where NOTIFY goes, DefaultSecondaryPort if not written).
	Secondaries []netip.AddrPort
	// TSIG, when set, is the key every transfer must be signed with; the
	// NOTIFY messages are signed with it too.
	TSIG *TSIGKey
}

// HypervisorConfig is [hypervisor].
type HypervisorConfig struct {
	URI        string // libvirt connection URI
	DomainType string // libvirt domain type: "kvm" or "qemu" (TCG)
	ConsoleDir string // serial console logs, one file per unikernel
	// ShutdownTimeout is how long stop mode "shutdown" waits for the guest
	// before destroying it.
	ShutdownTimeout time.Duration
	// SeedDir holds the unikernels' seed-file disk images (see
	// Unikernel.Files).
	SeedDir string
	// SnapshotDir holds the save files of the unikernels with
	// start = "snapshot", at most one per unikernel.
	SnapshotDir string
	// GuestCPUWeight is the CPU weight of the guests' QEMU processes in
	// all, on the cgroup v2 scale (100 = jitsu's); 0 = left as libvirt
	// placed them. Default DefaultGuestCPUWeight.
	GuestCPUWeight int
}

// NetworkConfig is [network].
type NetworkConfig struct {
	Bridge   string       // Linux bridge the unikernels' interfaces join
	Gateway  netip.Prefix // the host's address on the bridge and the unikernels' IPv4 subnet
	Gateway6 netip.Prefix // optional IPv6 counterpart; invalid (zero) when unset
}

// SynProxyConfig is [synproxy]: holding SYNs while a unikernel boots.
type SynProxyConfig struct {
	Enabled       bool
	MaxPerAddress int           // SYNs held per unikernel address
	MaxTotal      int           // SYNs held in all
	MaxBytes      int64         // bytes of held packets in all
	MaxAge        time.Duration // a held SYN older than this is dropped
}

// BudgetConfig is [budget]; 0 means unlimited. When unset, MaxRunning and
// Memory are derived from the host's memory (DefaultMaxRunning,
// DefaultBudgetMemory).
type BudgetConfig struct {
	MaxRunning int // unikernels running (booting included)
	MaxBooting int // unikernels booting at once (queued or not); more are refused
	// MaxStarting bounds the boots in flight (hypervisor call to ready);
	// more wait in the start queue, first come first served. Default
	// DefaultMaxStarting; 0 = unlimited.
	MaxStarting int
	Memory      uint64 // bytes of guest memory in all
	// MinUp: a unikernel stays up this long after its boot started
	// before the budget may evict it to make room.
	MinUp time.Duration
	// WarmMax is how many warm domains (created paused, for the
	// unikernels with warm = true) may wait at once; 0 = no warm pool.
	// They count here, not against MaxRunning or Memory.
	WarmMax int
	// WarmMemory is the guest memory of the warm domains in all; 0 =
	// unlimited (bounded by WarmMax).
	WarmMemory uint64
}

// MetricsConfig is [metrics].
type MetricsConfig struct {
	Listen string // "ip:port" of the metrics and status page; "" = off
	Pprof  bool   // also serve /debug/pprof/ there
	// BasicAuthFile holds "user:password" (one line): HTTP basic
	// authentication on every endpoint. "" = none.
	BasicAuthFile string
	// BearerTokenFile holds a token: "Authorization: Bearer TOKEN" on
	// every endpoint. "" = none.
	BearerTokenFile string
}

// ControlConfig is [control]: the control socket of `jitsu status` & co.
type ControlConfig struct {
	Socket string      // Unix socket path; "" = no control socket
	Mode   os.FileMode // its permission bits
}

// UnikernelDefaults is [defaults]: values for keys a [[unikernel]] leaves
// out.
type UnikernelDefaults struct {
	Kernel      string
	Initrd      string
	Cmdline     string // template text
	Memory      uint64
	VCPUs       int
	IdleTimeout time.Duration
	BootTimeout time.Duration
	StopMode    hypervisor.StopMode
	Ready       Ready
	Trigger     []string
	DropAfter   time.Duration // suspended or saved this long: dropped; 0 = never
}

// Unikernel is one [[unikernel]], defaults applied.
type Unikernel struct {
	Name        string
	DNS         []string         // names it answers for: lower-case FQDNs
	IP          netip.Addr       // IPv4, inside Network.Gateway
	IP6         netip.Addr       // optional, inside Network.Gateway6; invalid when unset
	MAC         net.HardwareAddr // the mac key, else DeriveMAC(DomainPrefix + Name)
	Kernel      string           // absolute path
	Initrd      string           // absolute path, optional
	Cmdline     string           // kernel command line, template already expanded
	Disks       []string         // absolute paths of disk images, in order
	Memory      uint64           // bytes
	VCPUs       int
	IdleTimeout time.Duration // 0 = never stopped for idleness
	BootTimeout time.Duration
	StopMode    hypervisor.StopMode // one of hypervisor.StopModes
	Ready       Ready
	Trigger     []string      // some of Triggers: what may summon it
	DropAfter   time.Duration // suspended or saved this long: dropped; 0 = never
	Line        int           // line of its [[unikernel]] table
	// Frontdoor: its A records answer the front door's address and the
	// front door routes its names to it.
	Frontdoor bool
	// ProxyProtocol: the front door sends a PROXY protocol v2 header first.
	ProxyProtocol bool
	// Files maps names in its read-only seed-file disk (a tar image) to
	// absolute host paths; nil when unset.
	Files map[string]string
	// Warm: keep its domain created and paused before its guest runs
	// (the warm pool, within budget.warm_max and warm_memory), so that a
	// summon is a resume.
	Warm bool
	// Start is how a cold start begins: StartBoot (boot the kernel) or
	// StartSnapshot (restore the save file made after its first boot).
	Start string
	// With names the unikernels summoned with it (a summon group), one
	// level only; each is another configured unikernel.
	With []string
}

// Ready is a readiness probe: "tcp:PORT", "console:REGEXP" or
// "delay:DURATION".
type Ready struct {
	Kind   string // ReadyTCP, ReadyConsole or ReadyDelay
	Port   int    // for tcp
	Regexp *regexp.Regexp
	Delay  time.Duration
}

// String returns the probe in its configuration syntax.
func (r Ready) String() string {
	switch r.Kind {
	case ReadyTCP:
		return fmt.Sprintf("tcp:%d", r.Port)
	case ReadyConsole:
		if r.Regexp != nil {
			return "console:" + r.Regexp.String()
		}
	case ReadyDelay:
		return "delay:" + r.Delay.String()
	}
	return r.Kind
}

// ParseReady parses a readiness probe specification.
func ParseReady(s string) (Ready, error) {
	kind, arg, ok := strings.Cut(s, ":")
	if !ok {
		return Ready{}, fmt.Errorf("bad readiness probe %q (want tcp:PORT, console:REGEXP or delay:DURATION)", s)
	}
	switch kind {
	case ReadyTCP:
		port, err := strconv.Atoi(arg)
		if err != nil || port < 1 || port > 65535 {
			return Ready{}, fmt.Errorf("bad port in readiness probe %q (want tcp:1..65535)", s)
		}
		return Ready{Kind: ReadyTCP, Port: port}, nil
	case ReadyConsole:
		if arg == "" {
			return Ready{}, fmt.Errorf("empty regular expression in readiness probe %q", s)
		}
		re, err := regexp.Compile(arg)
		if err != nil {
			return Ready{}, fmt.Errorf("bad regular expression in readiness probe %q: %v", s, err)
		}
		return Ready{Kind: ReadyConsole, Regexp: re}, nil
	case ReadyDelay:
		d, err := parseDuration(arg)
		if err != nil {
			return Ready{}, fmt.Errorf("readiness probe %q: %v", s, err)
		}
		if d == 0 {
			return Ready{}, fmt.Errorf("readiness probe %q: the delay must be positive", s)
		}
		return Ready{Kind: ReadyDelay, Delay: d}, nil
	}
	return Ready{}, fmt.Errorf("unknown readiness probe kind %q in %q (want tcp, console or delay)", kind, s)
}

// Load reads and parses the configuration file at path. When the file
// cannot be read the error wraps the os error; when it does not validate
// the error is *Errors.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// Parse parses and validates the configuration in data; filename is used
// in error messages and as Config.File. On failure the error is *Errors,
// listing every problem found, in line order.
func Parse(filename string, data []byte) (*Config, error) {
	d := &decoder{file: filename}
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		e := &Error{File: filename, Msg: err.Error()}
		if pe, ok := err.(toml.ParseError); ok {
			e.Line, e.Key, e.Msg = pe.Position.Line, pe.LastKey, pe.Message
		}
		return nil, &Errors{List: []*Error{e}}
	}
	d.pos = scanPositions(string(data))
	c := d.config(d.newTable("", raw))
	if len(d.errs) > 0 {
		es := &Errors{List: d.errs}
		es.sort()
		return nil, es
	}
	c.File = filename
	return c, nil
}

// ZoneFor returns the zone with the longest origin that contains name, or
// nil. name is compared case-insensitively, with or without a final dot.
func (c *Config) ZoneFor(name string) *Zone {
	name = canonicalName(name)
	var best *Zone
	for i := range c.Zones {
		z := &c.Zones[i]
		if dns.IsSubDomain(z.Origin, name) && (best == nil || len(z.Origin) > len(best.Origin)) {
			best = z
		}
	}
	return best
}

// Unikernel returns the unikernel called name, or nil.
func (c *Config) Unikernel(name string) *Unikernel {
	for i := range c.Unikernels {
		if c.Unikernels[i].Name == name {
			return &c.Unikernels[i]
		}
	}
	return nil
}

// canonicalName lower-cases name and adds the final dot.
func canonicalName(name string) string {
	return strings.ToLower(dns.Fqdn(name))
}
