package libvirt

import (
	"encoding/xml"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"libvirt.org/go/libvirtxml"

	"github.com/jitsu-unikernel/jitsu/hypervisor"
)

// MetadataNamespace is the XML namespace of the metadata element jitsu puts
// on every domain it creates. Domains without it are foreign: jitsu never
// lists, stops or changes them.
const MetadataNamespace = "https://jitsu-unikernel.github.io/xmlns/1"

// metadataPrefix is the namespace prefix used in the domain XML.
const metadataPrefix = "jitsu"

// DefaultMemoryBytes is the guest memory used when a Spec leaves it at 0.
const DefaultMemoryBytes = 128 << 20

// AgentChannel is the name of the virtio-serial port on which jitsu talks
// to the guest's agent (QGA protocol) itself. It is not libvirt's agent
// name (org.qemu.guest_agent.0): libvirt leaves this channel alone, and
// jitsu reaches a restored guest's agent at once instead of waiting for
// libvirt to see the port open again (agent.go).
const AgentChannel = "org.jitsu.agent.0"

// AgentPort is the virtio-serial port number of the agent channel. The
// example unikernel has no sysfs to read port names from: it opens the
// port with this number (the minor of its /dev/vportNpM node).
const AgentPort = 1

// rngRateBytes per rngRatePeriodMS bounds what a guest can draw from the
// host's /dev/urandom through virtio-rng: the example unikernel reads 64
// bytes per re-seed.
const (
	rngRateBytes    = 1024
	rngRatePeriodMS = 1000
)

// metadata is jitsu's metadata element as libvirt returns it from
// virDomainGetMetadata (without the prefix).
type metadata struct {
	XMLName xml.Name `xml:"unikernel"`
	Name    string   `xml:"name,attr"`
	MAC     string   `xml:"mac,attr,omitempty"`
	// Instance is the id of the jitsu daemon that created the domain.
	Instance string `xml:"instance,attr,omitempty"`
}

func (m metadata) element() string {
	var b strings.Builder
	fmt.Fprintf(&b, `<%s:unikernel xmlns:%s="%s" name="`, metadataPrefix, metadataPrefix, MetadataNamespace)
	_ = xml.EscapeText(&b, []byte(m.Name))
	b.WriteString(`" mac="`)
	_ = xml.EscapeText(&b, []byte(m.MAC))
	if m.Instance != "" {
		b.WriteString(`" instance="`)
		_ = xml.EscapeText(&b, []byte(m.Instance))
	}
	b.WriteString(`"/>`)
	return b.String()
}

func parseMetadata(s string) (metadata, error) {
	var m metadata
	if err := xml.Unmarshal([]byte(s), &m); err != nil {
		return m, fmt.Errorf("parse jitsu metadata %q: %w", s, err)
	}
	return m, nil
}

// validateSpec rejects specs that cannot become a domain.
func validateSpec(spec hypervisor.Spec) error {
	var errs []error
	if spec.Name == "" {
		errs = append(errs, errors.New("empty name"))
	}
	if strings.ContainsAny(spec.Name, "/\x00") {
		errs = append(errs, fmt.Errorf("name %q contains '/' or NUL", spec.Name))
	}
	if spec.Kernel == "" && len(spec.Disks) == 0 {
		errs = append(errs, errors.New("neither kernel nor disk given"))
	}
	if spec.Initrd != "" && spec.Kernel == "" {
		errs = append(errs, errors.New("initrd without kernel"))
	}
	if n := len(spec.ReadOnlyDisks) + len(spec.Disks); n > 26 {
		errs = append(errs, fmt.Errorf("%d disks, more than vda..vdz", n))
	}
	if spec.VCPUs < 0 {
		errs = append(errs, fmt.Errorf("negative vcpus %d", spec.VCPUs))
	}
	if len(spec.MAC) != 0 && len(spec.MAC) != 6 {
		errs = append(errs, fmt.Errorf("MAC %s is not 6 bytes", spec.MAC))
	}
	return errors.Join(errs...)
}

