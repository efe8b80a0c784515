package libvirt

import (
	"fmt"
	"net"
	"strings"
	"testing"

	lv "libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/jitsu-unikernel/jitsu/hypervisor"
)

func TestDomainXML(t *testing.T) {
	mac := net.HardwareAddr{0x52, 0x54, 0x00, 1, 2, 3}
	tests := []struct {
		name      string
		spec      hypervisor.Spec
		wantType  string
		wantMAC   string
		wantKiB   uint
		wantVCPU  uint
		wantPanic bool
		wantDisks []string
		readOnly  int // the first disks are read-only
	}{
		{
			name:     "qemu with derived MAC and defaults",
			spec:     hypervisor.Spec{Name: "www", Kernel: "/k", Initrd: "/i", Cmdline: "console=ttyS0 ip=x", Bridge: "br0", DomainType: "qemu"},
			wantType: "qemu", wantMAC: hypervisor.DeriveMAC("www").String(), wantKiB: DefaultMemoryBytes >> 10, wantVCPU: 1, wantPanic: true,
		},
		{
			name: "kvm by default, explicit MAC, memory, vcpus, disks",
			spec: hypervisor.Spec{Name: "db", Kernel: "/k", Bridge: "br0", MAC: mac, MemoryBytes: 64 << 20, VCPUs: 2,
				Disks: []string{"/a.img", "/b.qcow2"}},
			wantType: "kvm", wantMAC: mac.String(), wantKiB: 64 << 10, wantVCPU: 2, wantPanic: true,
			wantDisks: []string{"raw", "qcow2"},
		},
		{
			name:     "seed disk first, read-only",
			spec:     hypervisor.Spec{Name: "s", Kernel: "/k", Bridge: "br0", ReadOnlyDisks: []string{"/seed.tar"}, Disks: []string{"/b.qcow2"}},
			wantType: "kvm", wantMAC: hypervisor.DeriveMAC("s").String(), wantKiB: DefaultMemoryBytes >> 10, wantVCPU: 1, wantPanic: true,
			wantDisks: []string{"raw", "qcow2"}, readOnly: 1,
		},
		{
			name:     "test driver: no pvpanic",
			spec:     hypervisor.Spec{Name: "t", Kernel: "/k", Bridge: "br0", DomainType: "test"},
			wantType: "test", wantMAC: hypervisor.DeriveMAC("t").String(), wantKiB: DefaultMemoryBytes >> 10, wantVCPU: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x, err := domainXML(tt.spec, "", "", "/var/log/c/"+tt.spec.Name+".log", "pc")
			if err != nil {
				t.Fatalf("domainXML: %v", err)
			}
			var d libvirtxml.Domain
			if err := d.Unmarshal(x); err != nil {
				t.Fatalf("unmarshal %s: %v", x, err)
			}
			check := func(what string, got, want any) {
				t.Helper()
				if got != want {
					t.Errorf("%s = %v, want %v", what, got, want)
				}
			}
			check("type", d.Type, tt.wantType)
			check("name", d.Name, tt.spec.Name)
			check("memory KiB", d.Memory.Value, tt.wantKiB)
			check("vcpus", d.VCPU.Value, tt.wantVCPU)
			check("kernel", d.OS.Kernel, tt.spec.Kernel)
			check("initrd", d.OS.Initrd, tt.spec.Initrd)
			check("cmdline", d.OS.Cmdline, tt.spec.Cmdline)
			check("machine", d.OS.Type.Machine, "pc")
			check("on_crash", d.OnCrash, "destroy")
			check("on_reboot", d.OnReboot, "destroy")
			check("on_poweroff", d.OnPoweroff, "destroy")
			check("acpi", d.Features != nil && d.Features.ACPI != nil, true)
			check("balloon", d.Devices.MemBalloon.Model, "none")
			check("usb", len(d.Devices.Controllers) == 1 && d.Devices.Controllers[0].Type == "usb" && d.Devices.Controllers[0].Model == "none", true)
			check("graphics", len(d.Devices.Graphics)+len(d.Devices.Videos), 0)
			check("panic device", len(d.Devices.Panics) == 1, tt.wantPanic)
			if len(d.Devices.Interfaces) != 1 {
				t.Fatalf("%d interfaces, want 1", len(d.Devices.Interfaces))
			}
			nic := d.Devices.Interfaces[0]
			check("nic model", nic.Model.Type, "virtio")
			check("nic bridge", nic.Source.Bridge.Bridge, "br0")
			check("nic mac", nic.MAC.Address, tt.wantMAC)
			if len(d.Devices.Serials) != 1 || d.Devices.Serials[0].Source.File == nil {
				t.Fatalf("serials %+v, want one file serial", d.Devices.Serials)
			}
			check("console log", d.Devices.Serials[0].Source.File.Path, "/var/log/c/"+tt.spec.Name+".log")
			check("console truncated", d.Devices.Serials[0].Source.File.Append, "off")
			check("disks", len(d.Devices.Disks), len(tt.wantDisks))
			for i, format := range tt.wantDisks {
				check("disk format", d.Devices.Disks[i].Driver.Type, format)
				check("disk bus", d.Devices.Disks[i].Target.Bus, "virtio")
				check("disk device", d.Devices.Disks[i].Target.Dev, "vd"+string(rune('a'+i)))
				check("disk read-only", d.Devices.Disks[i].ReadOnly != nil, i < tt.readOnly)
			}
			md, err := parseMetadata(strings.TrimSpace(d.Metadata.XML))
			if err != nil {
				// libvirtxml keeps the prefixed element; parse it as is.
				t.Fatalf("metadata %q: %v", d.Metadata.XML, err)
			}
			check("metadata name", md.Name, tt.spec.Name)
			check("metadata mac", md.MAC, tt.wantMAC)
			if !strings.Contains(d.Metadata.XML, MetadataNamespace) {
				t.Errorf("metadata %q lacks namespace %s", d.Metadata.XML, MetadataNamespace)
			}
		})
	}
}

