package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// mustParse parses text and fails the test on any error.
func mustParse(t *testing.T, text string) *Config {
	t.Helper()
	c, err := Parse("test.toml", []byte(text))
	if err != nil {
		t.Fatalf("Parse: %v\nin:\n%s", err, numbered(text))
	}
	return c
}

func TestExample(t *testing.T) {
	path := filepath.Join("..", "examples", "jitsu.toml")
	c, err := Load(path)
	if err != nil {
		t.Fatalf("Load(%s): %v", path, err)
	}
	if c.File != path {
		t.Errorf("File = %q, want %q", c.File, path)
	}
	if got := c.DNS.Listen; len(got) != 1 || got[0] != "127.0.0.1:5353" {
		t.Errorf("dns.listen = %v", got)
	}
	if c.Hypervisor.DomainType != "qemu" || c.Hypervisor.URI != "qemu:///system" {
		t.Errorf("hypervisor = %+v", c.Hypervisor)
	}
	if c.Network.Bridge != "br-jitsu" || c.Network.Gateway != netip.MustParsePrefix("10.213.0.1/24") {
		t.Errorf("network = %+v", c.Network)
	}
	if c.Metrics.Listen != "127.0.0.1:9153" {
		t.Errorf("metrics.listen = %q", c.Metrics.Listen)
	}
	if len(c.Zones) != 1 {
		t.Fatalf("%d zones, want 1", len(c.Zones))
	}
	z := c.Zones[0]
	if z.Origin != "example.test." || len(z.RRs) != 2+len(z.Records) {
		t.Errorf("zone %s has %d RRs for %d records", z.Origin, len(z.RRs), len(z.Records))
	}
	// The records the demo relies on, compared as zone-file text.
	want := []string{
		"example.test. 3600 IN SOA ns1.example.test. hostmaster.example.test. 1 3600 600 86400 60",
		"example.test. 3600 IN NS ns1.example.test.",
		"ns1.example.test. 3600 IN A 127.0.0.1",
		"example.test. 3600 IN MX 10 mail.example.test.",
		"mail.example.test. 3600 IN A 192.0.2.25",
		"www6.example.test. 3600 IN AAAA 2001:db8::5",
	}
	for _, w := range want {
		wrr, err := dns.NewRR(w)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, rr := range z.RRs {
			found = found || dns.IsDuplicate(rr, wrr) && rr.Header().Ttl == wrr.Header().Ttl
		}
		if !found {
			t.Errorf("zone lacks %s", w)
		}
	}
	u := c.Unikernel("www")
	if u == nil {
		t.Fatalf("no unikernel www in %+v", c.Unikernels)
	}
	if strings.Join(u.DNS, " ") != "www.example.test. example.test." || u.IP != netip.MustParseAddr("10.213.0.5") {
		t.Errorf("www: dns %v ip %v", u.DNS, u.IP)
	}
	if u.Kernel != "/var/lib/jitsu/images/example/vmlinux" || u.Initrd != "/var/lib/jitsu/images/example/initrd.cpio" {
		t.Errorf("www: kernel %q initrd %q", u.Kernel, u.Initrd)
	}
	if want := "console=ttyS0 quiet noapictimer no_timer_check tsc=reliable ip=10.213.0.5::10.213.0.1:255.255.255.0::eth0:off jitsu.name=www"; u.Cmdline != want {
		t.Errorf("www: cmdline %q, want %q", u.Cmdline, want)
	}
	if c.ZoneFor("WWW.example.test") != &c.Zones[0] {
		t.Errorf("ZoneFor(www) is not the example zone")
	}
}