// domainXML renders spec as libvirt domain XML (uuid may be empty, for a
// new domain): direct kernel boot, one
// virtio NIC on spec.Bridge, the serial console written to consoleLog, a
// pvpanic device, a rate-limited virtio-rng (addRNG), the guest agent's
// channel if spec.Agent, and none of the devices libvirt adds by default
// that a unikernel does not need (balloon, USB, graphics).
func domainXML(spec hypervisor.Spec, instance, uuid, consoleLog, machine string) (string, error) {
	if err := validateSpec(spec); err != nil {
		return "", fmt.Errorf("invalid spec: %w", err)
	}
	domType := spec.DomainType
	if domType == "" {
		domType = "kvm"
	}
	mem := spec.MemoryBytes
	if mem == 0 {
		mem = DefaultMemoryBytes
	}
	vcpus := spec.VCPUs
	if vcpus == 0 {
		vcpus = 1
	}
	mac := spec.NIC()
	d := &libvirtxml.Domain{
		Type:     domType,
		Name:     spec.Name,
		UUID:     uuid,
		Metadata: &libvirtxml.DomainMetadata{XML: metadata{Name: spec.Name, MAC: mac.String(), Instance: instance}.element()},
		Memory:   &libvirtxml.DomainMemory{Value: uint(mem >> 10), Unit: "KiB"},
		VCPU:     &libvirtxml.DomainVCPU{Value: uint(vcpus)},
		OS: &libvirtxml.DomainOS{
			Type:    &libvirtxml.DomainOSType{Type: "hvm", Machine: machine},
			Kernel:  spec.Kernel,
			Initrd:  spec.Initrd,
			Cmdline: spec.Cmdline,
		},
		Features: &libvirtxml.DomainFeatureList{
			ACPI: &libvirtxml.DomainFeature{},
		},
		// A unikernel that powers off or reboots on its own has stopped
		// serving: never restart it behind jitsu's back. A kernel panic
		// (pvpanic) destroys it too; both are reported as crashed.
		OnPoweroff: "destroy",
		OnReboot:   "destroy",
		OnCrash:    "destroy",
		Devices: &libvirtxml.DomainDeviceList{
			Controllers: []libvirtxml.DomainController{{Type: "usb", Model: "none"}},
			MemBalloon:  &libvirtxml.DomainMemBalloon{Model: "none"},
		},
	}
	if domType != "test" {
		// The test driver knows no pvpanic. (PS/2 cannot be turned off:
		// libvirt 9.0 rejects <ps2 state='off'/> on pc machines.)
		d.Devices.Panics = []libvirtxml.DomainPanic{{Model: "isa"}}
	}
	if spec.Bridge != "" {
		d.Devices.Interfaces = []libvirtxml.DomainInterface{{
			MAC:    &libvirtxml.DomainInterfaceMAC{Address: mac.String()},
			Source: &libvirtxml.DomainInterfaceSource{Bridge: &libvirtxml.DomainInterfaceSourceBridge{Bridge: spec.Bridge}},
			Model:  &libvirtxml.DomainInterfaceModel{Type: "virtio"},
		}}
		if domType != "test" {
			// No iPXE option ROM: a unikernel never boots from the
			// network, and the firmware need not initialise it.
			d.Devices.Interfaces[0].ROM = &libvirtxml.DomainROM{Enabled: "no"}
		}
	}
	for _, disk := range spec.ReadOnlyDisks {
		d.Devices.Disks = append(d.Devices.Disks, libvirtxml.DomainDisk{
			Device:   "disk",
			Driver:   &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "raw"},
			Source:   &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: disk}},
			Target:   &libvirtxml.DomainDiskTarget{Dev: "vd" + string(rune('a'+len(d.Devices.Disks))), Bus: "virtio"},
			ReadOnly: &libvirtxml.DomainDiskReadOnly{},
		})
	}
	for _, disk := range spec.Disks {
		format := "raw"
		if strings.EqualFold(filepath.Ext(disk), ".qcow2") {
			format = "qcow2"
		}
		d.Devices.Disks = append(d.Devices.Disks, libvirtxml.DomainDisk{
			Device: "disk",
			Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: format},
			Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: disk}},
			Target: &libvirtxml.DomainDiskTarget{Dev: "vd" + string(rune('a'+len(d.Devices.Disks))), Bus: "virtio"},
		})
	}
	addRNG(d.Devices)
	if spec.Agent {
		addAgent(d.Devices)
	}
	if consoleLog != "" {
		port := uint(0)
		src := &libvirtxml.DomainChardevSource{File: &libvirtxml.DomainChardevSourceFile{Path: consoleLog, Append: "off"}}
		d.Devices.Serials = []libvirtxml.DomainSerial{{Source: src, Target: &libvirtxml.DomainSerialTarget{Port: &port}}}
		d.Devices.Consoles = []libvirtxml.DomainConsole{{Source: src, Target: &libvirtxml.DomainConsoleTarget{Type: "serial", Port: &port}}}
	}
	out, err := d.Marshal()
	if err != nil {
		return "", fmt.Errorf("marshal domain XML for %q: %w", spec.Name, err)
	}
	return out, nil
}