// TestDomainXMLAgent: Agent adds a virtio-serial controller and the agent
// channel at port AgentPort; without it the XML has neither. Every domain
// has one rate-limited virtio-rng on the host's /dev/urandom.
func TestDomainXMLAgent(t *testing.T) {
	for _, agent := range []bool{false, true} {
		t.Run(fmt.Sprintf("agent=%v", agent), func(t *testing.T) {
			spec := hypervisor.Spec{Name: "a", Kernel: "/k", Bridge: "br0", DomainType: "qemu", Agent: agent}
			x, err := domainXML(spec, "", "", "/c.log", "pc")
			if err != nil {
				t.Fatalf("domainXML: %v", err)
			}
			var d libvirtxml.Domain
			if err := d.Unmarshal(x); err != nil {
				t.Fatalf("unmarshal %s: %v", x, err)
			}
			var serialCtl int
			for _, c := range d.Devices.Controllers {
				if c.Type == "virtio-serial" {
					serialCtl++
					if c.VirtIOSerial == nil || c.VirtIOSerial.Ports == nil || *c.VirtIOSerial.Ports != AgentPort+1 {
						t.Errorf("virtio-serial controller %+v, want %d ports", c.VirtIOSerial, AgentPort+1)
					}
				}
			}
			if len(d.Devices.RNGs) != 1 {
				t.Fatalf("rngs %+v, want 1", d.Devices.RNGs)
			}
			rng := d.Devices.RNGs[0]
			if rng.Model != "virtio" || rng.Backend == nil || rng.Backend.Random == nil || rng.Backend.Random.Device != "/dev/urandom" {
				t.Errorf("rng %+v, want virtio on /dev/urandom", rng)
			}
			if rng.Rate == nil || rng.Rate.Bytes == 0 {
				t.Errorf("rng rate %+v, want a limit", rng.Rate)
			}
			if !agent {
				if serialCtl != 0 || len(d.Devices.Channels) != 0 {
					t.Fatalf("agent off: %d virtio-serial controllers, channels %+v, want none", serialCtl, d.Devices.Channels)
				}
				if strings.Contains(x, AgentChannel) {
					t.Errorf("agent off: XML mentions %s:\n%s", AgentChannel, x)
				}
				return
			}
			if serialCtl != 1 {
				t.Errorf("%d virtio-serial controllers, want 1", serialCtl)
			}
			if len(d.Devices.Channels) != 1 {
				t.Fatalf("channels %+v, want 1", d.Devices.Channels)
			}
			ch := d.Devices.Channels[0]
			if ch.Source == nil || ch.Source.UNIX == nil || ch.Source.UNIX.Path != "" {
				t.Errorf("channel source %+v, want a unix socket whose path libvirt picks", ch.Source)
			}
			if ch.Target == nil || ch.Target.VirtIO == nil || ch.Target.VirtIO.Name != AgentChannel {
				t.Errorf("channel target %+v, want virtio %s", ch.Target, AgentChannel)
			}
			if a := ch.Address; a == nil || a.VirtioSerial == nil || a.VirtioSerial.Port == nil || *a.VirtioSerial.Port != AgentPort {
				t.Errorf("channel address %+v, want virtio-serial port %d", ch.Address, AgentPort)
			}
		})
	}
}

func TestDomainXMLInvalid(t *testing.T) {
	tests := []struct {
		name string
		spec hypervisor.Spec
		want string
	}{
		{"empty name", hypervisor.Spec{Kernel: "/k"}, "empty name"},
		{"no kernel no disk", hypervisor.Spec{Name: "a"}, "neither kernel nor disk"},
		{"initrd without kernel", hypervisor.Spec{Name: "a", Initrd: "/i", Disks: []string{"/d"}}, "initrd without kernel"},
		{"negative vcpus", hypervisor.Spec{Name: "a", Kernel: "/k", VCPUs: -1}, "negative vcpus"},
		{"bad MAC", hypervisor.Spec{Name: "a", Kernel: "/k", MAC: net.HardwareAddr{1}}, "not 6 bytes"},
		{"slash", hypervisor.Spec{Name: "a/b", Kernel: "/k"}, "contains '/'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := domainXML(tt.spec, "", "", "", "")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("domainXML: %v, want error containing %q", err, tt.want)
			}
		})
	}
}