// TestExampleDocumentsEveryKey checks that every key the decoder knows is
// mentioned in examples/jitsu.toml, set or commented out.
func TestExampleDocumentsEveryKey(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "examples", "jitsu.toml"))
	if err != nil {
		t.Fatal(err)
	}
	// Decode a document with every table present, recording the keys each
	// table looks up.
	var tables []*table
	d := &decoder{file: "x", pos: positions{}}
	root := d.newTable("", map[string]any{
		"zone":      []map[string]any{{}},
		"unikernel": []map[string]any{{}},
	})
	tables = append(tables, root)
	c := &Config{}
	d.daemon(track(&tables, root.sub("daemon")), &c.Daemon)
	d.dnsSection(track(&tables, root.sub("dns")), &c.DNS)
	d.zones([]*table{track(&tables, d.newTable("zone[0]", map[string]any{}))})
	d.hypervisor(track(&tables, root.sub("hypervisor")), &c.Hypervisor)
	d.network(track(&tables, root.sub("network")), &c.Network)
	d.synproxy(track(&tables, root.sub("synproxy")), &c.SynProxy)
	d.budget(track(&tables, root.sub("budget")), &c.Budget)
	d.admission(track(&tables, root.sub("admission")), &c.Admission)
	d.metrics(track(&tables, root.sub("metrics")), &c.Metrics)
	d.control(track(&tables, root.sub("control")), &c.Control)
	d.frontdoor(track(&tables, root.sub("frontdoor")), &c.Frontdoor)
	tmpl := d.defaults(track(&tables, root.sub("defaults")), &c.Defaults)
	d.unikernels(c, []*table{track(&tables, d.newTable("unikernel[0]", map[string]any{}))}, tmpl)
	root.get("zone")
	root.get("unikernel")
	text := string(data)
	n := 0
	for _, tb := range tables {
		for _, k := range tb.known {
			n++
			documented := false
			for _, form := range []string{"\n" + k + " = ", "\n# " + k + " = ", "\n[" + k + "]\n", "\n[[" + k + "]]\n"} {
				documented = documented || strings.Contains(text, form)
			}
			if !documented {
				t.Errorf("examples/jitsu.toml does not document %s", tb.key(k))
			}
		}
	}
	if n < 40 {
		t.Errorf("only %d keys seen: the test lost track of the decoder", n)
	}
}

func track(tables *[]*table, t *table) *table {
	*tables = append(*tables, t)
	return t
}

func TestDefaults(t *testing.T) {
	c := mustParse(t, "")
	if len(c.DNS.Listen) != 1 || c.DNS.Listen[0] != DefaultListen || c.DNS.SummonTTL != time.Second || c.DNS.ResponseDelay != 0 {
		t.Errorf("dns = %+v", c.DNS)
	}
	if c.Hypervisor != (HypervisorConfig{URI: "qemu:///system", DomainType: "kvm", ConsoleDir: "/var/log/jitsu", ShutdownTimeout: 30 * time.Second, SeedDir: DefaultSeedDir, SnapshotDir: DefaultSnapshotDir, GuestCPUWeight: DefaultGuestCPUWeight}) {
		t.Errorf("hypervisor = %+v", c.Hypervisor)
	}
	if c.Network.Bridge != "br-jitsu" || c.Network.Gateway.IsValid() || c.Network.Gateway6.IsValid() {
		t.Errorf("network = %+v", c.Network)
	}
	if c.SynProxy != (SynProxyConfig{Enabled: true, MaxPerAddress: 64, MaxTotal: 10000, MaxBytes: 16 << 20, MaxAge: 30 * time.Second}) {
		t.Errorf("synproxy = %+v", c.SynProxy)
	}
	mem := HostResources().Memory
	if c.Budget != (BudgetConfig{MaxRunning: DefaultMaxRunning(mem), Memory: DefaultBudgetMemory(mem), MinUp: DefaultMinUp,
		WarmMax: DefaultWarmMax, WarmMemory: DefaultWarmMemory, MaxStarting: DefaultMaxStarting(HostResources().Cores)}) {
		t.Errorf("budget = %+v", c.Budget)
	}
	if c.Metrics != (MetricsConfig{}) {
		t.Errorf("metrics = %+v", c.Metrics)
	}
	if c.Control != (ControlConfig{Socket: "/run/jitsu/control.sock", Mode: 0o600}) {
		t.Errorf("control = %+v", c.Control)
	}
	if len(c.Zones) != 0 || len(c.Unikernels) != 0 {
		t.Errorf("zones %v unikernels %v", c.Zones, c.Unikernels)
	}

	// A unikernel with only the required keys gets every default.
	c = mustParse(t, base+unikernel("a", "2"))
	u := c.Unikernels[0]
	if u.Memory != 64<<20 || u.VCPUs != 1 || u.IdleTimeout != 60*time.Second || u.BootTimeout != 30*time.Second ||
		u.StopMode != "destroy" || !slices.Equal(u.Trigger, []string{"dns", "tcp"}) || u.Ready.Kind != ReadyTCP || u.Ready.Port != 80 || u.Initrd != "" || u.MAC.String() != DeriveMAC("jitsu-a").String() ||
		u.IP6.IsValid() || len(u.Disks) != 0 {
		t.Errorf("unikernel defaults: %+v", u)
	}
	if u.Line != 10 {
		t.Errorf("unikernel line %d, want 10", u.Line)
	}

	// [defaults] applies to unikernels that leave a key out, and only to them.
	c = mustParse(t, base+`
[defaults]
kernel = "/img/k"
initrd = "/img/i"
memory = "128MiB"
vcpus = 2
idle_timeout = "5m"
boot_timeout = "10s"
stop_mode = "suspend"
ready = "console:^READY$"
`+unikernel("a", "2", `kernel = "/own/k"`)+`
[[unikernel]]
name = "b"
dns = ["b.example.test."]
ip = "10.213.0.3"
initrd = ""
memory = 16777216
vcpus = 4
idle_timeout = "0s"
stop_mode = "save"
ready = "delay:1500ms"
`)
	a, b := c.Unikernel("a"), c.Unikernel("b")
	if a.Kernel != "/own/k" || a.Initrd != "/img/i" || a.Memory != 128<<20 || a.VCPUs != 2 || a.IdleTimeout != 5*time.Minute ||
		a.BootTimeout != 10*time.Second || a.StopMode != "suspend" || a.Ready.Kind != ReadyConsole || !a.Ready.Regexp.MatchString("READY") {
		t.Errorf("a = %+v", a)
	}
	if b.Kernel != "/img/k" || b.Initrd != "" || b.Memory != 16<<20 || b.VCPUs != 4 || b.IdleTimeout != 0 ||
		b.BootTimeout != 10*time.Second || b.StopMode != "save" || b.Ready.Kind != ReadyDelay || b.Ready.Delay != 1500*time.Millisecond {
		t.Errorf("b = %+v", b)
	}
}