// addRNG adds a virtio-rng fed from the host's /dev/urandom, limited to
// rngRateBytes per rngRatePeriodMS. Every domain has one: without an
// entropy source a guest kernel's CRNG is not ready at boot, and the
// first getrandom(2) (a TLS handshake's, Go's crypto/rand) blocked for
// about 1 s under TCG while the kernel gathered timer jitter; with it,
// 10 ms. It also re-seeds a restored guest (the agent reads it).
func addRNG(devs *libvirtxml.DomainDeviceList) {
	devs.RNGs = append(devs.RNGs, libvirtxml.DomainRNG{
		Model:   "virtio",
		Rate:    &libvirtxml.DomainRNGRate{Bytes: rngRateBytes, Period: rngRatePeriodMS},
		Backend: &libvirtxml.DomainRNGBackend{Random: &libvirtxml.DomainRNGBackendRandom{Device: "/dev/urandom"}},
	})
}

// addAgent adds the guest agent's devices: a virtio-serial controller with
// the agent channel at port AgentPort (a UNIX socket whose path libvirt
// chooses, in the live XML).
func addAgent(devs *libvirtxml.DomainDeviceList) {
	zero, port, ports := uint(0), uint(AgentPort), uint(AgentPort+1)
	// Only the ports used (QEMU's default is 31): the guest sets up two
	// virtqueues per port at boot.
	devs.Controllers = append(devs.Controllers, libvirtxml.DomainController{
		Type: "virtio-serial", Index: &zero,
		VirtIOSerial: &libvirtxml.DomainControllerVirtIOSerial{Ports: &ports},
	})
	devs.Channels = append(devs.Channels, libvirtxml.DomainChannel{
		Source: &libvirtxml.DomainChardevSource{UNIX: &libvirtxml.DomainChardevSourceUNIX{Mode: "bind"}},
		Target: &libvirtxml.DomainChannelTarget{VirtIO: &libvirtxml.DomainChannelTargetVirtIO{Name: AgentChannel}},
		Address: &libvirtxml.DomainAddress{VirtioSerial: &libvirtxml.DomainAddressVirtioSerial{
			Controller: &zero, Bus: &zero, Port: &port,
		}},
	})
}

// liveTarget returns the host-side device name of the domain's first NIC.
func liveTarget(domXML string) (string, error) {
	var d libvirtxml.Domain
	if err := d.Unmarshal(domXML); err != nil {
		return "", fmt.Errorf("parse domain XML: %w", err)
	}
	if d.Devices == nil || len(d.Devices.Interfaces) == 0 || d.Devices.Interfaces[0].Target == nil {
		return "", errors.New("domain has no NIC")
	}
	return d.Devices.Interfaces[0].Target.Dev, nil
}
