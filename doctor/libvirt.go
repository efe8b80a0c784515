package doctor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"
)

// checkHypervisor connects to libvirtd at uri and checks the domain type:
// offered by the capabilities for the host's architecture and, for kvm,
// able to boot a guest (a short probe boot, unless opts.SkipProbe).
func checkHypervisor(ctx context.Context, uri, domainType string, opts Options) []Result {
	r := Result{Check: "libvirtd at " + uri}
	conn, err := libvirt.NewConnect(uri)
	if err != nil {
		r.Status, r.Detail, r.Fix = Fail, libvirtMessage(err), connectFix(uri, err)
		return []Result{r, {Check: "domain type " + domainType, Status: Skip, Detail: "libvirtd unreachable"}}
	}
	defer conn.Close()
	lib, err := conn.GetLibVersion()
	if err != nil {
		r.Status, r.Detail, r.Fix = Fail, "connected but no answer: "+libvirtMessage(err), connectFix(uri, err)
		return []Result{r, {Check: "domain type " + domainType, Status: Skip, Detail: "libvirtd unreachable"}}
	}
	r.Status, r.Detail = Pass, "libvirt "+versionString(lib)
	if hv, err := conn.GetVersion(); err == nil && hv != 0 {
		typ, _ := conn.GetType()
		r.Detail += fmt.Sprintf(", %s %s", typ, versionString(hv))
	}
	return []Result{r, checkDomainType(ctx, conn, domainType, opts)}
}

// checkDomainType checks the capabilities offer domainType for the host's
// architecture, then probes a kvm domain type with a boot.
func checkDomainType(ctx context.Context, conn *libvirt.Connect, domainType string, opts Options) Result {
	r := Result{Check: "domain type " + domainType}
	capsXML, err := conn.GetCapabilities()
	if err != nil {
		r.Status, r.Detail, r.Fix = Fail, "read capabilities: "+libvirtMessage(err), "check libvirtd's log"
		return r
	}
	arch, types, err := guestDomainTypes(capsXML)
	if err != nil {
		r.Status, r.Detail, r.Fix = Fail, err.Error(), "check libvirtd's log"
		return r
	}
	if !slices.Contains(types, domainType) {
		r.Status = Fail
		r.Detail = fmt.Sprintf("not offered for %s guests (libvirt offers: %s)", arch, strings.Join(types, ", "))
		switch {
		case domainType == "kvm":
			r.Fix = "KVM is unavailable (no /dev/kvm, no permission on it, or virtualization disabled in the firmware): " +
				"enable it, or set [hypervisor] domain_type = \"qemu\" (TCG emulation, boots several times slower)"
		case len(types) == 0:
			r.Fix = "install QEMU for this architecture (apt-get install qemu-system-x86) and restart libvirtd"
		default:
			r.Fix = fmt.Sprintf("set [hypervisor] domain_type to one of: %s", strings.Join(types, ", "))
		}
		return r
	}
	r.Status, r.Detail = Pass, fmt.Sprintf("offered for %s guests", arch)
	if domainType != "kvm" {
		return r
	}
	if opts.SkipProbe {
		r.Detail += "; probe boot skipped"
		return r
	}
	took, err := probeBoot(ctx, conn, domainType, arch, opts.ProbeKernel, opts.ProbeTimeout)
	if err != nil {
		r.Status = Fail
		r.Detail = "offered, but the probe boot failed: " + err.Error()
		if errors.Is(err, errProbeTimeout) {
			r.Fix = "a /dev/kvm that exists can still hang guests (nested or paravirtualized hosts such as PVM): " +
				"set [hypervisor] domain_type = \"qemu\" (TCG); check with jitsu doctor again"
		} else {
			r.Fix = "check libvirtd's and QEMU's logs (/var/log/libvirt/qemu/); or set [hypervisor] domain_type = \"qemu\""
		}
		return r
	}
	r.Detail += fmt.Sprintf("; probe boot printed %s in %v", ProbeMarker, took.Round(time.Millisecond))
	return r
}

// guestDomainTypes returns the host's architecture and the domain types the
// capabilities offer for hvm guests of that architecture.
func guestDomainTypes(capsXML string) (string, []string, error) {
	var caps libvirtxml.Caps
	if err := caps.Unmarshal(capsXML); err != nil {
		return "", nil, fmt.Errorf("parse capabilities: %w", err)
	}
	arch := ""
	if caps.Host.CPU != nil {
		arch = caps.Host.CPU.Arch
	}
	if arch == "" {
		arch = map[string]string{"amd64": "x86_64", "arm64": "aarch64", "386": "i686"}[runtime.GOARCH]
	}
	var types []string
	for _, g := range caps.Guests {
		if g.OSType != "hvm" || g.Arch.Name != arch {
			continue
		}
		for _, d := range g.Arch.Domains {
			if !slices.Contains(types, d.Type) {
				types = append(types, d.Type)
			}
		}
	}
	return arch, types, nil
}

