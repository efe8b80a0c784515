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
	// DNSListen are more dns.listen addresses, after 127.0.0.1:5353.
	DNSListen []string
}

// JitsuUnikernel is one [[unikernel]]; empty fields take the defaults
// (idle_timeout 60s, boot_timeout 20s, stop_mode destroy, ready tcp:80).
type JitsuUnikernel struct {
	Name, IP, Kernel, Initrd, StopMode, Ready string
	IdleTimeout, BootTimeout                  string
	// Frontdoor sets frontdoor = true; Files is the files table.
	Frontdoor bool
	Files     map[string]string
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
listen = ["127.0.0.1:5353"{{range .DNSListen}}, "{{.}}"{{end}}]
summon_ttl = "1s"
{{- if .ResponseDelay}}
response_delay = "{{.ResponseDelay}}"
{{- end}}

[[zone]]
origin = "example.test."
soa = "ns1.example.test. hostmaster.example.test. {{or .Serial 1}} 3600 600 86400 60"
ns = ["ns1.example.test."]
records = ["ns1 A 127.0.0.1", "static A 192.0.2.7"]

[hypervisor]
uri = "` + URI + `"
domain_type = "{{or .DomainType "qemu"}}"
console_dir = "{{.ConsoleDir}}"
shutdown_timeout = "5s"

[network]
bridge = "` + Bridge + `"
gateway = "` + GatewayCIDR + `"

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
cmdline = "{{.Image.Cmdline}} ip={{"{{"}}.IP{{"}}"}}::{{"{{"}}.Gateway{{"}}"}}:{{"{{"}}.Netmask{{"}}"}}::eth0:off"
memory = "64MiB"
idle_timeout = "60s"
boot_timeout = "20s"
{{range .Unikernels}}
[[unikernel]]
name = "{{.Name}}"
dns = ["{{.Name}}.example.test."]
ip = "{{.IP}}"
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
{{end}}
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
