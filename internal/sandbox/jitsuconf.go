package sandbox

import (
	"bytes"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/template"
)

// JitsuConfig describes a jitsu config for this environment: the zone
// example.test. (with static records ns1 and static), the namespace's
// bridge and gateway, and one [[unikernel]] per entry, each answering for
// NAME.example.test. and booting Image unless it names its own kernel.
type JitsuConfig struct {
	SynProxy bool
	// Serial is the zone's SOA serial; 0 means 1. Tests bump it to see a
	// reload take effect.
	Serial uint32
	// ResponseDelay is dns.response_delay; "" leaves the default.
	ResponseDelay string
	// RRLRate is dns.rrl_rate; 0 turns response-rate limiting off, since
	// the tests' clients (and dnsperf) query hard from one address. Tests
	// of RRL itself set it.
	RRLRate int
	// DNSListen is dns.listen; empty means ["127.0.0.1:5353"].
	DNSListen []string
	// Extra is TOML appended to the config (tables such as [admission]).
	Extra string
	// Secondaries is the zone's secondaries ("ip" or "ip:port"); empty:
	// none.
	Secondaries []string
	// DomainType is the libvirt domain type; "" means "qemu".
	DomainType string
	// ConsoleDir and Socket are required; Metrics "" leaves metrics off.
	ConsoleDir, Socket, Metrics string
	// Image is what the unikernels boot by default (its PVH kernel when it
	// has one) with its recommended command line.
	Image      Image
	Unikernels []JitsuUnikernel
	// Frontdoor is frontdoor.listen ("ip:port"); empty: no front door.
	Frontdoor []string
	// Gateway6 is network.gateway6 ("fd00::1/64"); "" leaves IPv6 off.
	Gateway6 string
	// MaxRunning is budget.max_running; 0 leaves the default.
	MaxRunning int
	// SnapshotDir is hypervisor.snapshot_dir; "" leaves the default.
	SnapshotDir string
	// GuestCPUWeight is hypervisor.guest_cpu_weight; 0 turns it off (the
	// tests and benchmarks compare boots with bare domains: the guests
	// keep their weight unless a test asks).
	GuestCPUWeight int
}

// JitsuUnikernel is one [[unikernel]]; empty fields take the defaults
// (idle_timeout 60s, boot_timeout 20s, stop_mode destroy, ready tcp:80).
type JitsuUnikernel struct {
	Name, IP, Kernel, Initrd, StopMode, Ready string
	// IP6 is ip6 (needs JitsuConfig.Gateway6); "" for none.
	IP6                      string
	IdleTimeout, BootTimeout string
	// Frontdoor sets frontdoor = true; Files is the files table.
	Frontdoor bool
	Files     map[string]string
	// Warm sets warm = true (the warm pool); With is the with key (a
	// summon group), nil for none.
	Warm bool
	With []string
	// Start is the start key ("boot" or "snapshot"); "" leaves it out.
	Start string
	// Extra is TOML appended to its [[unikernel]] table.
	Extra string
}