// errProbeTimeout is a probe boot that printed nothing in time.
var errProbeTimeout = errors.New("no output from the guest")

// probeBoot boots a transient domain of domainType on the probe kernel and
// waits up to timeout for ProbeMarker on its serial console. The domain and
// its files are removed before it returns.
func probeBoot(ctx context.Context, conn *libvirt.Connect, domainType, arch, kernel string, timeout time.Duration) (time.Duration, error) {
	// QEMU runs as another user: the directory must be searchable by it.
	dir, err := os.MkdirTemp("", "jitsu-doctor-")
	if err != nil {
		return 0, fmt.Errorf("probe directory: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		return 0, fmt.Errorf("probe directory: %w", err)
	}
	if kernel == "" {
		kernel = filepath.Join(dir, "probe.elf")
		if err := os.WriteFile(kernel, ProbeELF(), 0o644); err != nil {
			return 0, fmt.Errorf("write probe kernel: %w", err)
		}
	}
	logPath := filepath.Join(dir, "console.log")
	xml, err := probeXML(probeName(), domainType, arch, kernel, logPath)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	dom, err := conn.DomainCreateXML(xml, 0)
	if err != nil {
		return 0, fmt.Errorf("create probe domain: %s", libvirtMessage(err))
	}
	defer func() {
		dom.Destroy()
		dom.Free()
	}()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if b, err := os.ReadFile(logPath); err == nil && strings.Contains(string(b), ProbeMarker) {
			return time.Since(start), nil
		}
		select {
		case <-ctx.Done():
			if ctx.Err() == context.DeadlineExceeded {
				return 0, fmt.Errorf("%w: %s did not appear on the serial console within %v", errProbeTimeout, ProbeMarker, timeout)
			}
			return 0, ctx.Err()
		case <-tick.C:
		}
	}
}

// probeXML is the probe domain: no disk, no NIC, the kernel booted
// directly, the serial console written to logPath.
func probeXML(name, domainType, arch, kernel, logPath string) (string, error) {
	port := uint(0)
	src := &libvirtxml.DomainChardevSource{File: &libvirtxml.DomainChardevSourceFile{Path: logPath, Append: "off"}}
	d := libvirtxml.Domain{
		Type:   domainType,
		Name:   name,
		Memory: &libvirtxml.DomainMemory{Value: 32, Unit: "MiB"},
		VCPU:   &libvirtxml.DomainVCPU{Value: 1},
		OS: &libvirtxml.DomainOS{
			Type:   &libvirtxml.DomainOSType{Type: "hvm", Arch: arch},
			Kernel: kernel,
		},
		OnPoweroff: "destroy",
		OnReboot:   "destroy",
		OnCrash:    "destroy",
		Devices: &libvirtxml.DomainDeviceList{
			Serials: []libvirtxml.DomainSerial{{Source: src, Target: &libvirtxml.DomainSerialTarget{Port: &port}}},
		},
	}
	s, err := d.Marshal()
	if err != nil {
		return "", fmt.Errorf("probe domain XML: %w", err)
	}
	return s, nil
}

func probeName() string {
	b := make([]byte, 4)
	rand.Read(b)
	return "jitsu-doctor-probe-" + hex.EncodeToString(b)
}

// libvirtMessage returns a libvirt error's message without its codes.
func libvirtMessage(err error) string {
	var le libvirt.Error
	if errors.As(err, &le) && le.Message != "" {
		return le.Message
	}
	return err.Error()
}

// connectFix explains a failed connection to libvirtd.
func connectFix(uri string, err error) string {
	msg := strings.ToLower(libvirtMessage(err))
	switch {
	case strings.Contains(msg, "permission denied"), strings.Contains(msg, "authentication"):
		return "the libvirt socket needs root or the group libvirt: usermod -aG libvirt USER " +
			"(in the service: SupplementaryGroups=libvirt), or check polkit's rules for libvirt"
	case strings.Contains(msg, "no such file"), strings.Contains(msg, "connection refused"), strings.Contains(msg, "failed to connect"):
		return "start libvirtd (systemctl enable --now libvirtd virtlogd; without systemd: virtlogd -d && libvirtd -d), " +
			"or correct [hypervisor] uri (" + uri + ")"
	}
	return "check [hypervisor] uri (" + uri + ") and that libvirtd runs (virsh -c '" + uri + "' version)"
}

// versionString formats libvirt's major*1e6+minor*1e3+micro.
func versionString(v uint32) string {
	return fmt.Sprintf("%d.%d.%d", v/1000000, v/1000%1000, v%1000)
}