func TestCmdlineTemplate(t *testing.T) {
	net := "[network]\ngateway = \"10.1.0.1/16\"\ngateway6 = \"fd00::1/64\"\n" + base[strings.Index(base, "[[zone]]"):]
	tests := []struct {
		name, defaults, own, want string
	}{
		{name: "built-in default",
			want: "console=ttyS0 ip=10.1.2.3::10.1.0.1:255.255.0.0::eth0:off"},
		{name: "every field",
			own:  `{{.Name}} {{.IP}} {{.Gateway}} {{.Netmask}} {{.Prefix}} {{.IP6}} {{.Gateway6}} {{.Prefix6}} {{.MAC}}`,
			want: "www 10.1.2.3 10.1.0.1 255.255.0.0 16 fd00::5 fd00::1 64 52:54:00:0a:0b:0c"},
		{name: "from defaults",
			defaults: `ip={{.IP}}/{{.Prefix}}`,
			want:     "ip=10.1.2.3/16"},
		{name: "own wins over defaults",
			defaults: `ip={{.IP}}/{{.Prefix}}`, own: `name={{.Name}}`,
			want: "name=www"},
		{name: "no template",
			own: `console=hvc0 -- /init`, want: "console=hvc0 -- /init"},
		{name: "conditional",
			own: `{{if .IP6}}ip6={{.IP6}}{{end}}`, want: "ip6=fd00::5"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			text := net
			if tc.defaults != "" {
				text += "[defaults]\ncmdline = '" + tc.defaults + "'\n"
			}
			extra := []string{`ip6 = "fd00::5"`, `mac = "52:54:00:0A:0B:0C"`}
			if tc.own != "" {
				extra = append(extra, "cmdline = '"+tc.own+"'")
			}
			c := mustParse(t, text+strings.Replace(unikernel("www", "0", extra...), "10.213.0.0", "10.1.2.3", 1))
			if got := c.Unikernels[0].Cmdline; got != tc.want {
				t.Errorf("cmdline = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestZoneFor(t *testing.T) {
	c := mustParse(t, base+`
[[zone]]
origin = "sub.example.test"
soa = "ns1 h 1 2 3 4 5"
ns = ["ns1.example.test."]

[[zone]]
origin = "other.test."
soa = "ns1 h 1 2 3 4 5"
ns = ["ns1"]
`)
	tests := []struct{ name, want string }{
		{"example.test.", "example.test."},
		{"a.b.example.test", "example.test."},
		{"sub.example.test.", "sub.example.test."},
		{"X.SUB.Example.Test.", "sub.example.test."},
		{"xsub.example.test.", "example.test."},
		{"other.test", "other.test."},
		{"test.", ""},
		{"example.org.", ""},
	}
	for _, tc := range tests {
		z := c.ZoneFor(tc.name)
		got := ""
		if z != nil {
			got = z.Origin
		}
		if got != tc.want {
			t.Errorf("ZoneFor(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestZoneRecords(t *testing.T) {
	c := mustParse(t, `
[[zone]]
origin = "Example.TEST"
ttl = "5m"
soa = "ns1 hostmaster 7 3600 600 86400 60"
ns = ["ns1", "ns2.elsewhere.test."]
records = [
  "NS1 A 192.0.2.1",
  "@ 60 MX 10 mail",
  "sub NS ns.sub",
  "txt TXT \"a b\" c",
]
`)
	z := c.Zones[0]
	var got []string
	for _, rr := range z.RRs {
		got = append(got, strings.Join(strings.Fields(rr.String()), " "))
	}
	want := []string{
		"example.test. 300 IN SOA ns1.example.test. hostmaster.example.test. 7 3600 600 86400 60",
		"example.test. 300 IN NS ns1.example.test.",
		"example.test. 300 IN NS ns2.elsewhere.test.",
		"ns1.example.test. 300 IN A 192.0.2.1",
		"example.test. 60 IN MX 10 mail.example.test.",
		"sub.example.test. 300 IN NS ns.sub.example.test.",
		"txt.example.test. 300 IN TXT \"a b\" \"c\"",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("RRs:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if strings.Join(z.NS, " ") != "ns1.example.test. ns2.elsewhere.test." || z.TTL != 5*time.Minute || z.Origin != "example.test." {
		t.Errorf("zone = %+v", z)
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
		err  string
	}{
		{"64MiB", 64 << 20, ""},
		{"1GiB", 1 << 30, ""},
		{"512KiB", 512 << 10, ""},
		{"2TiB", 2 << 40, ""},
		{"512MB", 512e6, ""},
		{"1 GB", 1e9, ""},
		{"10kB", 10e3, ""},
		{"4096", 4096, ""},
		{"4096B", 4096, ""},
		{"0", 0, ""},
		{"64M", 0, "ambiguous"},
		{"1g", 0, "ambiguous"},
		{"-1MiB", 0, "not a size"},
		{"1.5GiB", 0, "not a size"},
		{"MiB", 0, "not a size"},
		{"", 0, "not a size"},
		{"99999999999TiB", 0, "too large"},
	}
	for _, tc := range tests {
		got, err := ParseSize(tc.in)
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseSize(%q) = %d, %v; want error with %q", tc.in, got, err, tc.err)
		}
	}
	for _, n := range []uint64{0, 1, 1000, 1 << 10, 3 << 20, 64 << 20, 5 << 30, 1 << 40, 1<<20 + 1} {
		if back, err := ParseSize(FormatSize(n)); err != nil || back != n {
			t.Errorf("ParseSize(FormatSize(%d) = %q) = %d, %v", n, FormatSize(n), back, err)
		}
	}
}

func TestParseReady(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{"tcp:80", "tcp:80", ""},
		{"tcp:65535", "tcp:65535", ""},
		{"console:^JITSU-READY$", "console:^JITSU-READY$", ""},
		{"console:a:b", "console:a:b", ""},
		{"delay:2s", "delay:2s", ""},
		{"tcp:65536", "", "bad port"},
		{"tcp:http", "", "bad port"},
		{"console:", "", "empty regular expression"},
		{"console:[", "", "bad regular expression"},
		{"delay:0s", "", "positive"},
		{"delay:2", "", "not a duration"},
		{"udp:53", "", "unknown readiness probe kind"},
		{"", "", "bad readiness probe"},
		// cases of the summoner's former parser, which config now owns
		{"delay:1.5s", "delay:1.5s", ""},
		{"tcp:0", "", "bad port"},
		{"tcp:99999", "", "bad port"},
		{"console:(", "", "bad regular expression"},
		{"delay:soon", "", "readiness probe"},
		{"http:80", "", "unknown readiness probe kind"},
		{"80", "", "bad readiness probe"},
	}
	for _, tc := range tests {
		r, err := ParseReady(tc.in)
		switch {
		case tc.err == "" && (err != nil || r.String() != tc.want):
			t.Errorf("ParseReady(%q) = %v, %v; want %s", tc.in, r, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseReady(%q) = %v, %v; want error with %q", tc.in, r, err, tc.err)
		}
	}
}

func TestLoad(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "missing.toml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load of a missing file: %v, want fs.ErrNotExist", err)
	}
	path := filepath.Join(t.TempDir(), "bad.toml")
	if err := os.WriteFile(path, []byte("[dns]\nsummon_ttl = \"soon\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(path)
	if want := path + ":2: dns.summon_ttl: not a duration"; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Load of an invalid file: %v, want %s...", err, want)
	}
}

func TestControlMode(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want os.FileMode
	}{{`"0600"`, 0o600}, {`"660"`, 0o660}, {`0o640`, 0o640}, {`"0o700"`, 0o700}, {`0`, 0}} {
		c := mustParse(t, "[control]\nmode = "+tc.in+"\n")
		if c.Control.Mode != tc.want {
			t.Errorf("mode = %s: got %#o, want %#o", tc.in, c.Control.Mode, tc.want)
		}
	}
}

// bigConfig returns a configuration with n unikernels, each with two names.
func bigConfig(n int) []byte {
	var b strings.Builder
	b.WriteString("[network]\ngateway = \"10.0.0.1/8\"\n[[zone]]\norigin = \"example.test.\"\nsoa = \"ns1 h 1 2 3 4 5\"\nns = [\"ns1\"]\nrecords = [\"ns1 A 127.0.0.1\"]\n[defaults]\nkernel = \"/k\"\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "[[unikernel]]\nname = \"u%d\"\ndns = [\"u%d.example.test.\", \"alias%d.example.test.\"]\nip = \"10.%d.%d.%d\"\n",
			i, i, i, (i+2)>>16, ((i+2)>>8)&255, (i+2)&255)
	}
	return []byte(b.String())
}

// BenchmarkParse10k measures parsing and validating a configuration with
// 10,000 unikernels.
func BenchmarkParse10k(b *testing.B) {
	data := bigConfig(10000)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		c, err := Parse("big.toml", data)
		if err != nil {
			b.Fatal(err)
		}
		if len(c.Unikernels) != 10000 {
			b.Fatalf("%d unikernels", len(c.Unikernels))
		}
	}
}

// TestDaemonID: the instance id defaults to one derived from the config
// file's absolute path (two files, two ids; one file, one id), and a set
// id is kept.
func TestDaemonID(t *testing.T) {
	a := mustParseFile(t, "/etc/jitsu/a.toml", base)
	b := mustParseFile(t, "/etc/jitsu/b.toml", base)
	a2 := mustParseFile(t, "/etc/jitsu/a.toml", base)
	set := mustParseFile(t, "/etc/jitsu/a.toml", "[daemon]\nid = \"blue\"\nlock_dir = \"/tmp/l\"\n"+base)
	for _, tt := range []struct {
		name      string
		got, want string
	}{
		{"default id", a.Daemon.ID, DefaultID("/etc/jitsu/a.toml")},
		{"same file, same id", a2.Daemon.ID, a.Daemon.ID},
		{"default lock file", a.Daemon.LockFile(), "/run/jitsu/" + a.Daemon.ID + ".lock"},
		{"set id", set.Daemon.ID, "blue"},
		{"set lock file", set.Daemon.LockFile(), "/tmp/l/blue.lock"},
	} {
		if tt.got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, tt.got, tt.want)
		}
	}
	if a.Daemon.ID == b.Daemon.ID {
		t.Errorf("two config files share the default id %q", a.Daemon.ID)
	}
	if !instanceID.MatchString(a.Daemon.ID) {
		t.Errorf("default id %q is not a valid id", a.Daemon.ID)
	}
}

func mustParseFile(t *testing.T, file, text string) *Config {
	t.Helper()
	c, err := Parse(file, []byte(text))
	if err != nil {
		t.Fatalf("parse %s: %v", file, err)
	}
	return c
}

// TestStartKey: the start key and its combination with warm.
func TestStartKey(t *testing.T) {
	tests := []struct {
		name     string
		extra    []string
		start string
		warm  bool
	}{
		{"default", nil, StartBoot, false},
		{"snapshot", []string{`start = "snapshot"`}, StartSnapshot, false},
		{"warm boot", []string{"warm = true"}, StartBoot, true},
		{"warm snapshot", []string{"warm = true", `start = "snapshot"`}, StartSnapshot, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u := mustParse(t, base+unikernel("a", "2", tc.extra...)).Unikernels[0]
			if u.Start != tc.start || u.Warm != tc.warm {
				t.Errorf("start %q warm %v; want %q %v", u.Start, u.Warm, tc.start, tc.warm)
			}
		})
	}
}