// FilesTOML returns Files as a TOML inline table.
func (u JitsuUnikernel) FilesTOML() string {
	names := make([]string, 0, len(u.Files))
	for k := range u.Files {
		names = append(names, k)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, k := range names {
		parts[i] = strconv.Quote(k) + " = " + strconv.Quote(u.Files[k])
	}
	return "{ " + strings.Join(parts, ", ") + " }"
}

// BootKernel is the kernel to boot: the PVH vmlinux when there is one
// (no decompression), else the bzImage.
func (img Image) BootKernel() string {
	if img.VMLinux != "" {
		return img.VMLinux
	}
	return img.Kernel
}

var jitsuConfTmpl = template.Must(template.New("conf").Parse(`
[dns]
{{- if .DNSListen}}
listen = [{{range $i, $a := .DNSListen}}{{if $i}}, {{end}}"{{$a}}"{{end}}]
{{- else}}
listen = ["127.0.0.1:5353"]
{{- end}}
summon_ttl = "1s"
rrl_rate = {{.RRLRate}}
{{- if .ResponseDelay}}
response_delay = "{{.ResponseDelay}}"
{{- end}}

[[zone]]
origin = "example.test."
soa = "ns1.example.test. hostmaster.example.test. {{or .Serial 1}} 3600 600 86400 60"
ns = ["ns1.example.test."]
records = ["ns1 A 127.0.0.1", "static A 192.0.2.7"]
{{- if .Secondaries}}
secondaries = [{{range $i, $a := .Secondaries}}{{if $i}}, {{end}}"{{$a}}"{{end}}]
{{- end}}

[hypervisor]
uri = "` + URI + `"
domain_type = "{{or .DomainType "qemu"}}"
console_dir = "{{.ConsoleDir}}"
shutdown_timeout = "5s"
{{- if .SnapshotDir}}
snapshot_dir = "{{.SnapshotDir}}"
{{- end}}
guest_cpu_weight = {{.GuestCPUWeight}}

[network]
bridge = "` + Bridge + `"
gateway = "` + GatewayCIDR + `"
{{- if .Gateway6}}
gateway6 = "{{.Gateway6}}"
{{- end}}
{{- if .MaxRunning}}

[budget]
max_running = {{.MaxRunning}}
{{- end}}

[synproxy]
enabled = {{.SynProxy}}

[control]
socket = "{{.Socket}}"
{{- if .Metrics}}

[metrics]
listen = "{{.Metrics}}"
{{- end}}
{{- if .Frontdoor}}

[frontdoor]
listen = [{{range $i, $a := .Frontdoor}}{{if $i}}, {{end}}"{{$a}}"{{end}}]
{{- end}}

[defaults]
kernel = "{{.Image.BootKernel}}"
initrd = "{{.Image.Initrd}}"
cmdline = "{{.Image.Cmdline}} ip={{"{{"}}.IP{{"}}"}}::{{"{{"}}.Gateway{{"}}"}}:{{"{{"}}.Netmask{{"}}"}}::eth0:off{{"{{"}}if .IP6{{"}}"}} jitsu.ip6={{"{{"}}.IP6{{"}}"}}/{{"{{"}}.Prefix6{{"}}"}} jitsu.gw6={{"{{"}}.Gateway6{{"}}"}}{{"{{"}}end{{"}}"}}"
memory = "64MiB"
idle_timeout = "60s"
boot_timeout = "20s"
{{range .Unikernels}}
[[unikernel]]
name = "{{.Name}}"
dns = ["{{.Name}}.example.test."]
ip = "{{.IP}}"
{{- if .IP6}}
ip6 = "{{.IP6}}"
{{- end}}
{{- if .Kernel}}
kernel = "{{.Kernel}}"
initrd = "{{.Initrd}}"
{{- end}}
{{- if .StopMode}}
stop_mode = "{{.StopMode}}"
{{- end}}
{{- if .Ready}}
ready = "{{.Ready}}"
{{- end}}
{{- if .IdleTimeout}}
idle_timeout = "{{.IdleTimeout}}"
{{- end}}
{{- if .BootTimeout}}
boot_timeout = "{{.BootTimeout}}"
{{- end}}
{{- if .Frontdoor}}
frontdoor = true
{{- end}}
{{- if .Files}}
files = {{.FilesTOML}}
{{- end}}
{{- if .Warm}}
warm = true
{{- end}}
{{- if .With}}
with = [{{range $i, $n := .With}}{{if $i}}, {{end}}"{{$n}}"{{end}}]
{{- end}}
{{- if .Start}}
start = "{{.Start}}"
{{- end}}
{{- if .Extra}}
{{.Extra}}
{{- end}}
{{end}}
{{.Extra}}
`))

// Write writes the config to path.
func (c JitsuConfig) Write(path string) error {
	var b bytes.Buffer
	if err := jitsuConfTmpl.Execute(&b, c); err != nil {
		return fmt.Errorf("render jitsu config: %w", err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write jitsu config: %w", err)
	}
	return nil
}