func TestMetadataEscaping(t *testing.T) {
	md := metadata{Name: `a"&<b>`, MAC: "52:54:00:00:00:01"}
	got, err := parseMetadata(md.element())
	if err != nil {
		t.Fatalf("parse %s: %v", md.element(), err)
	}
	if got.Name != md.Name || got.MAC != md.MAC {
		t.Errorf("round trip %+v, want %+v", got, md)
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		event      lv.DomainEventType
		detail     int
		requested  bool
		wantKind   hypervisor.EventKind
		wantDetail string
		wantOK     bool
	}{
		{lv.DOMAIN_EVENT_STARTED, int(lv.DOMAIN_EVENT_STARTED_BOOTED), false, hypervisor.EventStarted, "booted", true},
		{lv.DOMAIN_EVENT_STARTED, int(lv.DOMAIN_EVENT_STARTED_RESTORED), false, hypervisor.EventStarted, "restored", true},
		{lv.DOMAIN_EVENT_SUSPENDED, int(lv.DOMAIN_EVENT_SUSPENDED_PAUSED), false, hypervisor.EventSuspended, "paused", true},
		{lv.DOMAIN_EVENT_SUSPENDED, int(lv.DOMAIN_EVENT_SUSPENDED_RESTORED), false, hypervisor.EventSuspended, "paused", true},
		{lv.DOMAIN_EVENT_SUSPENDED, int(lv.DOMAIN_EVENT_SUSPENDED_MIGRATED), false, 0, "", false},
		{lv.DOMAIN_EVENT_RESUMED, int(lv.DOMAIN_EVENT_RESUMED_UNPAUSED), false, hypervisor.EventResumed, "unpaused", true},
		{lv.DOMAIN_EVENT_RESUMED, int(lv.DOMAIN_EVENT_RESUMED_MIGRATED), false, 0, "", false},
		{lv.DOMAIN_EVENT_STOPPED, int(lv.DOMAIN_EVENT_STOPPED_SHUTDOWN), true, hypervisor.EventStopped, "shutdown", true},
		{lv.DOMAIN_EVENT_STOPPED, int(lv.DOMAIN_EVENT_STOPPED_SHUTDOWN), false, hypervisor.EventCrashed, "guest-shutdown", true},
		{lv.DOMAIN_EVENT_STOPPED, int(lv.DOMAIN_EVENT_STOPPED_DESTROYED), false, hypervisor.EventStopped, "destroyed", true},
		{lv.DOMAIN_EVENT_STOPPED, int(lv.DOMAIN_EVENT_STOPPED_DESTROYED), true, hypervisor.EventStopped, "destroyed", true},
		{lv.DOMAIN_EVENT_STOPPED, int(lv.DOMAIN_EVENT_STOPPED_CRASHED), false, hypervisor.EventCrashed, "panicked", true},
		{lv.DOMAIN_EVENT_STOPPED, int(lv.DOMAIN_EVENT_STOPPED_FAILED), false, hypervisor.EventCrashed, "failed", true},
		{lv.DOMAIN_EVENT_STOPPED, int(lv.DOMAIN_EVENT_STOPPED_SAVED), true, hypervisor.EventStopped, "saved", true},
		{lv.DOMAIN_EVENT_CRASHED, int(lv.DOMAIN_EVENT_CRASHED_PANICKED), false, 0, "", false},
		{lv.DOMAIN_EVENT_DEFINED, 0, false, 0, "", false},
		{lv.DOMAIN_EVENT_UNDEFINED, 0, false, 0, "", false},
		{lv.DOMAIN_EVENT_PMSUSPENDED, 0, false, hypervisor.EventSuspended, "pm-suspended", true},
	}
	for _, tt := range tests {
		kind, detail, ok := classify(&lv.DomainEventLifecycle{Event: tt.event, Detail: tt.detail}, tt.requested)
		if kind != tt.wantKind || detail != tt.wantDetail || ok != tt.wantOK {
			t.Errorf("classify(event %d, detail %d, requested %v) = %v %q %v, want %v %q %v",
				tt.event, tt.detail, tt.requested, kind, detail, ok, tt.wantKind, tt.wantDetail, tt.wantOK)
		}
	}
}

func TestEventQueueBounded(t *testing.T) {
	q := newEventQueue(2)
	for i, want := range []bool{true, true, false} {
		if got := q.push(rawEvent{ev: hypervisor.Event{Name: "x"}}); got != want {
			t.Errorf("push #%d = %v, want %v", i, got, want)
		}
	}
	if _, ok := q.pop(); !ok {
		t.Fatal("pop from a non-empty queue failed")
	}
	q.close()
	if _, ok := q.pop(); !ok {
		t.Fatal("closed queue lost the event it still held")
	}
	if _, ok := q.pop(); ok {
		t.Fatal("pop from a closed, empty queue succeeded")
	}
}
